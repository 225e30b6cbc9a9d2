#!/bin/sh
# tests/fuzz/build_frame.sh: build the libFuzzer target for the TCP frame
# decoder and handshake messages (tests/fuzz/fuzz_frame.c).
#
#   tests/fuzz/build_frame.sh [BUILDDIR]
#
# BUILDDIR is a configured troupe build directory (for config.h and
# include/troupe/version.h); default: $srcdir/_build_fuzz, configured here
# when missing. Produces BUILDDIR/fuzz_frame, built with clang and
# -fsanitize=fuzzer,address,undefined. Run it:
#
#   cd BUILDDIR && mkdir -p corpus-frame-new &&
#   ./fuzz_frame -max_total_time=600 corpus-frame-new \
#       $srcdir/tests/fuzz/corpus-frame
#
# Inputs worth keeping (findings, once fixed) go into
# tests/fuzz/corpus-frame/, which `make check` replays (tests/test_frame).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/_build_fuzz}
CC=${CC:-clang}

if [ ! -f "$build/config.h" ]; then
  mkdir -p "$build"
  (cd "$build" && "$top/configure" -q CC="$CC")
fi
[ -f "$build/include/troupe/version.h" ] || (cd "$build" && ./config.status -q)

# frame.c needs troupe_buf (core/buf.c), which needs the codec's allocator:
# the same core files as tests/fuzz/build.sh.
srcs="cluster/frame.c cluster/sha256.c core/buf.c core/types.c core/value.c
      core/codec.c core/json.c core/registry.c core/upcast.c core/envelope.c
      core/error.c"
set --
for s in $srcs; do set -- "$@" "$top/$s"; done

$CC -std=gnu11 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DTROUPE_BUILDING -I"$build" -I"$build/include" -I"$top/include" -I"$top" \
  -I"$top/tests" $(pkg-config --cflags libcbor 2>/dev/null || true) \
  -Wall -Wextra -Wno-unused-parameter \
  -o "$build/fuzz_frame" "$here/fuzz_frame.c" "$here/ref_stub.c" "$@" \
  $(pkg-config --libs libcbor 2>/dev/null || echo -lcbor) -lpthread -lm
echo "built $build/fuzz_frame"
