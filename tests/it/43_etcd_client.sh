#!/usr/bin/env bash
# 43: kv.etcd (issue 14's etcd client) against real etcd members: kv, txn,
# leases, a watch through the kill of its member, one member down, two down;
# then auth on a one-member cluster (tokens that expire); then a fake member
# answering bad bytes.
. "$(dirname "$0")/lib.sh"

# each "ok - x" / "FAILED - x" line of the script is one check here
run_script() {
  local out line
  out=$(timeout 120 "$IT_BIN/kvlua" "$IT_ROOT/tests/it/etcd_client.lua" "$@" 2>&1)
  while IFS= read -r line; do
    case $line in
      "ok - "*) it_check "${line#ok - }" true ;;
      "FAILED - "*) it_check "${line#FAILED - }" false ;;
      *) echo "$line" ;;
    esac
  done <<<"$out"
  it_check "$1 script ran to its end" grep -qx done <<<"$out"
}

it_etcd_start 3 || exit 1
run_script cluster

it_etcd_start 1 --auth-token-ttl 1 || exit 1
ctl() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" "$@" >/dev/null; }
it_check "auth enabled on the second cluster" eval 'ctl user add root:rootpw && ctl role add root &&
  ctl user grant-role root root && ctl auth enable' 
run_script auth

# bad bytes from a "member": errors, never a crash
run_script garbage "$(it_free_port)"

it_done
