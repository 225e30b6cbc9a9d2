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
# The build itself is tests/fuzz/build.sh's, for the frame target.
set -eu
FUZZ_TARGET=frame exec sh "$(cd "$(dirname "$0")" && pwd)/build.sh" "$@"
