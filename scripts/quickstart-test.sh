#!/bin/bash
# quickstart-test.sh: install what is missing, build, run the whole test suite.
#
#   sudo scripts/quickstart-test.sh
#
# Runs scripts/setup.sh (packages + build in $BUILD_DIR, default _build).
# When TROUPE_PG_URL is unset it starts a throwaway PostgreSQL server
# (scripts/pg-test-server.sh) for the tests and stops it on exit. Then
# `make check`; on failure the failed tests' logs are printed. The last
# line is the summary: "N passed, N failed, N skipped". Exit status is
# non-zero when anything failed.
#
# Environment: BUILD_DIR, CONFIGURE_FLAGS, JOBS (see setup.sh),
# TROUPE_PG_URL (use this server instead of a throwaway one),
# CHECK_TIMEOUT (seconds for the whole `make check`, default 1500).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-_build}
case $build_dir in /*) ;; *) build_dir="$top/$build_dir" ;; esac
export BUILD_DIR="$build_dir"
jobs=${JOBS:-2}

say() { printf 'quickstart-test: %s\n' "$*" >&2; }

if ! "$top/scripts/setup.sh"; then
  say "error: the build failed, no test ran"
  printf '0 passed, 1 failed, 0 skipped\n'
  exit 1
fi

pg_dir=
cleanup() {
  if [ -n "$pg_dir" ]; then
    "$top/scripts/pg-test-server.sh" stop "$pg_dir" || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${TROUPE_PG_URL:-}" ]; then
  rc=0
  env=$("$top/scripts/pg-test-server.sh" start) || rc=$?
  if [ $rc -eq 0 ]; then
    eval "$env"
    pg_dir=$TROUPE_PG_DIR
    export TROUPE_PG_URL TROUPE_PG_DIR
  elif [ $rc -eq 77 ] && [ "${CI:-}" != true ]; then
    say "no PostgreSQL server binaries: the PostgreSQL tests will skip"
  else
    say "error: could not start a throwaway PostgreSQL server"
    exit 1
  fi
else
  say "using the PostgreSQL server of TROUPE_PG_URL"
fi

stamp="$build_dir/.quickstart-test.stamp"
: >"$stamp"
say "make -j$jobs check"
rc=0
(cd "$build_dir" && timeout --kill-after=30 "${CHECK_TIMEOUT:-1500}" \
   make -j"$jobs" check </dev/null) || rc=$?
[ $rc -eq 124 ] && say "error: make check exceeded ${CHECK_TIMEOUT:-1500} seconds"

# Sum the results of this run (the .trs files it wrote).
passed=0 failed=0 skipped=0
while read -r res; do
  case $res in
    PASS|XPASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)) ;;
  esac
done < <(find "$build_dir" -name '*.trs' -newer "$stamp" -print0 |
           xargs -0r sed -n 's/^:test-result: *\([A-Z]*\).*/\1/p')

if [ $rc -ne 0 ]; then
  log="$build_dir/test-suite.log"
  if [ -f "$log" ] && [ "$log" -nt "$stamp" ]; then
    say "failures (from $log):"
    head -n 3000 "$log" >&2
  else
    say "error: make check failed before the tests ran (see the output above)"
  fi
  # A build failure counts as a failure even though no test reported it.
  [ $failed -gt 0 ] || failed=1
fi
rm -f "$stamp"
# Stop the server now, so that the summary is the last line.
cleanup
pg_dir=
printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
[ $failed -eq 0 ] && [ $rc -eq 0 ]
