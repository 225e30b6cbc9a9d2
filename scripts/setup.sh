#!/bin/bash
# setup.sh: make this machine able to build troupe, then build it.
#
#   scripts/setup.sh            # as root on a fresh Debian 12
#
# 1. Installs the Debian packages that are missing (apt-get is skipped when
#    everything is already installed).
# 2. autoreconf -fi, configure in a build directory, make -j2.
#
# Environment:
#   BUILD_DIR         build directory (default: _build in the source tree;
#                     a relative path is taken from the source tree)
#   CONFIGURE_FLAGS   extra arguments for configure
#                     (e.g. "--enable-sanitizers=address,undefined")
#   JOBS              parallel make jobs (default: 2)
#   SETUP_SKIP_APT=1  never call apt-get; fail if something is missing
#
# Quiet on success: each step prints one line; a failing step prints the
# tail of its log. Idempotent: run it as often as you like.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-_build}
case $build_dir in /*) ;; *) build_dir="$top/$build_dir" ;; esac
jobs=${JOBS:-2}

packages=(
  build-essential autoconf automake libtool pkg-config
  libuv1-dev libcbor-dev libpq-dev librocksdb-dev
  postgresql
  clang libclang-rt-14-dev
)

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

logdir="$build_dir/setup-logs"

# run_step NAME CMD...: run CMD (a command or a function, in a subshell)
# with its output in $logdir/NAME.log; on failure show the errors and the
# end of that log, and stop.
run_step() {
  local name=$1; shift
  local log="$logdir/$name.log"
  if ! ( "$@" ) >"$log" 2>&1 </dev/null; then
    printf 'setup: error: %s failed (full log: %s)\n' "$name" "$log" >&2
    if grep -qE 'error|Error|undefined reference' "$log"; then
      grep -E -B2 -A3 'error|Error|undefined reference' "$log" | head -n 80 >&2
    else
      tail -n 40 "$log" >&2
    fi
    exit 1
  fi
}

# --- 1. packages --------------------------------------------------------
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

mkdir -p "$logdir"
if [ ${#missing[@]} -eq 0 ]; then
  say "packages: all present"
else
  [ "${SETUP_SKIP_APT:-0}" = 1 ] && die "missing packages: ${missing[*]} (SETUP_SKIP_APT=1)"
  command -v apt-get >/dev/null || die "missing packages: ${missing[*]}, and apt-get is not available (troupe targets Debian 12)"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing packages: ${missing[*]}; run this script as root"
    sudo=(sudo -n)
  fi
  say "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run_step apt-update "${sudo[@]}" apt-get update -q
  run_step apt-install "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. build -----------------------------------------------------------
do_autoreconf() { cd "$top" && autoreconf -fi; }
# shellcheck disable=SC2086  # CONFIGURE_FLAGS is a list of words
do_configure() { cd "$build_dir" && "$top/configure" ${CONFIGURE_FLAGS:-}; }

say "autoreconf"
mkdir -p "$top/m4"
run_step autoreconf do_autoreconf

say "configure in $build_dir ${CONFIGURE_FLAGS:-}"
run_step configure do_configure

say "make -j$jobs"
run_step make make -C "$build_dir" -j"$jobs"
if grep -E '(warning|error):' "$logdir/make.log" >&2; then
  say "the build printed the compiler messages above"
fi
say "built in $build_dir"
