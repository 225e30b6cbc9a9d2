#!/bin/sh
# test_install.sh: install troupe into a staging directory, build a separate
# program against it with pkg-config, run it, and check that the shared
# library exports only troupe_* symbols.
#
# Run by `make check` (AM_TESTS_ENVIRONMENT provides top_srcdir,
# top_builddir, CC and SAN_LDFLAGS); works in VPATH builds and distcheck.
set -eu

fail() { echo "test_install: FAIL: $*" >&2; exit 1; }
skip() { echo "test_install: SKIP: $*" >&2; exit 77; }

: "${top_builddir:=.}" "${top_srcdir:=.}"
builddir=$(cd "$top_builddir" && pwd)
srcdir=$(cd "$top_srcdir" && pwd)
cc=${CC:-cc}

command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"

stage=$(mktemp -d "${TMPDIR:-/tmp}/troupe-install.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM

# 1. Install into the staging directory. MAKEFLAGS is dropped: this make is
#    not part of the one running the tests.
echo "== make install DESTDIR=$stage"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "${MAKE:-make}" -C "$builddir" install \
  DESTDIR="$stage/root" >"$stage/install.log" 2>&1 ||
  { cat "$stage/install.log" >&2; fail "make install"; }

pcfile=$(find "$stage/root" -name troupe.pc | head -n 1)
[ -n "$pcfile" ] || fail "troupe.pc was not installed"
incdir=$(find "$stage/root" -type d -path '*/include/troupe' | head -n 1)
[ -n "$incdir" ] || fail "no include/troupe directory was installed"

# Every public header in the source tree must be installed.
for h in "$srcdir"/include/troupe/*.h; do
  [ -f "$incdir/$(basename "$h")" ] ||
    fail "include/troupe/$(basename "$h") is not installed: add it to troupeinclude_HEADERS in its module's Makefile.inc"
done
# Internal headers must not be.
if find "$stage/root" -name internal.h | grep -q .; then
  fail "an internal.h was installed"
fi

# 2. Build the consumer with the staged pkg-config file. pkgconf prefixes
#    the -I/-L paths of a DESTDIR install with PKG_CONFIG_SYSROOT_DIR.
PKG_CONFIG_PATH=$(dirname "$pcfile")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
PKG_CONFIG_SYSROOT_DIR="$stage/root"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$(pkg-config --cflags troupe) || fail "pkg-config --cflags troupe"
libs=$(pkg-config --libs troupe) || fail "pkg-config --libs troupe"
echo "== pkg-config: $cflags $libs"
case " $cflags " in *" -I$stage/root"*) ;; *) fail "pkg-config cflags do not name the staged include directory: $cflags" ;; esac

echo "== $cc consumer.c"
# shellcheck disable=SC2086  # flag lists
$cc -std=c11 -Wall -Wextra -Werror $cflags -o "$stage/consumer" \
  "$srcdir/tests/install/consumer.c" $libs ${SAN_LDFLAGS:-} ||
  fail "the consumer does not compile against the installed headers and library"

# 3. Run it against the staged library.
libdir=$(dirname "$(find "$stage/root" -name 'libtroupe.so*' | head -n 1)")
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
if command -v ldd >/dev/null 2>&1; then
  ldd "$stage/consumer" | grep -q "libtroupe.so.* => $libdir/" ||
    fail "the consumer does not load the staged libtroupe: $(ldd "$stage/consumer" | grep libtroupe)"
fi
"$stage/consumer" || fail "the consumer program failed"

# 4. The shared library exports the public prefix and nothing else:
#    functions are troupe_*, data objects troupe_* or TROUPE_* (descriptors
#    such as TROUPE_T_TERMINATED); troupe__/TROUPE__ names are internal.
so=$(find "$stage/root" -name 'libtroupe.so' | head -n 1)
[ -n "$so" ] || skip "no shared libtroupe.so (configured with --disable-shared?)"
command -v nm >/dev/null 2>&1 || skip "nm is not installed"
nm -D --defined-only "$so" >"$stage/exports"
grep -q ' T troupe_' "$stage/exports" || fail "libtroupe.so exports no troupe_ function"
bad=$(awk '
  $NF ~ /^(_init|_fini|_edata|_end|__bss_start)$/ { next }
  $NF ~ /^__(odr_asan|asan|ubsan|tsan|sanitizer)/ { next }   # instrumentation
  $NF ~ /^(troupe|TROUPE)__/ { print; next }
  $(NF-1) ~ /^[TtWwi]$/ { if ($NF !~ /^troupe_/) print; next }
  $NF !~ /^(troupe|TROUPE)_/ { print }
' "$stage/exports")
[ -z "$bad" ] ||
  fail "libtroupe.so exports symbols outside the public prefix (make internals static, or leave out TROUPE_EXTERN; functions are troupe_*):
$bad"
echo "== libtroupe.so exports $(wc -l <"$stage/exports") symbols, all public"
echo "test_install: PASS"
