#!/bin/sh
# test_bank_cluster.sh: the README's 3-process bank (scripts/bank-cluster.sh)
# on loopback: 3 processes over TCP on PostgreSQL form a cluster, serve the
# sharded accounts, survive a SIGKILL of one node (its accounts recover on
# the survivors with the same balances) and leave. Uses $TROUPE_PG_URL, or
# the script's own throwaway server; skipped (77) without PostgreSQL.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
out=$("$top_srcdir/scripts/bank-cluster.sh" "$top_builddir/examples/bank" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: bank-cluster.sh exited $rc"; exit 1; }
for want in "cluster up: 3 nodes" "node 2 was downed and removed" \
            "every account answered from a survivor with its balance"; do
  printf '%s\n' "$out" | grep -q "$want" || { echo "FAIL: no \"$want\""; exit 1; }
done
if printf '%s\n' "$out" | grep -q "(differs)"; then
  echo "FAIL: the read model differs from the entities"; exit 1
fi
exit 0
