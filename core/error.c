/* error.c: error code table and per-thread detail text. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>

const char *troupe_strerror(int err) {
  if (err == 0) return "success";
  switch (err) {
#define X(name, val, msg) case val: return msg;
    TROUPE_ERRNO_MAP(X)
#undef X
  }
  return "unknown error";
}

const char *troupe_err_name(int err) {
  if (err == 0) return "TROUPE_OK";
  switch (err) {
#define X(name, val, msg) case val: return "TROUPE_" #name;
    TROUPE_ERRNO_MAP(X)
#undef X
  }
  return "UNKNOWN";
}

static _Thread_local char errmsg_buf[512];

const char *troupe_errmsg(void) { return errmsg_buf; }

int troupe__err(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg_buf, sizeof errmsg_buf, fmt, ap);
  va_end(ap);
  return code;
}

void troupe__err_clear(void) { errmsg_buf[0] = '\0'; }
