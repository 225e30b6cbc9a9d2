#!/bin/sh
# tests/fuzz/build.sh: build the libFuzzer target for the decoders.
#
#   tests/fuzz/build.sh [BUILDDIR]
#
# BUILDDIR is a configured troupe build directory (for config.h and
# include/troupe/version.h); default: $srcdir/_build_fuzz, configured here
# when missing. Produces BUILDDIR/fuzz_decode, built with clang and
# -fsanitize=fuzzer,address,undefined from the codec sources only. Run it:
#
#   cd BUILDDIR && mkdir -p corpus-new &&
#   ./fuzz_decode -max_total_time=600 corpus-new $srcdir/tests/fuzz/corpus
#
# New inputs worth keeping (findings, once fixed) go into
# tests/fuzz/corpus/, which `make check` replays (tests/test_fuzz_corpus).
#
# FUZZ_TARGET=frame builds BUILDDIR/fuzz_frame instead (what
# tests/fuzz/build_frame.sh does); default: decode.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/_build_fuzz}
CC=${CC:-clang}
target=${FUZZ_TARGET:-decode}

if [ ! -f "$build/config.h" ]; then
  mkdir -p "$build"
  (cd "$build" && "$top/configure" -q CC="$CC")
fi
[ -f "$build/include/troupe/version.h" ] || (cd "$build" && ./config.status -q)

# The codec's core files; frame.c needs troupe_buf (core/buf.c), which
# needs the codec's allocator, so the frame target adds its own to them.
srcs="core/buf.c core/types.c core/value.c core/codec.c core/json.c
      core/registry.c core/upcast.c core/envelope.c core/error.c"
case $target in
  decode) ;;
  frame) srcs="cluster/frame.c cluster/sha256.c $srcs" ;;
  *) echo "$0: unknown FUZZ_TARGET $target (decode or frame)" >&2; exit 2 ;;
esac
set --
for s in $srcs; do set -- "$@" "$top/$s"; done

$CC -std=gnu11 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DTROUPE_BUILDING -I"$build" -I"$build/include" -I"$top/include" -I"$top" \
  -I"$top/tests" $(pkg-config --cflags libcbor 2>/dev/null || true) \
  -Wall -Wextra -Wno-unused-parameter \
  -o "$build/fuzz_$target" "$here/fuzz_$target.c" "$here/ref_stub.c" "$@" \
  $(pkg-config --libs libcbor 2>/dev/null || echo -lcbor) -lpthread -lm
echo "built $build/fuzz_$target"
