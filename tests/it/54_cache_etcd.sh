#!/usr/bin/env bash
# Issue 14, "every guarantee of today still holds with etcd": a cache
# cluster (cluster_type = "cache") on two kvcs sharing etcd: the leader
# adds a server (scale_cache_cluster), a follower refuses it (1029), a dead
# server voted down by proxies attached to DIFFERENT kvcs is removed from
# the table once (the votes meet at the leader through etcd), both proxies
# run the new table.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

it_etcd_start 1 || exit 1
A=$(it_free_port); B=$(it_free_port); C=$(it_free_port)
for p in $A $B $C; do it_redis_start "$p" || exit 1; done
EXTRA="store = \"etcd\"
etcd_endpoints = \"$ETCD_ENDPOINTS\"
cluster_type = \"cache\""
it_kvcs_start cs1 "" "$EXTRA" || exit 1
it_wait 10 sh -c "curl -s http://127.0.0.1:$cs1_HTTP/kvstore/cs/leader | grep -q '\"is_leader\":true'" || exit 1
it_kvcs_start cs2 "" "$EXTRA" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$A" "127.0.0.1:$B" || exit 1
it_kvp_start P1 test "$cs1_PROXY" "" "redis_down_timeout = 3" || exit 1
it_kvp_start P2 test "$cs2_PROXY" "" "redis_down_timeout = 3" || exit 1
it_wait 10 it_kvp_ready "$P1_PORT" && it_wait 10 it_kvp_ready "$P2_PORT" || exit 1
S=/kvstore/cs/scale_cache_cluster
add="{\"namespace\":\"test\",\"action\":\"add\",\"addr\":\"127.0.0.1:$C\"}"
it_eq "a follower refuses scale_cache_cluster (1029)" 1029 "$(curl -s -d "$add" "http://127.0.0.1:$cs2_HTTP$S" | J j.code)"
it_eq "the leader adds a server" 1001 "$(curl -s -d "$add" "http://127.0.0.1:$cs1_HTTP$S" | J j.code)"
ver() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$1/kvstore/cs/bucket_table" | J j.version; }
it_check "the follower has it" it_wait 5 sh -c "[ \"\$(curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs2_HTTP/kvstore/cs/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 2 ]"
it_redis_stop "$C"
it_check "the dead server is removed once both proxies, on different kvcs, voted" it_wait 20 sh -c \
  "[ \"\$(curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs2_HTTP/kvstore/cs/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 3 ]"
sleep 2
it_eq "one version for the removal (3), on both kvcs" "3 3" "$(ver "$cs1_HTTP") $(ver "$cs2_HTTP")"
it_check "the removal is logged by the leader" grep -q "removed from the table (cache cluster)" "$IT_DIR/cs1/kvcs.log"
it_check "both proxies run it" it_wait 10 sh -c \
  "curl -s http://127.0.0.1:$P2_HTTP/metrics | grep -qx 'kvp_table_version 3' && curl -s http://127.0.0.1:$P1_HTTP/metrics | grep -qx 'kvp_table_version 3'"
it_eq "the proxies serve" OK "$(redis-cli -p "$P2_PORT" set some key)"
it_done
