#!/bin/sh
# bench/run.sh: the `make bench` driver. make builds the programs first.
#
#   make bench                          # every program in bench_programs
#   make bench BENCH="persist recovery" # only these workloads
#
# Environment (set by the make rule): BENCH_LIST, the programs (paths
# relative to the build directory); BENCH, workload words. A word selects
# the programs named bench_<word>* (a '-' in the word matches '_' too). A
# word that names no program is a workload name: every other program is run
# with BENCH=<those words> in its environment (a program may use it to skip
# its other workloads) and only its result lines with workload=<word> are
# kept. Programs selected by name run without BENCH. A word that
# selects nothing at all is an error.
#
# Result lines (stdout lines starting with "workload=", see
# ../shared/design/BENCHMARKS.md) go to stdout; everything else the programs
# print goes to stderr. Exit status 1 when a program fails or prints a
# malformed result line. Each program is stopped after BENCH_TIMEOUT seconds
# (default 300; the short defaults take well under 20 s per workload).
set -u

say() { printf 'bench: %s\n' "$*" >&2; }

list=${BENCH_LIST:-}
limit=${BENCH_TIMEOUT:-300}
words=${BENCH:-}
if [ -z "$(printf '%s' "$list" | tr -d ' \t\n')" ]; then
  say "no benchmark programs are built yet (bench_programs is empty)"
  [ -z "$words" ] || exit 1
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0
: >"$tmp/used"

norm() { printf '%s' "$1" | tr '-' '_'; }

# name_matches PROGRAM: the BENCH words that select PROGRAM by its name.
name_matches() {
  base=$(norm "$(basename "$1")")
  for w in $words; do
    case $base in "bench_$(norm "$w")"*) printf '%s\n' "$w" ;; esac
  done
}

# workload words: those naming no program.
wl_words=
for w in $words; do
  hit=
  for p in $list; do
    case $(norm "$(basename "$p")") in "bench_$(norm "$w")"*) hit=1 ;; esac
  done
  [ -n "$hit" ] || wl_words="${wl_words:+$wl_words }$w"
done

# run PROGRAM FILTER: run it; print result lines whose workload is in
# FILTER (all when FILTER is empty) to stdout, the rest to stderr.
run() {
  prog=$1 filter=$2
  say "running $prog"
  start=$(date +%s)
  if [ -n "$filter" ]; then
    BENCH="$filter" timeout --kill-after=10 "$limit" "./$prog" >"$tmp/out"
  else
    (unset BENCH; timeout --kill-after=10 "$limit" "./$prog" >"$tmp/out")
  fi
  rc=$?
  [ $rc -eq 124 ] && say "$prog exceeded BENCH_TIMEOUT=$limit seconds"
  while IFS= read -r line; do
    case $line in
      workload=*)
        wl=${line#workload=}; wl=${wl%% *}
        keep=
        if [ -z "$filter" ]; then keep=1; else
          for f in $filter; do [ "$wl" = "$f" ] && keep=1; done
        fi
        if [ -z "$keep" ]; then
          printf '%s\n' "$line" >&2
          continue
        fi
        printf '%s\n' "$wl" >>"$tmp/used"
        case " $line " in
          *" system="*" value="*" unit="*) printf '%s\n' "$line" ;;
          *) say "malformed result line from $prog (needs system=, value=, unit=): $line"
             status=1 ;;
        esac ;;
      *) printf '%s\n' "$line" >&2 ;;
    esac
  done <"$tmp/out"
  if [ $rc -ne 0 ]; then
    say "FAILED: $prog exited with status $rc"
    status=1
  else
    say "$prog done in $(( $(date +%s) - start ))s"
  fi
}

for p in $list; do
  if [ ! -x "$p" ]; then
    say "FAILED: $p is not built"
    status=1
    continue
  fi
  if [ -z "$words" ]; then
    run "$p" ""
  elif [ -n "$(name_matches "$p")" ]; then
    name_matches "$p" >>"$tmp/used"
    run "$p" ""
  elif [ -n "$wl_words" ]; then
    run "$p" "$wl_words"
  fi
done

for w in $words; do
  if ! grep -qxF -e "$w" "$tmp/used"; then
    say "no benchmark program or workload matches '$w'"
    status=1
  fi
done
exit $status
