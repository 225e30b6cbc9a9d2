#!/bin/bash
# bank-cluster.sh: the bank example as 3 processes joined over TCP on
# 127.0.0.1, with the journal, snapshots and read model in PostgreSQL.
#
#   scripts/bank-cluster.sh [BANK_PROGRAM]
#
# Starts nodes 1 and 2 in the background and node 0 in the foreground
# (the seed; it drives the demo). Node 0 kills node 2 with SIGKILL half
# way: the cluster downs it and its accounts recover on the survivors.
# Then node 1 is told to leave (SIGTERM) and everything stops.
#
# PostgreSQL: $TROUPE_PG_URL when set; otherwise a throwaway server is
# started with scripts/pg-test-server.sh and removed at the end. Ports:
# BANK_PORT (default: a free one of 20000-59999) and the next two.
# BANK_PROGRAM defaults to $BUILD_DIR/examples/bank (BUILD_DIR: _build).
# Exit status: node 0's (0: every account answered with its balance), 77
# when no PostgreSQL is available.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-_build}
case $build_dir in /*) ;; *) build_dir="$top/$build_dir" ;; esac
bank=${1:-$build_dir/examples/bank}
say() { printf 'bank-cluster: %s\n' "$*" >&2; }
if [ ! -x "$bank" ]; then
  say "no bank program at $bank (build first, or pass its path)"
  exit 1
fi

pg_dir=
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$pg_dir" ]; then "$top/scripts/pg-test-server.sh" stop "$pg_dir" || true; fi
}
trap cleanup EXIT
if [ -z "${TROUPE_PG_URL:-}" ]; then
  set +e
  env_lines=$("$top/scripts/pg-test-server.sh" start)
  rc=$?
  set -e
  [ $rc -eq 77 ] && { say "no PostgreSQL server binaries: skipped"; exit 77; }
  [ $rc -eq 0 ] || exit 1
  eval "$env_lines"
  pg_dir=$TROUPE_PG_DIR
fi

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
port=${BANK_PORT:-}
if [ -z "$port" ]; then
  for _ in $(seq 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if port_free "$p" && port_free $((p + 1)) && port_free $((p + 2)); then
      port=$p; break
    fi
  done
fi
[ -n "$port" ] || { say "no free ports"; exit 1; }

say "nodes on 127.0.0.1:$port-$((port + 2))"
"$bank" --pg "$TROUPE_PG_URL" --node 1 --port "$port" &
pids+=($!)
"$bank" --pg "$TROUPE_PG_URL" --node 2 --port "$port" &
victim=$!
pids+=($victim)
set +e
"$bank" --pg "$TROUPE_PG_URL" --node 0 --port "$port" --kill "$victim"
rc=$?
set -e
kill -TERM "${pids[0]}" 2>/dev/null || true
wait "${pids[0]}" 2>/dev/null || true
wait "$victim" 2>/dev/null || true
pids=()
exit $rc
