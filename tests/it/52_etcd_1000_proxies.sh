#!/usr/bin/env bash
# Issue 14, "Tests": the scale check. Three etcd members, three kvcs
# (store = "etcd"), 1 000 simulated proxies (tests/it/many_proxies.lua: the
# handshake, REGISTER, PING, ACK of every table, as kvp does) spread over
# the three kvcs' proxy ports. A table change (set_policy on the leader)
# reaches all 1 000; prints the time from the change being sent / accepted
# to the last proxy having it. Only a generous bound is asserted (30 s).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_cs3.sh"
N=${KV_PROXIES:-1000}
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((N + 200)) ] || { echo "# ulimit -n $(ulimit -n) is too low for $N proxies: skipped"; exit 77; }

cs3_start "lease_ttl = 3"
M1=$(it_free_port)
it_redis_start "$M1" || exit 1
L=$(who_leads)
it_check "init_table on the leader $L" it_init_table "$(http_of $L)" test 1023 "127.0.0.1:$M1"
PORTS=$(cs3_list proxy | sed 's/127.0.0.1://g')
ready="$IT_DIR/ready"
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/many_proxies.lua" "$PORTS" "$N" test "$ready" 50 > "$IT_DIR/many.out" 2>&1 &
sim=$!
it_check "$N simulated proxies registered" it_wait 40 test -f "$ready"
head -3 "$IT_DIR/many.out" | sed 's/^/# /'
connected() { cs_metric "$1" 'kvcs_proxies_connected{namespace="test"}'; }
echo "# connected per kvcs: A $(connected A), B $(connected B), C $(connected C)"
it_eq "spread over the three kvcs, $N in all" "$N" "$(( $(connected A) + $(connected B) + $(connected C) ))"
it_check "each kvcs holds some" test "$(connected A)" -gt 0 -a "$(connected B)" -gt 0 -a "$(connected C)" -gt 0

L=$(who_leads)
t0=$(now_ms)
out=$(curl -s -m 30 -d '{"namespace":"test","source":"return { deny = { \"flushall\" } }"}' \
  "http://127.0.0.1:$(http_of $L)/kvstore/cs/set_policy")
t1=$(now_ms)
it_eq "set_policy on the leader $L accepted ($((t1 - t0)) ms)" 1001 "$(echo "$out" | J j.code)"
wait "$sim"
rc=$?
cat "$IT_DIR/many.out" | sed 's/^/# /'
it_eq "the new table reached all $N" 0 "$rc"
last=$(sed -n 's/^pushed .* last at \([0-9]*\)$/\1/p' "$IT_DIR/many.out")
first=$(sed -n 's/^pushed .* first at \([0-9]*\),.*/\1/p' "$IT_DIR/many.out")
if [ -n "$last" ]; then
  echo "# $N-proxy push: first proxy $((first - t0)) ms, last proxy $((last - t0)) ms after the change was sent; last $((last - t1)) ms after it was accepted"
  it_check "within 30 s: $((last - t0)) ms" test $((last - t0)) -lt 30000
fi
it_done
