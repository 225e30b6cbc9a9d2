#!/bin/sh
# test_tool.sh: the `troupe` command-line tool end to end.
#
# tests/tool_fixture writes a RocksDB journal (12 ids, 207 stored events,
# tags, snapshots, a trimmed stream, untyped and malformed payloads); every
# `troupe journal` subcommand runs against it: status numbers, verify,
# copies (plain, resumed by --limit with and without a checkpoint,
# conflicting, upcasting through tests/tool_plugin.so), inspect, corrupted
# stores and the one-line errors for bad URLs, missing stores and
# unreachable servers. With TROUPE_PG_URL set it also copies RocksDB ->
# PostgreSQL -> RocksDB (a fresh schema, dropped at the end) and checks a
# wrong user; without it those parts are skipped with a note.
#
# Run by `make check` (AM_TESTS_ENVIRONMENT sets top_builddir); by hand:
#   top_builddir=_build sh tests/test_tool.sh
set -eu

: "${top_builddir:=.}"
b=$(cd "$top_builddir" && pwd)
troupe="$b/tools/troupe"
fixture="$b/tests/tool_fixture"
plugin="$b/tests/.libs/tool_plugin.so"
[ -x "$troupe" ] || { echo "test_tool: $troupe is not built" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-tool.XXXXXX")
pg_schema=
cleanup() {
  if [ -n "$pg_schema" ] && command -v psql >/dev/null 2>&1; then
    psql "$TROUPE_PG_URL" -q -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

n=0
fail() { echo "test_tool: FAIL: $*" >&2; exit 1; }
ok() { n=$((n + 1)); echo "ok $n - $*"; }

# run WANT CMD...: run CMD, expect exit status WANT; stdout in $tmp/out,
# stderr in $tmp/err.
run() {
  want=$1
  shift
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  set -e
  # a sanitizer report may exit with a status a test expects (1)
  if grep -q -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' \
       -e 'runtime error:' "$tmp/err"; then
    cat "$tmp/err" >&2
    fail "\`$*\`: sanitizer report"
  fi
  if [ "$got" -ne "$want" ]; then
    echo "--- stdout" >&2; cat "$tmp/out" >&2
    echo "--- stderr" >&2; cat "$tmp/err" >&2
    fail "\`$*\` exited with $got, expected $want"
  fi
}
has() { grep -q -- "$1" "$tmp/out" || { cat "$tmp/out" >&2; fail "stdout lacks \"$1\""; }; }
err_has() { grep -q -- "$1" "$tmp/err" || { cat "$tmp/err" >&2; fail "stderr lacks \"$1\""; }; }
# the failure is one line on stderr, naming the command
one_line() {
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err" >&2; fail "$1: not one line on stderr"; }
  grep -q '^troupe' "$tmp/err" || { cat "$tmp/err" >&2; fail "$1: the line does not name the command"; }
}
overall() { sed -n 's/^total: .*overall hash \([0-9a-f]*\)$/\1/p' "$tmp/out"; }

# --- help and version ---------------------------------------------------------
run 0 "$troupe" --help; has "usage: troupe"
run 0 "$troupe" --version; has "^troupe [0-9]"
run 0 "$troupe" journal --help; has "inspect URL --id ID"
for c in status migrate verify copy inspect; do
  run 0 "$troupe" journal $c --help; has "usage: troupe journal $c"
done
run 2 "$troupe"; run 2 "$troupe" frobnicate; one_line "unknown command"
run 2 "$troupe" journal frobnicate; one_line "unknown subcommand"
run 2 "$troupe" journal status; one_line "missing URL"
run 2 "$troupe" journal inspect rocksdb:/nowhere; err_has "--id"
run 2 "$troupe" journal copy a; one_line "copy with one store"
run 2 "$troupe" journal verify --frob x; one_line "unknown option"
run 2 "$troupe" projection
ok "help, version and usage errors"

# --- a fixture store ------------------------------------------------------------
src="rocksdb:$tmp/src"
"$fixture" write "$src" 10 20 || fail "tool_fixture write"
run 0 "$troupe" journal status "$src"
has "schema version:  [0-9]* found, [0-9]* supported (current)"
has "persistence ids: 12$"
has "events:          207 stored"
has "highest offset:  209$"
ok "status counts ids, events and the highest offset"

run 0 "$troupe" journal verify "$src"
has "result: ok"
has "^total: 12 streams, 207 events, 5 tags"
has '^stream "trimmed" events=4 seq=3..6 highest=6 '
src_hash=$(overall)
[ -n "$src_hash" ] || fail "no overall hash"
run 0 "$troupe" journal verify --quiet "$src"
[ "$(overall)" = "$src_hash" ] || fail "verify is not deterministic"
grep -q '^stream' "$tmp/out" && fail "--quiet printed streams"
ok "verify: ok, per-stream and overall hashes"

run 0 "$troupe" journal migrate "$src"; has "already at version [0-9]"
run 0 "$troupe" journal migrate --dry-run "$src"; has "already at version [0-9]"
ok "migrate is idempotent"

# --- copies -----------------------------------------------------------------------
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/dst1"
has "copied: 12 streams, 209 events appended, 10 snapshots saved"
has "^verified: 12 streams, 207 events"
run 0 "$troupe" journal verify "rocksdb:$tmp/dst1"
[ "$(overall)" = "$src_hash" ] || fail "the copy's overall hash differs"
has '^stream "trimmed" events=4 seq=3..6 highest=6 '
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/dst1"
has "copied: 12 streams, 0 events appended, 0 snapshots saved"
ok "copy rocksdb -> rocksdb, verified, and again (nothing to do)"

run 4 "$troupe" journal copy --limit 50 "$src" "rocksdb:$tmp/dst2"
has "stopped after 50 events"
run 0 "$troupe" journal status "rocksdb:$tmp/dst2"; has "events:          50 stored"
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/dst2"; has "^verified"
run 0 "$troupe" journal verify "rocksdb:$tmp/dst2"
[ "$(overall)" = "$src_hash" ] || fail "the resumed copy's hash differs"
ok "an interrupted copy resumes from the destination's heads"

cp="$tmp/copy.checkpoint"
run 4 "$troupe" journal copy --checkpoint "$cp" --limit 70 "$src" "rocksdb:$tmp/dst3"
grep -q "^done $(printf 'acct-002' | od -An -tx1 | tr -d ' \n')\$" "$cp" ||
  { cat "$cp" >&2; fail "the checkpoint does not name acct-002"; }
run 0 "$troupe" journal copy --checkpoint "$cp" "$src" "rocksdb:$tmp/dst3"
has 'resuming after "acct-002"'
run 0 "$troupe" journal verify "rocksdb:$tmp/dst3"
[ "$(overall)" = "$src_hash" ] || fail "the checkpointed copy's hash differs"
run 2 "$troupe" journal copy --checkpoint "$cp" "$src" "rocksdb:$tmp/other"
one_line "checkpoint of another pair"
ok "a checkpointed copy resumes after the last id done"

"$fixture" append "rocksdb:$tmp/dst1" acct-001 || fail "fixture append"
run 1 "$troupe" journal copy "$src" "rocksdb:$tmp/dst1"
err_has 'conflict in "acct-001"'; one_line "conflict (ahead)"
"$fixture" diverge "rocksdb:$tmp/dst4" acct-000 || fail "fixture diverge"
run 1 "$troupe" journal copy "$src" "rocksdb:$tmp/dst4"
err_has "event 1 differs"; one_line "conflict (differs)"
"$fixture" append "rocksdb:$tmp/dst5" stranger || fail "fixture append"
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/dst5"; has "^verified: 12 streams"
ok "copy refuses conflicting destinations, leaves ids only they have alone"

run 0 "$troupe" journal copy --upcast --plugin "$plugin" "$src" "rocksdb:$tmp/up"
has "204 events upcast, 3 of types the plugin does not know"
has "^verified: 12 streams, 207 events"
run 0 "$troupe" journal inspect --json --id acct-001 "rocksdb:$tmp/up"
has '"manifest":"fixture.Deposited","version":2'
run 0 "$troupe" journal inspect --json --plugin "$plugin" --id acct-001 --from 2 --to 2 "rocksdb:$tmp/up"
has '"payload":{"amount":102,"account":"acct-001","currency":"EUR"}'
run 2 "$troupe" journal copy --upcast "$src" "rocksdb:$tmp/up2"; one_line "--upcast alone"
run 2 "$troupe" journal copy --upcast --plugin "$tmp/nope.so" "$src" "rocksdb:$tmp/up2"
one_line "missing plugin"
ok "copy --upcast rewrites events through the plugin's upcaster"

# --- inspect ----------------------------------------------------------------------
run 0 "$troupe" journal inspect --json --id acct-001 "$src"
[ "$(wc -l <"$tmp/out")" -eq 20 ] || fail "inspect --json: not 20 lines"
has '^{"persistence_id":"acct-001","seq":20,'
has '"tags":\["all","odd","fifth"\]'
has '"payload":{"amount":120,"account":"acct-001"}'
run 0 "$troupe" journal inspect --plugin "$plugin" --id acct-001 --from 3 --to 4 "$src"
has '^seq 3 .*2023-11-14T22:13:23.000Z  writer 7  fixture.Deposited v1'
has 'as fixture.Deposited v2: {"amount":103,"account":"acct-001","currency":"EUR"}'
[ "$(grep -c '^seq' "$tmp/out")" -eq 2 ] || fail "inspect --from 3 --to 4"
run 0 "$troupe" journal inspect --id acct-001 --to 1 "$src"
has '{"amount": 101, "account": "acct-001"}'
run 1 "$troupe" journal inspect --id raw "$src"
has "{\"x\": \[1, h'00ff', -5, 1.5, \"é\"\]}"
has "malformed payload (3 bytes): invalid UTF-8 in a text string at byte 1"
has "malformed payload (41 bytes): nested too deeply"
run 1 "$troupe" journal inspect --json --id raw "$src"
has '"payload_error":'; has '"payload_hex":"818181'
run 1 "$troupe" journal inspect --id nobody "$src"; one_line "unknown id"
ok "inspect: JSON lines, diagnostic notation, plugin decoding, malformed payloads"

# --- corrupted stores ----------------------------------------------------------------
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/gap"
"$fixture" corrupt-gap "$tmp/gap" || fail "fixture corrupt-gap"
run 1 "$troupe" journal verify "rocksdb:$tmp/gap"
has "follows seq 1 (gap)"; has "^result: [0-9]* problem"
run 0 "$troupe" journal copy "$src" "rocksdb:$tmp/tag"
"$fixture" corrupt-tag "$tmp/tag" || fail "fixture corrupt-tag"
run 1 "$troupe" journal verify "rocksdb:$tmp/tag"
has "but the tag index does not list it"
ok "verify finds a hole in a stream and a missing tag index entry"

# --- failures are one line -----------------------------------------------------------
run 2 "$troupe" journal status "bogus:thing"; one_line "bad URL"
run 3 "$troupe" journal status "rocksdb:$tmp/missing"; one_line "missing store"
[ -d "$tmp/missing" ] && fail "status created a store"
run 3 "$troupe" journal verify "rocksdb:$tmp/missing"; one_line "verify, missing store"
run 3 "$troupe" journal copy "rocksdb:$tmp/missing" "rocksdb:$tmp/x"; one_line "copy, missing source"
run 3 "$troupe" journal inspect --id a "rocksdb:$tmp/missing"; one_line "inspect, missing store"
run 3 "$troupe" journal status "postgresql://troupe@127.0.0.1:1/troupe?connect_timeout=5"
one_line "unreachable server"
run 3 "$troupe" journal status "postgresql://troupe:s3cret@127.0.0.1:1/troupe?connect_timeout=5"
grep -q s3cret "$tmp/err" && fail "a password was printed"
mkdir "$tmp/locked"; chmod 000 "$tmp/locked"
if [ "$(id -u)" -ne 0 ]; then
  run 3 "$troupe" journal status "rocksdb:$tmp/locked"; one_line "no permission"
fi
chmod 755 "$tmp/locked"
ok "bad URL, missing store, unreachable server: one line, non-zero"

# --- PostgreSQL -------------------------------------------------------------------------
if [ -z "${TROUPE_PG_URL:-}" ]; then
  echo "# SKIP PostgreSQL parts: TROUPE_PG_URL is not set (scripts/pg-test-server.sh start)"
else
  pg_schema="tool_test_$$"
  pg="pg:$TROUPE_PG_URL schema=$pg_schema"
  run 0 "$troupe" journal copy "$src" "$pg"; has "^verified: 12 streams, 207 events"
  run 0 "$troupe" journal verify "$pg"
  [ "$(overall)" = "$src_hash" ] || fail "the PostgreSQL copy's hash differs"
  run 0 "$troupe" journal status "$pg"; has "events:          207 stored"
  run 0 "$troupe" journal copy "$pg" "rocksdb:$tmp/back"
  run 0 "$troupe" journal verify "rocksdb:$tmp/back"
  [ "$(overall)" = "$src_hash" ] || fail "the round trip's hash differs"
  run 0 "$troupe" journal migrate "$pg"; has "already at version"
  run 3 "$troupe" journal status "pg:$TROUPE_PG_URL user=troupe_no_such_role schema=$pg_schema"
  one_line "wrong user"
  run 3 "$troupe" journal status "pg:$TROUPE_PG_URL schema=tool_missing_$$"
  one_line "missing schema"
  ok "copy rocksdb -> postgresql -> rocksdb keeps every stream"
fi

echo "1..$n"
