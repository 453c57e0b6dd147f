#!/usr/bin/env bash
# HA in data_store mode (SPEC §6, TEST_GUIDE 4): two masters with replicas,
# two proxies (redis_down_timeout 3 s), a master killed with SIGKILL. While a
# third proxy that still sees the master (a stand-in that never votes) is
# connected, nothing changes; once it leaves, the config server promotes the
# replica (REPLICAOF NO ONE), puts it in the table (once: one version bump),
# the slave config server gets the table, writes through both proxies work
# again and the data written before the crash is there. The old master,
# started again, becomes a replica of the new one.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); R1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" && it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P1 test "$cs1_PROXY" "" "redis_down_timeout = 3" || exit 1
it_kvp_start P2 test "$cs1_PROXY" "" "redis_down_timeout = 3" || exit 1
it_wait 10 it_kvp_ready "$P1_PORT" && it_wait 10 it_kvp_ready "$P2_PORT" || exit 1

metric() { curl -s "http://127.0.0.1:$cs1_HTTP/metrics" | grep -F "$1" | awk '{print $2}'; }
table_of() { J "$1" < "$IT_DIR/cs1/table/test"; }

it_check "the config server learned both replicas (INFO replication)" it_wait 15 sh -c \
  "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"127.0.0.1:$M1\",namespace=\"test\"} 1' &&
   curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"127.0.0.1:$M2\",namespace=\"test\"} 1'"

# data on both masters ("hello" is bucket 804 -> M1, "foo" is bucket 705 -> M2)
redis-cli -p "$P1_PORT" set hello before >/dev/null
redis-cli -p "$P1_PORT" set foo kept >/dev/null
redis-benchmark -p "$P1_PORT" -t set -n 2000 -r 100000 -q >/dev/null 2>&1
it_eq "the replica has the master's writes (WAIT)" "1" "$(it_redis "$M1" wait 1 5000)"

# a proxy that still sees M1 (never votes) blocks the fail-over while connected
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_proxy.lua" "$cs1_PROXY" test 1 "sleep 15" > "$IT_DIR/fake.out" 2>&1 &
FAKE=$!
it_wait 5 sh -c "curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/proxy_info | grep -q '127.0.0.1:1\"'" ||
  { echo "the stand-in proxy did not register"; cat "$IT_DIR/fake.out"; exit 1; }
# test_all across the fail-over: only unavailable/timeout errors, tolerated
"$IT_BIN/test_all" -p "$P2_PORT" -l 300 --tolerate-unavailable > "$IT_DIR/test_all.out" 2>&1 &
TA=$!
sleep 1
t0=$(date +%s)
it_redis_stop "$M1"
it_check "both real proxies report the master down" it_wait 10 sh -c \
  "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_down_votes{master=\"127.0.0.1:$M1\",namespace=\"test\"} 2'"
it_eq "2 of 3 connected proxies: the table is unchanged" "1 512" \
  "$(table_of "j.version .. ' ' .. #(j.table['127.0.0.1:$M1'] or {})")"
it_check "the config server says why it waits" grep -q "2 of 3 connected proxies report it down" "$IT_DIR/cs1/kvcs.log"
wait "$FAKE"   # the stand-in disconnects: its (absent) vote no longer blocks

it_check "within 30 s of the kill the table has the replica in place of the master" it_wait $((t0 + 30 - $(date +%s))) sh -c \
  "luajit $IT_ROOT/scripts/lib/json.lua '#(j.table[\"127.0.0.1:$R1\"] or {}) == 512 and j.table[\"127.0.0.1:$M1\"] == nil' < $IT_DIR/cs1/table/test | grep -qx true"
echo "     (fail-over $(( $(date +%s) - t0 )) s after the kill)"
it_eq "the promoted replica reports role:master" "role:master" "$(it_redis "$R1" info replication | tr -d '\r' | grep '^role:')"
it_eq "one fail-over: version 2, the other master untouched" "2 511" \
  "$(table_of "j.version .. ' ' .. #(j.table['127.0.0.1:$M2'] or {})")"
it_check "the fail-over is logged at WARN with its reason" grep -q "WARN  HA test: fail-over: 127.0.0.1:$M1 replaced by its replica 127.0.0.1:$R1" "$IT_DIR/cs1/kvcs.log"
it_check "the slave config server has the new table" it_wait 10 sh -c "cmp -s '$IT_DIR/cs1/table/test' '$IT_DIR/cs2/table/test'"
it_check "writes through proxy 1 work again" it_wait 10 sh -c "redis-cli -p $P1_PORT set hello after1 | grep -qx OK"
it_check "writes through proxy 2 work again" it_wait 10 sh -c "redis-cli -p $P2_PORT set hello after2 | grep -qx OK"
it_eq "reads see the new master" "after2 kept" "$(redis-cli -p "$P1_PORT" get hello) $(redis-cli -p "$P1_PORT" get foo)"
it_eq "the write is on the promoted replica" "after2" "$(it_redis "$R1" get 804_hello)"
wait "$TA"
it_eq "test_all -l 300 --tolerate-unavailable across the fail-over exits 0" "0" "$?"
tail -n 3 "$IT_DIR/test_all.out" | sed 's/^/     /'
it_check "test_all met unavailable errors and ran those loops again" grep -Eq "^[0-9]+ unavailable/timeout error\(s\) tolerated" "$IT_DIR/test_all.out"
sleep 4
it_eq "later DOWN repeats change nothing (still version 2)" "2" "$(table_of 'j.version')"

# the old master comes back (empty: no persistence) and is re-attached
it_redis_start "$M1" || exit 1
it_check "the old master becomes a replica of the new one" it_wait 15 sh -c \
  "it_redis() { redis-cli -p \$1 -a $IT_PW --no-auth-warning info replication; }; it_redis $M1 | tr -d '\r' | grep -q '^master_port:$R1\$' && it_redis $M1 | tr -d '\r' | grep -q '^role:slave'"
it_check "and syncs from it" it_wait 15 sh -c "redis-cli -p $M1 -a $IT_PW --no-auth-warning get 804_hello | grep -qx after2"
it_check "the re-attach is logged" grep -q "old master 127.0.0.1:$M1 answers again .*made it a replica of 127.0.0.1:$R1" "$IT_DIR/cs1/kvcs.log"
it_check "the config server learns the new replica" it_wait 15 sh -c \
  "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"127.0.0.1:$R1\",namespace=\"test\"} 1'"
it_eq "the table stays as it is" "2" "$(table_of 'j.version')"
it_done
