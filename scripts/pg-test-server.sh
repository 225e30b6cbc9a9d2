#!/bin/bash
# pg-test-server.sh: a throwaway PostgreSQL server for tests and benchmarks.
#
#   eval "$(scripts/pg-test-server.sh start)"   # sets TROUPE_PG_URL, TROUPE_PG_DIR
#   psql "$TROUPE_PG_URL" -c 'select 1'
#   scripts/pg-test-server.sh restart           # e.g. a test restarting the server
#   scripts/pg-test-server.sh stop              # stops it and deletes its files
#
# start: initdb in a fresh temporary directory, as a non-root user (when run
#   as root: the system user "troupe-test", created if missing), listening
#   only on a unix socket in that directory (port 55432 names the socket;
#   no TCP unless TROUPE_PG_TCP=1, then 127.0.0.1 on a free port), trust
#   authentication, fsync and synchronous_commit on. Prints shell `export`
#   lines for TROUPE_PG_URL (a libpq connection string) and TROUPE_PG_DIR on
#   stdout; everything else goes to stderr. The same lines are kept in
#   $TROUPE_PG_DIR/env.
# stop [DIR] / restart [DIR] / status [DIR]: DIR defaults to $TROUPE_PG_DIR.
#   stop deletes DIR unless TROUPE_PG_KEEP=1.
#
# Exit status: 0 ok, 1 failure, 77 no PostgreSQL server binaries (the reason
# is printed), so callers can skip the way automake tests do.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin, else the newest
# /usr/lib/postgresql/*/bin), TROUPE_PG_PORT (default 55432),
# TROUPE_PG_USER (server user when run as root, default troupe-test),
# TROUPE_PG_TCP=1, TROUPE_PG_KEEP=1.
set -euo pipefail

me=pg-test-server
say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }
marker=.troupe-pg-test
started=0

find_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    printf '%s\n' "$PG_BIN"
    return
  fi
  if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
    printf '%s\n' /usr/lib/postgresql/15/bin
    return
  fi
  local d best=
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && best=$d
  done
  if [ -z "$best" ] && command -v pg_ctl >/dev/null 2>&1; then
    best=$(dirname "$(command -v pg_ctl)")
  fi
  printf '%s\n' "$best"
}

# as_owner DIR CMD...: run CMD as the user that owns DIR (we may be root).
as_owner() {
  local dir=$1; shift
  local owner
  owner=$(stat -c %U "$dir")
  if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ]; then
    if command -v runuser >/dev/null 2>&1; then
      (cd "$dir" && runuser -u "$owner" -- "$@")
    else
      # shellcheck disable=SC2016  # expanded by the inner shell
      (cd "$dir" && su -s /bin/sh "$owner" -c '"$0" "$@"' "$@")
    fi
  else
    (cd "$dir" && "$@")
  fi
}

# The user the server runs as when we are root (postgres refuses root).
server_user() {
  local u=${TROUPE_PG_USER:-troupe-test}
  if ! id -u "$u" >/dev/null 2>&1; then
    if command -v useradd >/dev/null 2>&1 &&
       useradd --system --no-create-home --home-dir /nonexistent \
               --shell /usr/sbin/nologin "$u" >/dev/null 2>&1; then
      say "created system user $u"
    elif id -u nobody >/dev/null 2>&1; then
      say "cannot create user $u; running the server as nobody"
      u=nobody
    else
      die "no unprivileged user to run PostgreSQL as (set TROUPE_PG_USER)"
    fi
  fi
  printf '%s\n' "$u"
}

port_free() {
  # Nothing answers on 127.0.0.1:$1.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_dir() {
  local d=${1:-${TROUPE_PG_DIR:-}}
  [ -n "$d" ] || die "no server directory: pass it or set TROUPE_PG_DIR"
  [ -f "$d/$marker" ] || die "$d is not a directory made by $me"
  printf '%s\n' "$d"
}

cmd_start() {
  local bin
  bin=$(find_bin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ] || [ ! -x "$bin/pg_ctl" ] ||
     [ ! -x "$bin/postgres" ]; then
    say "skipped: no PostgreSQL server binaries (looked in ${bin:-/usr/lib/postgresql/*/bin}; install the postgresql package)"
    exit 77
  fi

  local user=
  if [ "$(id -u)" -eq 0 ]; then
    user=$(server_user)
  else
    user=$(id -un)
  fi

  local port=${TROUPE_PG_PORT:-55432} listen=''
  if [ "${TROUPE_PG_TCP:-0}" = 1 ]; then
    local tries=0
    while ! port_free "$port"; do
      port=$((port + 1)); tries=$((tries + 1))
      [ $tries -lt 200 ] || die "no free TCP port from ${TROUPE_PG_PORT:-55432}"
    done
    listen=127.0.0.1
  fi

  # /tmp rather than $TMPDIR: a unix socket path must stay under 108 bytes.
  local dir
  dir=$(mktemp -d /tmp/troupe-pg.XXXXXX)
  touch "$dir/$marker"
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown "$user" "$dir"

  # shellcheck disable=SC2064  # expand now: the trap must name this dir
  trap "[ \$started = 1 ] || rm -rf '$dir'" EXIT

  if ! as_owner "$dir" "$bin/initdb" -D "$dir/data" -U "$user" \
       --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed"
  fi
  cat >>"$dir/data/postgresql.conf" <<EOF

# troupe throwaway test server
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 100
log_destination = 'stderr'
logging_collector = off
EOF
  if ! as_owner "$dir" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
       -w -t 60 start >"$dir/pg_ctl.log" 2>&1; then
    cat "$dir/pg_ctl.log" >&2
    tail -n 30 "$dir/server.log" >&2 || true
    die "the server did not start"
  fi

  local url="host=$dir port=$port dbname=postgres user=$user"
  {
    printf "export TROUPE_PG_URL='%s'\n" "$url"
    printf "export TROUPE_PG_DIR='%s'\n" "$dir"
  } >"$dir/env"
  started=1
  say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') running as $user in $dir (socket port $port${listen:+, tcp $listen:$port})"
  cat "$dir/env"
}

cmd_stop() {
  local dir
  dir=$(pick_dir "${1:-}")
  local bin
  bin=$(find_bin)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$dir" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop \
      >/dev/null 2>&1 || say "pg_ctl stop failed in $dir (see $dir/server.log)"
  fi
  if [ "${TROUPE_PG_KEEP:-0}" = 1 ]; then
    say "stopped; kept $dir"
  else
    rm -rf "$dir"
    say "stopped and removed $dir"
  fi
}

cmd_restart() {
  local dir
  dir=$(pick_dir "${1:-}")
  as_owner "$dir" "$(find_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
    -m fast -w -t 60 restart >&2
}

cmd_status() {
  local dir
  dir=$(pick_dir "${1:-}")
  as_owner "$dir" "$(find_bin)/pg_ctl" -D "$dir/data" status
}

case ${1:-start} in
  start)   cmd_start ;;
  stop)    cmd_stop "${2:-}" ;;
  restart) cmd_restart "${2:-}" ;;
  status)  cmd_status "${2:-}" ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start, stop, restart, status)" ;;
esac
