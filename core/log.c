/* log.c: logging. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

const char *troupe_log_level_name(troupe_log_level level) {
  switch (level) {
    case TROUPE_LOG_TRACE: return "TRACE";
    case TROUPE_LOG_DEBUG: return "DEBUG";
    case TROUPE_LOG_INFO: return "INFO";
    case TROUPE_LOG_WARN: return "WARN";
    case TROUPE_LOG_ERROR: return "ERROR";
    default: return "?";
  }
}

void troupe_log_stderr(void *data, troupe_log_level level, const char *system,
                       const char *source, const char *message) {
  (void)data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s %s: %s\n", tm.tm_hour,
          tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
          troupe_log_level_name(level), system, source, message);
}

static void vlog(troupe_system *sys, troupe_log_level lvl, const char *src,
                 const char *fmt, va_list ap) {
  if (!sys || lvl < sys->log_level || !sys->log) return;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  sys->log(sys->log_data, lvl, sys->name, src, msg);
}

void troupe__log(troupe_system *sys, troupe_log_level lvl, const char *src,
                 const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(sys, lvl, src, fmt, ap);
  va_end(ap);
}

void troupe_system_log(troupe_system *sys, troupe_log_level lvl,
                       const char *fmt, ...) {
  if (!sys || !fmt) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(sys, lvl, "system", fmt, ap);
  va_end(ap);
}

void troupe_log(troupe_ctx *ctx, troupe_log_level lvl, const char *fmt, ...) {
  troupe__cell *c = (troupe__cell *)ctx;
  if (!c || !fmt || lvl < c->sys->log_level) return;
  char path[256];
  if (troupe__path_of(c, path, sizeof path) < 0) snprintf(path, 4, "...");
  va_list ap;
  va_start(ap, fmt);
  vlog(c->sys, lvl, path, fmt, ap);
  va_end(ap);
}
