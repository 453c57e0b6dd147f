#!/usr/bin/env bash
# Issue 14, "Tests": kill -9 the leader kvcs DURING a fail-over. Three etcd
# members, three kvcs (store = "etcd"), two masters with a replica each, two
# proxies on config_servers (redis_down_timeout 3 s). M1 is killed; both
# proxies vote it down; the leader sends its replica REPLICAOF NO ONE and
# at that very moment (tests/it/kill_when.lua polls the replica's
# ROLE and kills the leader when it turns master) the leader is killed,
# before or while it writes the new table. Whichever: the next leader
# finishes the job, and the master is failed over exactly once -- table v2
# naming the replica in M1's place, one fail-over logged over all three
# kvcs (kvcs_ha_failovers_total of the survivors agrees), REPLICAOF sent to
# the replica once (INFO commandstats) -- and both proxies write again.
# Then M2 dies and the new leader is killed the moment both proxies' down
# votes for it are in etcd: M2 is failed over once too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_cs3.sh"

cs3_start "lease_ttl = 2"
M1=$(it_free_port); R1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" && it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
L=$(who_leads)
it_check "init_table on the leader $L" it_init_table "$(http_of $L)" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2"
PLIST=$(cs3_list proxy)
for p in P1 P2; do
  it_kvp_start $p test 7100 "" "config_servers = \"$PLIST\"
redis_down_timeout = 3" || exit 1
done
it_wait 10 it_kvp_ready "$P1_PORT" && it_wait 10 it_kvp_ready "$P2_PORT" || exit 1
echo "# leader $L; P1 and P2 registered with: $(grep -h 'registered with config server' "$IT_DIR"/P?/kvp.log | sed 's/.*server \([^ ]*\) .*/\1/' | tr '\n' ' ')"

learned() { # the HA state in etcd (the next leader takes it) names both replicas
  local s
  s=$(ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" get /kvp/test/ha/state --print-value-only 2>/dev/null)
  case "$s" in *"127.0.0.1:$R1"*) ;; *) return 1 ;; esac
  case "$s" in *"127.0.0.1:$R2"*) ;; *) return 1 ;; esac
}
it_check "the leader learned both replicas, in etcd" it_wait 20 learned ||
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" get --prefix /kvp/test/ha
redis-cli -p "$P1_PORT" set hello before >/dev/null   # bucket 804 -> M1
redis-cli -p "$P1_PORT" set foo kept >/dev/null       # bucket 705 -> M2
it_eq "the replica has the master's writes (WAIT)" 1 "$(it_redis "$M1" wait 1 5000)"

LPID=$(cat "$IT_DIR/$L/kvcs.pid")
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/kill_when.lua" "$LPID" 25 promoted "$R1" > "$IT_DIR/watch.out" 2>&1 &
watcher=$!
sleep 0.3
t0=$(now_ms)
it_redis_stop "$M1"
wait "$watcher"
it_eq "the leader sent REPLICAOF NO ONE and was killed at once: $(cat "$IT_DIR/watch.out")" 0 "$?"
rm -f "$IT_DIR/$L/kvcs.pid"
line="fail-over: 127.0.0.1:$M1 replaced by its replica 127.0.0.1:$R1"
# (its table write may still land after this: it may be on its way to etcd)
F=A; [ "$L" = A ] && F=B
v=$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $F)/kvstore/cs/bucket_table" | J j.version)
echo "# right after the kill the table is v$v (v2: the killed leader's write landed)"
NEW=$(wait_new_leader 10 "$L")
it_check "another kvcs leads ($NEW)" test "$NEW" != none
tbl() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $NEW)/kvstore/cs/bucket_table" | J "$1"; }
replaced() { test "$(tbl "#(j.table['127.0.0.1:$R1'] or {}) == 512 and j.table['127.0.0.1:$M1'] == nil")" = true; }
it_check "within 30 s of the kill the table names the replica in M1's place" it_wait 30 replaced
echo "# fail-over done $(( $(now_ms) - t0 )) ms after the kill of M1"
it_check "what was written before the crash reads back through P2" it_wait 15 sh -c "redis-cli -p $P2_PORT get hello | grep -qx before" ||
  echo "#   P2 answers: $(redis-cli -p "$P2_PORT" get hello); R1 holds: $(it_redis "$R1" get 804_hello); P2 holds table v$(curl -s "http://127.0.0.1:$P2_HTTP/kvstore/proxy/bucket_table" | J j.version)"
it_check "writes through P1 work again" it_wait 15 sh -c "redis-cli -p $P1_PORT set hello after1 | grep -qx OK"
it_check "writes through P2 work again" it_wait 15 sh -c "redis-cli -p $P2_PORT set foo after2 | grep -qx OK"
sleep 4 # later DOWN repeats, the next leader's rounds: nothing more may happen
it_eq "one fail-over: table v2, M2's buckets untouched" "2 511" "$(tbl "j.version .. ' ' .. #(j.table['127.0.0.1:$M2'] or {})")"
it_eq "the replica is a master" "role:master" "$(it_redis "$R1" info replication | tr -d '\r' | grep '^role:')"
calls=$(it_redis "$R1" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_replicaof:calls=\([0-9]*\),.*/\1/p')
it_eq "REPLICAOF sent to the replica once" 1 "${calls:-0}"
# one fail-over logged over the three kvcs -- or none, when the killed
# leader's table write reached etcd as it died (before its log line): then
# it promoted (its log says so) and the survivors count 0
once_logged() { # $1: the fail-over line, $2: the killed leader, $3: the replica
  local logged sum=0 n
  logged=$(cat "$IT_DIR"/[ABC]/kvcs.log | grep -c "$1")
  for n in A B C; do
    [ $n = "$2" ] && { grep -q "$1" "$IT_DIR/$2/kvcs.log" && sum=$((sum + 1)); continue; }
    sum=$((sum + $(cs_metric $n kvcs_ha_failovers_total)))
  done
  echo "# fail-over log lines: $logged; kvcs_ha_failovers_total over the survivors (+1 when the dead leader logged it): $sum"
  [ "$logged" = 1 ] && [ "$sum" = 1 ] && return 0
  [ "$logged" = 0 ] && [ "$sum" = 0 ] && grep -q "CONFIG REWRITE on $3" "$IT_DIR/$2/kvcs.log" &&
    echo "#   (none: the killed leader's write landed as it died)"
}
it_check "one fail-over over the three kvcs (logs, kvcs_ha_failovers_total)" once_logged "$line" "$L" "127.0.0.1:$R1"
it_eq "both proxies read the new writes" "after1 after2" \
  "$(redis-cli -p "$P1_PORT" get hello) $(redis-cli -p "$P2_PORT" get foo)"

# ------------------------------------------------ the leader killed once the votes are in
# (the killed one is back first); M2 dies; the moment etcd holds both
# proxies' down votes for it (the members' reports) the leader is killed:
# before, during or right after its promotion of R2 -- once, whichever
it_kvcs_start "$L" || exit 1
L2=$NEW
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/kill_when.lua" "$(cat "$IT_DIR/$L2/kvcs.pid")" 25 votes "$ETCD_ENDPOINTS" \
  /kvp/test/members "127.0.0.1:$M2" 2 > "$IT_DIR/watch2.out" 2>&1 &
watcher=$!
sleep 0.3
it_redis_stop "$M2"
t0=$(now_ms)
wait "$watcher"
it_eq "both proxies' down votes for M2 in etcd, leader $L2 killed: $(cat "$IT_DIR/watch2.out")" 0 "$?"
rm -f "$IT_DIR/$L2/kvcs.pid"
c2=$(it_redis "$R2" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_replicaof:calls=\([0-9]*\),.*/\1/p')
echo "#   REPLICAOF calls on R2 right after the kill: ${c2:-0}"
grep -q "fail-over: 127.0.0.1:$M2 replaced" "$IT_DIR/$L2/kvcs.log" && echo "#   (it had written the new table and logged it)"
NEW2=$(wait_new_leader 10 "$L2")
it_check "another kvcs leads ($NEW2)" test "$NEW2" != none
tbl2() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $NEW2)/kvstore/cs/bucket_table" | J "$1"; }
replaced2() { test "$(tbl2 "#(j.table['127.0.0.1:$R2'] or {}) == 511 and j.table['127.0.0.1:$M2'] == nil")" = true; }
it_check "the table names R2 in M2's place" it_wait 30 replaced2
echo "# fail-over of M2 done $(( $(now_ms) - t0 )) ms after its kill"
it_check "writes through P2 to M2's buckets work again" it_wait 15 sh -c "redis-cli -p $P2_PORT set foo after3 | grep -qx OK"
sleep 3
it_eq "one more fail-over: table v3" 3 "$(tbl2 j.version)"
calls=$(it_redis "$R2" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_replicaof:calls=\([0-9]*\),.*/\1/p')
it_eq "REPLICAOF sent to R2 once" 1 "${calls:-0}"
line2="fail-over: 127.0.0.1:$M2 replaced by its replica 127.0.0.1:$R2"
once_lines() { # as once_logged, the lines only (a kvcs's metric may count M1's too)
  local logged
  logged=$(cat "$IT_DIR"/[ABC]/kvcs.log | grep -c "$1")
  echo "# fail-over log lines: $logged"
  [ "$logged" = 1 ] || { [ "$logged" = 0 ] && grep -q "CONFIG REWRITE on $3" "$IT_DIR/$2/kvcs.log" &&
    echo "#   (none: the killed leader's write landed as it died)"; }
}
it_check "one fail-over of M2 over the three kvcs (logs)" once_lines "$line2" "$L2" "127.0.0.1:$R2"
it_eq "what was written before reads back" "after1 after3" \
  "$(redis-cli -p "$P1_PORT" get hello) $(redis-cli -p "$P1_PORT" get foo)"
it_done
