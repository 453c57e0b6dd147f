#!/usr/bin/env bash
# Cache cluster mode (SPEC §5 scale_cache_cluster, SPEC §6 cache HA,
# TEST_GUIDE 6): cache_cluster_test.sh, the script operators run, on free
# ports with two proxies (both must report the dead server down), then the
# table checks around it: one version per change, the slave config server
# follows, data_store refuses the call with 1009.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

A=$(it_free_port); B=$(it_free_port); C=$(it_free_port)
for p in $A $B $C; do it_redis_start "$p" || exit 1; done
it_kvcs_start cs1 || exit 1
it_kill cs1 TERM
echo 'cluster_type = "cache"' >> "$IT_DIR/cs1/kvcs.conf"
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$A" "127.0.0.1:$B" || exit 1
it_kvp_start P1 test "$cs1_PROXY" "" "redis_down_timeout = 3" || exit 1
it_kvp_start P2 test "$cs1_PROXY" "" "redis_down_timeout = 3" || exit 1
it_wait 10 it_kvp_ready "$P1_PORT" && it_wait 10 it_kvp_ready "$P2_PORT" || exit 1

it_eq "get_config says cache" "cache" "$(curl -s "http://127.0.0.1:$cs1_HTTP/kvstore/cs/get_config" | J 'j.data.cluster_type')"
it_check "cache_cluster_test.sh passes" env KV_HOME="$IT_DIR" CS_HTTP="$cs1_HTTP" PROXY_PORT="$P1_PORT" \
  PROXY_HTTP="$P1_HTTP" REDIS_PW="$IT_PW" M1_PORT="$A" M2_PORT="$B" ADD_PORT="$C" \
  KILL_PIDFILE="$IT_DIR/redis-$C.pid" "$IT_ROOT/scripts/cache_cluster_test.sh"

t=$IT_DIR/cs1/table/test
it_eq "two changes, one version each (init 1, add 2, removal 3)" "3" "$(J 'j.version' < "$t")"
# bucket counts of A, B (sorted) and C
counts() { J "(function() local a, b = #(j.table['127.0.0.1:$A'] or {}), #(j.table['127.0.0.1:$B'] or {}) return math.min(a, b) .. ' ' .. math.max(a, b) .. ' ' .. #(j.table['127.0.0.1:$C'] or {}) end)()" < "$t"; }
it_eq "the two left share the buckets evenly" "511 512 0" "$(counts)"
it_check "the removal is logged at WARN" grep -q "WARN  HA test: 127.0.0.1:$C removed from the table (cache cluster)" "$IT_DIR/cs1/kvcs.log"
it_check "the slave config server has the same table" it_wait 10 sh -c "cmp -s '$t' '$IT_DIR/cs2/table/test'"
it_check "both proxies run the new table" it_wait 10 sh -c \
  "curl -s http://127.0.0.1:$P2_HTTP/metrics | grep -qx 'kvp_table_version 3' && curl -s http://127.0.0.1:$P1_HTTP/metrics | grep -qx 'kvp_table_version 3'"

# the dead server back: the operator adds it again; del works too
it_redis_start "$C" || exit 1
sleep 4
it_eq "a server that comes back is not re-added by itself" "3" "$(J 'j.version' < "$t")"
S="http://127.0.0.1:$cs1_HTTP/kvstore/cs/scale_cache_cluster"
it_eq "add it back" "1001" "$(curl -s -d "{\"namespace\":\"test\",\"action\":\"add\",\"addr\":\"127.0.0.1:$C\"}" "$S" | J 'j.code')"
it_eq "adding it twice names the cause" "1007" "$(curl -s -d "{\"namespace\":\"test\",\"action\":\"add\",\"addr\":\"127.0.0.1:$C\"}" "$S" | J 'j.code')"
before=$(J 'j.table' < "$t")
it_eq "del" "1001" "$(curl -s -d "{\"namespace\":\"test\",\"action\":\"del\",\"addr\":\"127.0.0.1:$C\"}" "$S" | J 'j.code')"
it_eq "del gives the buckets back evenly" "511 512 0" "$(counts)"
it_eq "and moves only the removed server's buckets" "0" "$(echo "$before" | luajit -e "
  package.path = '$IT_ROOT/lua/?.lua;' .. package.path
  local cjson = require 'cjson'
  local old = cjson.decode(io.read('*a'))
  local new = cjson.decode(io.open('$t'):read('*a')).table
  local owner = {}
  for a, bs in pairs(new) do for _, b in ipairs(bs) do owner[b] = a end end
  local bad = 0
  for a, bs in pairs(old) do
    if a ~= '127.0.0.1:$C' then for _, b in ipairs(bs) do if owner[b] ~= a then bad = bad + 1 end end end
  end
  print(bad)")"
it_eq "the slave refuses it (1008)" "1008" \
  "$(curl -s -d "{\"namespace\":\"test\",\"action\":\"add\",\"addr\":\"127.0.0.1:$C\"}" "http://127.0.0.1:$cs2_HTTP/kvstore/cs/scale_cache_cluster" | J 'j.code')"

# a data_store config server refuses it (1009)
it_kvcs_start ds || exit 1
D=$(it_free_port); it_redis_start "$D" || exit 1
it_init_table "$ds_HTTP" test 256 "127.0.0.1:$D" || exit 1
it_eq "data_store: scale_cache_cluster is refused with 1009" "1009" \
  "$(curl -s -d "{\"namespace\":\"test\",\"action\":\"add\",\"addr\":\"127.0.0.1:$C\"}" "http://127.0.0.1:$ds_HTTP/kvstore/cs/scale_cache_cluster" | J 'j.code')"
it_done
