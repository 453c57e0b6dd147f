#!/usr/bin/env bash
# A stale replica is never promoted (kvcs.ha, replica_stale_after): two
# masters with a replica each. R1's link to M1 is broken (a wrong masterauth
# and its master connection killed) for longer than replica_stale_after (3 s
# here) before both masters are killed with SIGKILL. M2's replica, in sync,
# takes M2's place; M1 stays in the table, the config server says why at
# WARN, and R1 is left a replica -- promoting it would silently drop every
# write M1 took after the link broke.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); R1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" && it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
it_kvcs_start cs1 "" "replica_stale_after = 3" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$cs1_PROXY" "" "redis_down_timeout = 2" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
it_check "the config server learned both replicas" it_wait 15 sh -c \
  "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"127.0.0.1:$M1\",namespace=\"test\"} 1' &&
   curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"127.0.0.1:$M2\",namespace=\"test\"} 1'"
it_check "both replicas are in sync" it_wait 10 sh -c \
  "redis-cli -p $R1 -a $IT_PW --no-auth-warning info replication | grep -q master_link_status:up &&
   redis-cli -p $R2 -a $IT_PW --no-auth-warning info replication | grep -q master_link_status:up"

redis-cli -p "$P_PORT" set hello kept-on-m1 >/dev/null   # bucket 804 -> M1
it_redis "$R1" config set masterauth wrong >/dev/null
it_redis "$R1" client kill type master >/dev/null
it_check "R1's link to M1 is down (it cannot authenticate)" it_wait 5 sh -c \
  "redis-cli -p $R1 -a $IT_PW --no-auth-warning info replication | grep -q master_link_down_since_seconds:[0-9]"
redis-cli -p "$P_PORT" set hello written-after-the-break >/dev/null
sleep 5                       # longer than replica_stale_after
it_redis_stop "$M1"
it_redis_stop "$M2"

it_check "within 20 s M2's replica has taken M2's place" it_wait 20 sh -c \
  "luajit $IT_ROOT/scripts/lib/json.lua '#(j.table[\"127.0.0.1:$R2\"] or {}) == 511 and j.table[\"127.0.0.1:$M2\"] == nil' < $IT_DIR/cs1/table/test | grep -qx true"
it_check "the config server says why M1 is left alone" it_wait 10 \
  grep -q "WARN  HA test: 127.0.0.1:$M1: .*no replica with its recent data (127.0.0.1:$R1 its link broke" "$IT_DIR/cs1/kvcs.log"
sleep 3                       # another round of DOWN reports
it_eq "M1 is still in the table with its 512 buckets" "512" \
  "$(J "#(j.table['127.0.0.1:$M1'] or {})" < "$IT_DIR/cs1/table/test")"
it_eq "R1 was not promoted" "role:slave" "$(it_redis "$R1" info replication | tr -d '\r' | grep '^role:')"
it_eq "no fail-over to R1 is logged" "0" "$(grep -c "replaced by its replica 127.0.0.1:$R1" "$IT_DIR/cs1/kvcs.log")"
it_done
