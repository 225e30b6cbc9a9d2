#!/bin/bash
# quickstart-demo.sh: install what is missing, build, run the demo.
#
#   sudo scripts/quickstart-demo.sh [demo arguments]
#
# Runs scripts/setup.sh (packages + build in $BUILD_DIR, default _build),
# then the demo program examples/bank from the build directory (bank
# accounts as persistent entities on embedded RocksDB, in data/bank/ of the
# source tree). Extra arguments go to the demo.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-_build}
case $build_dir in /*) ;; *) build_dir="$top/$build_dir" ;; esac
export BUILD_DIR="$build_dir"

"$top/scripts/setup.sh"

demo="$build_dir/examples/bank"
if [ ! -x "$demo" ]; then
  printf 'quickstart-demo: error: the demo program %s was not built\n' "$demo" >&2
  printf 'quickstart-demo: (examples/Makefile.inc must build examples/bank)\n' >&2
  exit 1
fi
printf 'quickstart-demo: running %s\n' "$demo" >&2
cd "$top"
exec "$demo" "$@"
