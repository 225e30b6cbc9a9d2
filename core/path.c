/*
 * path.c: actor names, paths, selection, and refs as text.
 *
 * Named actors are found through one open-addressing table per system
 * keyed by (parent, name), so an idle actor pays nothing for a map of its
 * own. Unnamed actors are "$<uid in hex>" and are found through the slot
 * table.
 */
#include "core/internal.h"

#include <inttypes.h>
#include <stdio.h>

static uint64_t hash_name(const troupe__cell *parent, const char *n,
                          size_t len) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)n[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

#define TOMB ((troupe__cell *)1)

static int names_grow(troupe__namemap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  troupe__cell **ns = calloc(ncap, sizeof *ns);
  if (!ns) return TROUPE_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    troupe__cell *c = m->slots[i];
    if (!c || c == TOMB) continue;
    size_t j = hash_name(c->parent, c->name, c->name_len) & (ncap - 1);
    while (ns[j]) j = (j + 1) & (ncap - 1);
    ns[j] = c;
  }
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

int troupe__names_put(troupe__namemap *m, troupe__cell *c) {
  if ((m->len + 1) * 2 > m->cap && names_grow(m) < 0) return TROUPE_ENOMEM;
  size_t j = hash_name(c->parent, c->name, c->name_len) & (m->cap - 1);
  while (m->slots[j] && m->slots[j] != TOMB) j = (j + 1) & (m->cap - 1);
  m->slots[j] = c;
  m->len++;
  return 0;
}

troupe__cell *troupe__names_get(const troupe__namemap *m,
                                const troupe__cell *parent, const char *name,
                                size_t len) {
  if (!m->cap) return NULL;
  size_t j = hash_name(parent, name, len) & (m->cap - 1);
  for (size_t probes = 0; probes < m->cap; probes++) {
    troupe__cell *c = m->slots[j];
    if (!c) return NULL;
    if (c != TOMB && c->parent == parent && c->name_len == len &&
        memcmp(c->name, name, len) == 0)
      return c;
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

void troupe__names_del(troupe__namemap *m, troupe__cell *c) {
  if (!m->cap) return;
  size_t j = hash_name(c->parent, c->name, c->name_len) & (m->cap - 1);
  for (size_t probes = 0; probes < m->cap; probes++) {
    if (!m->slots[j]) return;
    if (m->slots[j] == c) {
      m->slots[j] = TOMB;
      m->len--;
      return;
    }
    j = (j + 1) & (m->cap - 1);
  }
}

void troupe__names_free(troupe__namemap *m) {
  free(m->slots);
  m->slots = NULL;
  m->cap = m->len = 0;
}

/* ------------------------------------------------------------------ */
/* Paths */

int troupe__path_of(const troupe__cell *c, char *buf, size_t size) {
  const troupe__cell *chain[128];
  int depth = 0;
  for (const troupe__cell *p = c; p && p->parent && depth < 128; p = p->parent)
    chain[depth++] = p;
  size_t off = 0;
  int n = snprintf(buf, size, "troupe://%s", c->sys->name);
  if (n < 0) return TROUPE_ERANGE;
  off = (size_t)n;
  if (depth == 0) {
    n = snprintf(buf + (off < size ? off : size), off < size ? size - off : 0,
                 "/");
    off += (size_t)n;
  }
  for (int i = depth - 1; i >= 0; i--) {
    char nm[40];
    const char *name = chain[i]->name;
    if (!name) {
      troupe__cell_name(chain[i], nm, sizeof nm);
      name = nm;
    }
    n = snprintf(buf + (off < size ? off : size), off < size ? size - off : 0,
                 "/%s", name);
    off += (size_t)n;
  }
  if (off >= size) return TROUPE_ERANGE;
  return (int)off;
}

int troupe_ref_path(troupe_system *sys, troupe_ref ref, char *buf,
                    size_t size) {
  if (!sys || !buf || !size)
    return troupe__err(TROUPE_EINVAL, "troupe_ref_path: NULL argument");
  buf[0] = '\0';
  if (ref.node != sys->node)
    return troupe__err(TROUPE_ENOENT, "ref is not of system %s", sys->name);
  troupe__cell *c = troupe__cell_get(sys, ref.uid);
  if (!c || (c->flags & TROUPE__CF_DEAD))
    return troupe__err(TROUPE_ENOENT, "actor is not alive");
  int n = troupe__path_of(c, buf, size);
  if (n < 0) return troupe__err(TROUPE_ERANGE, "path buffer too small");
  return n;
}

bool troupe_ref_alive(troupe_system *sys, troupe_ref ref) {
  if (!sys || ref.node != sys->node) return false;
  troupe__cell *c = troupe__cell_get(sys, ref.uid);
  return c && !(c->flags & TROUPE__CF_DEAD);
}

/* Walk "/a/b/c" (relative to the root) to a cell. */
static troupe__cell *walk(troupe_system *sys, const char *p, size_t len) {
  troupe__cell *c = sys->root;
  size_t i = 0;
  while (c && i < len) {
    while (i < len && p[i] == '/') i++;
    if (i >= len) break;
    size_t j = i;
    while (j < len && p[j] != '/') j++;
    const char *seg = p + i;
    size_t sl = j - i;
    troupe__cell *next = NULL;
    if (seg[0] == '$') {
      char tmp[32];
      if (sl >= sizeof tmp) return NULL;
      memcpy(tmp, seg + 1, sl - 1);
      tmp[sl - 1] = '\0';
      char *end = NULL;
      unsigned long long uid = strtoull(tmp, &end, 16);
      if (!end || *end) return NULL;
      next = troupe__cell_get(sys, uid);
      if (next && next->parent != c) next = NULL;
    } else {
      next = troupe__names_get(&sys->names, c, seg, sl);
    }
    c = next;
    i = j;
  }
  if (c && (c->flags & TROUPE__CF_DEAD)) return NULL;
  return c;
}

/* Split "troupe://sys[@host:port]/path" into its parts. */
static int parse_uri(const char *uri, size_t len, const char **sys_name,
                     size_t *sys_len, const char **path, size_t *path_len) {
  static const char scheme[] = "troupe://";
  if (len < sizeof scheme - 1 || memcmp(uri, scheme, sizeof scheme - 1) != 0)
    return TROUPE_EINVAL;
  const char *p = uri + sizeof scheme - 1;
  const char *end = uri + len;
  const char *slash = memchr(p, '/', (size_t)(end - p));
  if (!slash) slash = end;
  const char *at = memchr(p, '@', (size_t)(slash - p));
  *sys_name = p;
  *sys_len = (size_t)((at ? at : slash) - p);
  *path = slash;
  *path_len = (size_t)(end - slash);
  return 0;
}

int troupe_select(troupe_system *sys, const char *path, troupe_ref *out) {
  if (!sys || !path || !out)
    return troupe__err(TROUPE_EINVAL, "troupe_select: NULL argument");
  *out = TROUPE_REF_NONE;
  size_t len = strlen(path);
  const char *p = path;
  if (strncmp(path, "troupe://", 9) == 0) {
    const char *sn;
    size_t sl;
    if (parse_uri(path, len, &sn, &sl, &p, &len) < 0)
      return troupe__err(TROUPE_EINVAL, "bad actor path \"%s\"", path);
    if (sl != strlen(sys->name) || memcmp(sn, sys->name, sl) != 0)
      return troupe__err(TROUPE_ENOENT, "path \"%s\" is not in system %s",
                         path, sys->name);
  } else if (path[0] != '/') {
    return troupe__err(TROUPE_EINVAL, "actor path must start with '/': "
                                      "\"%s\"", path);
  }
  const char *hash = memchr(p, '#', len);
  if (hash) len = (size_t)(hash - p);
  troupe__cell *c = walk(sys, p, len);
  if (!c) return troupe__err(TROUPE_ENOENT, "no actor at \"%s\"", path);
  *out = troupe__ref_of(c);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Identify (resolve across systems and nodes) */

static const troupe_field identify_fields[] = {
  {.name = "path", .kind = TROUPE_K_STRING,
   .offset = offsetof(troupe_identify, path), .elem_size = sizeof(char *)},
};
troupe_type TROUPE__T_IDENTIFY = {
  .manifest = "troupe.Identify", .version = 1,
  .size = sizeof(troupe_identify), .fields = identify_fields, .nfields = 1,
};

static const troupe_field identity_fields[] = {
  {.name = "actor", .kind = TROUPE_K_REF,
   .offset = offsetof(troupe_actor_identity, actor),
   .elem_size = sizeof(troupe_ref)},
};
troupe_type TROUPE_T_ACTOR_IDENTITY = {
  .manifest = "troupe.ActorIdentity", .version = 1,
  .size = sizeof(troupe_actor_identity), .fields = identity_fields,
  .nfields = 1,
};

/* ------------------------------------------------------------------ */
/* Refs as text: "troupe://system/path#<uid hex>". The uid makes the text
 * name one incarnation. */

static int ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                      size_t size);

/* Like snprintf: the full length is returned even when it does not fit
 * (the text is then truncated), so a caller can retry with a larger
 * buffer. */
int troupe__ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                       size_t size) {
  if (!buf && size) return troupe__err(TROUPE_EINVAL, "ref_to_uri: buffer");
  char tmp[1024];
  int n = ref_to_uri(sys, ref, tmp, sizeof tmp);
  if (n < 0) return n;
  if (size) {
    size_t c = (size_t)n < size - 1 ? (size_t)n : size - 1;
    memcpy(buf, tmp, c);
    buf[c] = '\0';
  }
  return n;
}

static int ref_to_uri(troupe_system *sys, troupe_ref ref, char *buf,
                      size_t size) {
  if (!buf || !size) return troupe__err(TROUPE_EINVAL, "ref_to_uri: buffer");
  if (troupe_ref_is_none(ref)) {
    buf[0] = '\0';
    return 0;
  }
  troupe__node *n = troupe__node_get(ref.node);
  troupe_system *owner = n ? atomic_load(&n->sys) : NULL;
  void *remote = n ? atomic_load(&n->remote) : NULL;
  int len;
  if (remote) {
    /* a node of another process: its name and address */
    const char *addr;
    const char *name = troupe__remote_name(remote, &addr);
    len = snprintf(buf, size, "troupe://%s@%s/$%" PRIx64 "#%" PRIx64, name,
                   addr, ref.uid, ref.uid);
    if (len < 0 || (size_t)len >= size)
      return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
    return len;
  }
  if (!sys) sys = owner;
  const char *addr = owner ? atomic_load(&owner->address) : NULL;
  if (owner && owner == sys && troupe__current == sys) {
    troupe__cell *c = troupe__cell_get(sys, ref.uid);
    if (c && !(c->flags & TROUPE__CF_DEAD)) {
      len = troupe__path_of(c, buf, size);
      if (len < 0) return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
      if (addr) {
        /* "troupe://name/..." -> "troupe://name@addr/..." */
        size_t nl = 9 + strlen(sys->name), al = strlen(addr);
        if ((size_t)len + al + 1 >= size)
          return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
        memmove(buf + nl + al + 1, buf + nl, (size_t)len - nl + 1);
        buf[nl] = '@';
        memcpy(buf + nl + 1, addr, al);
        len += (int)(al + 1);
      }
      int m = snprintf(buf + len, size - (size_t)len, "#%" PRIx64, ref.uid);
      if (m < 0 || (size_t)(len + m) >= size)
        return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
      return len + m;
    }
  }
  if (owner && addr) {
    len = snprintf(buf, size, "troupe://%s@%s/$%" PRIx64 "#%" PRIx64,
                   owner->name, addr, ref.uid, ref.uid);
    if (len < 0 || (size_t)len >= size)
      return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
    return len;
  }
  /* not resolvable to a path here: name it by node and uid */
  len = snprintf(buf, size, "troupe://%s/$%" PRIx64 "#%" PRIx64,
                 owner ? owner->name : "?", ref.uid, ref.uid);
  if (len < 0 || (size_t)len >= size)
    return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
  /* keep the node index, which this process understands */
  int m = snprintf(buf + len, size - (size_t)len, "@%" PRIx64, ref.node);
  if (m < 0 || (size_t)(len + m) >= size)
    return troupe__err(TROUPE_ERANGE, "ref_to_uri: buffer");
  return len + m;
}

int troupe__ref_from_uri(troupe_system *sys, const char *uri, size_t len,
                         troupe_ref *out) {
  if (!uri || !out) return troupe__err(TROUPE_EINVAL, "ref_from_uri: NULL");
  *out = TROUPE_REF_NONE;
  if (len == 0) return 0;
  const char *sn, *p;
  size_t sl, pl;
  if (parse_uri(uri, len, &sn, &sl, &p, &pl) < 0)
    return troupe__err(TROUPE_EDECODE, "not a troupe ref: \"%.*s\"",
                       (int)(len > 80 ? 80 : len), uri);
  const char *hash = memchr(p, '#', pl);
  uint64_t uid = 0, node = 0;
  size_t path_len = pl;
  if (hash) {
    path_len = (size_t)(hash - p);
    char tmp[48];
    size_t tl = pl - path_len - 1;
    if (tl == 0 || tl >= sizeof tmp)
      return troupe__err(TROUPE_EDECODE, "bad ref uid");
    memcpy(tmp, hash + 1, tl);
    tmp[tl] = '\0';
    char *end = NULL;
    uid = strtoull(tmp, &end, 16);
    if (end && *end == '@') node = strtoull(end + 1, &end, 16);
    if (!end || *end) return troupe__err(TROUPE_EDECODE, "bad ref uid");
  }
  if (!sys) sys = troupe__current;
  if (node) {
    out->node = node;
    out->uid = uid;
    return 0;
  }
  const char *at = memchr(sn, '@', (size_t)(p - sn));
  if (at) {
    /* "name@host:port": ours, or a node of another process */
    const char *a = at + 1;
    size_t al = (size_t)(p - a);
    const char *mine = sys ? atomic_load(&sys->address) : NULL;
    bool ours = mine && strlen(mine) == al && memcmp(mine, a, al) == 0 &&
                sl == strlen(sys->name) && memcmp(sn, sys->name, sl) == 0;
    if (!ours) {
      if (!uid) return troupe__err(TROUPE_EDECODE, "remote ref without uid");
      int rc = troupe__remote_node(sys, sn, sl, a, al, &out->node);
      if (rc < 0) return rc;
      out->uid = uid;
      return 0;
    }
  }
  if (sys && sl == strlen(sys->name) && memcmp(sn, sys->name, sl) == 0) {
    if (uid) {
      out->node = sys->node;
      out->uid = uid;
      return 0;
    }
    if (troupe__current == sys) {
      troupe__cell *c = walk(sys, p, path_len);
      if (c) *out = troupe__ref_of(c);
      else out->node = sys->node;  /* a dead path: dead letters */
      return 0;
    }
  }
  return troupe__err(TROUPE_ENOENT, "ref to unknown system \"%.*s\"",
                     (int)sl, sn);
}
