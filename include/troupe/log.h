/*
 * troupe/log.h: per-system logging with levels and a pluggable sink.
 */
#ifndef TROUPE_LOG_H
#define TROUPE_LOG_H

#include "troupe/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum troupe_log_level {
  TROUPE_LOG_TRACE = 0,
  TROUPE_LOG_DEBUG = 1,
  TROUPE_LOG_INFO = 2,
  TROUPE_LOG_WARN = 3,
  TROUPE_LOG_ERROR = 4,
  TROUPE_LOG_OFF = 5
} troupe_log_level;

/*
 * A log sink. Called on the thread that logs (normally the system's loop
 * thread) with the system's name, the source (an actor path or a module
 * name) and the formatted message (no trailing newline). `data` is the
 * pointer given with the sink. Must not call back into the system.
 */
typedef void (*troupe_log_fn)(void *data, troupe_log_level level,
                              const char *system, const char *source,
                              const char *message);

/* The default sink: one line on stderr, "time level system source: msg". */
TROUPE_EXTERN void troupe_log_stderr(void *data, troupe_log_level level,
                                     const char *system, const char *source,
                                     const char *message);

/* "TRACE", "DEBUG", ... for a level; "?" for others. */
TROUPE_EXTERN const char *troupe_log_level_name(troupe_log_level level);

#ifdef __cplusplus
}
#endif
#endif
