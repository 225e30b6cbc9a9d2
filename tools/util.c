/* util.c: one-line errors, option parsing, opening stores and loading
 * type plugins for the `troupe` tool. */
#include "tools/util.h"
#include "tools/utf8.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *tool_prog = "troupe";

/* Copy `s` into buf on one line: newlines and tabs become spaces, runs of
 * spaces collapse, trailing ones go, and passwords are masked. */
static void one_line(char *buf, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 1 < cap; s++) {
    char c = (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s;
    if (c == ' ' && (n == 0 || buf[n - 1] == ' ')) continue;
    buf[n++] = c;
  }
  while (n && buf[n - 1] == ' ') n--;
  buf[n] = '\0';
}

/* Copy `in` to out (capacity cap >= 1), masking the value of each
 * "password=VALUE" (key=value form) and the password of a URI's
 * "//user:PASSWORD@". */
static void mask_passwords(const char *in, char *out, size_t cap) {
  size_t n = 0;
  const char *uri = strstr(in, "://"), *at = NULL, *colon = NULL;
  if (uri) {
    const char *p = uri + 3;
    size_t auth = strcspn(p, "/?#");
    at = memchr(p, '@', auth);
    colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
  }
#define OUT(c) do { if (n + 1 < cap) out[n++] = (c); } while (0)
  for (const char *s = in; *s;) {
    const char *skip_to = NULL;
    if (s == colon) {
      skip_to = at;
    } else if (strncmp(s, "password=", 9) == 0) {
      for (int k = 0; k < 9; k++) OUT(s[k]);
      s += 9;
      const char *e = s;
      if (*e == '\'') {
        for (e++; *e && *e != '\'';) e += (*e == '\\' && e[1]) ? 2 : 1;
        if (*e) e++;
      } else {
        while (*e && *e != ' ' && *e != '&') e++;
      }
      for (int k = 0; k < 3; k++) OUT('*');
      s = e;
      continue;
    }
    if (skip_to) {
      OUT(':');
      for (int k = 0; k < 3; k++) OUT('*');
      s = skip_to;
      continue;
    }
    OUT(*s);
    s++;
  }
#undef OUT
  out[n] = '\0';
}

const char *tool_spec_shown(const char *spec) {
  static char buf[1200];
  char tmp[1200];
  one_line(tmp, sizeof tmp, spec ? spec : "(null)");
  mask_passwords(tmp, buf, sizeof buf);
  return buf;
}

static void vsay(const char *fmt, va_list ap, const char *tail) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  char line[1100];
  one_line(line, sizeof line, msg);
  fprintf(stderr, "%s: %s%s\n", tool_prog, line, tail ? tail : "");
}

int tool_err(int rc, const char *fmt, ...) {
  char tmp[1024], detail[1024];
  one_line(tmp, sizeof tmp, troupe_errmsg());
  mask_passwords(tmp, detail, sizeof detail);
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[1100];
  one_line(line, sizeof line, msg);
  /* troupe_strerror(TROUPE_ENOENT) speaks of actors; here it is a store */
  const char *what = rc == TROUPE_ENOENT ? "not found" : troupe_strerror(rc);
  if (detail[0])
    fprintf(stderr, "%s: %s: %s (%s)\n", tool_prog, line, what, detail);
  else
    fprintf(stderr, "%s: %s: %s\n", tool_prog, line, what);
  return rc == TROUPE_EINVAL ? TOOL_EXIT_USAGE : TOOL_EXIT_STORE;
}

void tool_say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap, NULL);
  va_end(ap);
}

int tool_usage(const char *fmt, ...) {
  char tail[256];
  snprintf(tail, sizeof tail, " (see %s --help)", tool_prog);
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap, tail);
  va_end(ap);
  return TOOL_EXIT_USAGE;
}

int tool_parse(int argc, char **argv, const tool_opt *opts, size_t nopts,
               const char **pos, int maxpos, int *help) {
  int npos = 0, only_pos = 0;
  *help = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || a[1] == '\0') {
      if (npos == maxpos) {
        tool_usage("unexpected argument \"%s\"", a);
        return -1;
      }
      pos[npos++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *help = 1;
      continue;
    }
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    const tool_opt *o = NULL;
    for (size_t k = 0; k < nopts; k++)
      if (strlen(opts[k].name) == nl && strncmp(opts[k].name, a, nl) == 0)
        o = &opts[k];
    if (!o) {
      tool_usage("unknown option %.*s", (int)nl, a);
      return -1;
    }
    if (o->takes_value) {
      if (eq) {
        *o->value = eq + 1;
      } else if (i + 1 < argc) {
        *o->value = argv[++i];
      } else {
        tool_usage("%s needs a value", o->name);
        return -1;
      }
    } else if (eq) {
      tool_usage("%s takes no value", o->name);
      return -1;
    }
    if (o->seen) *o->seen = 1;
  }
  return npos;
}

int tool_parse_cmd(int argc, char **argv, const tool_opt *opts, size_t nopts,
                   const char **pos, int npos, const char *help,
                   const char *wrong_npos) {
  int seen_help;
  int n = tool_parse(argc, argv, opts, nopts, pos, npos, &seen_help);
  if (n < 0) return TOOL_EXIT_USAGE;
  if (seen_help) {
    fputs(help, stdout);
    return TOOL_EXIT_OK;
  }
  if (n != npos) return tool_usage("%s", wrong_npos);
  return -1;
}

int tool_parse_u64(const char *s, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int tool_open_journal(const char *what, const char *spec, int create,
                      troupe_journal **out) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = create;
  int rc = troupe_journal_open(spec, &o, out);
  if (rc < 0)
    return tool_err(rc, "cannot open the %s%sjournal %s", what, *what ? " " : "",
                    tool_spec_shown(spec));
  return 0;
}

int tool_open_snapshots(const char *what, const char *spec, int create,
                        troupe_snapshot_store **out) {
  troupe_store_options o;
  troupe_store_options_init(&o);
  o.create_if_missing = create;
  int rc = troupe_snapshot_store_open(spec, &o, out);
  if (rc < 0)
    return tool_err(rc, "cannot open the %s%ssnapshot store %s", what, *what ? " " : "",
                    tool_spec_shown(spec));
  return 0;
}

int tool_load_plugin(const char *path) {
  /* dlopen searches the library path for a bare name; a plugin given on
   * the command line is a file, so make a bare name relative. */
  char buf[4096];
  if (!strchr(path, '/')) {
    snprintf(buf, sizeof buf, "./%s", path);
    path = buf;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    tool_say("cannot load plugin %s: %s", path, e ? e : "unknown error");
    return TOOL_EXIT_USAGE;
  }
  /* ISO C forbids converting a void * to a function pointer; POSIX
   * guarantees it works for dlsym. Copy the bits instead. */
  void *sym = dlsym(h, TOOL_PLUGIN_INIT);
  if (!sym) {
    tool_say("plugin %s does not export %s()", path, TOOL_PLUGIN_INIT);
    dlclose(h);
    return TOOL_EXIT_USAGE;
  }
  tool_plugin_init_fn init;
  memcpy(&init, &sym, sizeof init);
  int rc = init(troupe_version_hex());
  if (rc < 0) {
    tool_err(rc, "plugin %s: %s() failed", path, TOOL_PLUGIN_INIT);
    return TOOL_EXIT_USAGE;
  }
  return 0;      /* never dlclose: the registry points into the plugin */
}

void tool_hex(FILE *f, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", b[i]);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long tool_unhex(const char *s, size_t len, char *out, size_t cap) {
  if (len % 2 || len / 2 > cap) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (char)(hi << 4 | lo);
  }
  return (long)(len / 2);
}

void tool_json_str(FILE *f, const char *str, size_t n) {
  const uint8_t *s = (const uint8_t *)str;
  fputc('"', f);
  for (size_t i = 0; i < n;) {
    uint8_t c = s[i];
    size_t l = tool_utf8_len(s + i, n - i);
    if (l == 0) {
      fputs("\\ufffd", f);
      i++;
      continue;
    }
    if (l > 1) {
      fwrite(s + i, 1, l, f);
    } else if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c == '\n') {
      fputs("\\n", f);
    } else if (c == '\t') {
      fputs("\\t", f);
    } else if (c < 0x20 || c == 0x7f) {
      fprintf(f, "\\u%04x", c);
    } else {
      fputc(c, f);
    }
    i += l;
  }
  fputc('"', f);
}
