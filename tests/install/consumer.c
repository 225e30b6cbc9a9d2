/*
 * consumer.c: a separate program built against an installed troupe with
 * `pkg-config --cflags --libs troupe` (see tests/test_install.sh). It uses
 * only the installed headers and library.
 */
#include <troupe/troupe.h>

#include <stdio.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "consumer: FAILED: %s\n", what);
    failures++;
  }
}

int main(void) {
  const char *v = troupe_version_string();
  check(v != NULL && strcmp(v, TROUPE_VERSION_STRING) == 0,
        "troupe_version_string() matches the installed TROUPE_VERSION_STRING");
  check(troupe_version_hex() == TROUPE_VERSION_HEX,
        "troupe_version_hex() matches the installed TROUPE_VERSION_HEX");

  const char *msg = troupe_strerror(TROUPE_EINVAL);
  check(msg != NULL && strcmp(msg, "invalid argument") == 0,
        "troupe_strerror(TROUPE_EINVAL) is \"invalid argument\"");
  check(strcmp(troupe_err_name(TROUPE_EINVAL), "TROUPE_EINVAL") == 0,
        "troupe_err_name(TROUPE_EINVAL) is \"TROUPE_EINVAL\"");

  if (failures == 0)
    printf("consumer: troupe %s: ok\n", v);
  return failures == 0 ? 0 : 1;
}
