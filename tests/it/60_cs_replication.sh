#!/usr/bin/env bash
# Config-server replication and survival (DESIGN §7, TEST_GUIDE "Failures"):
# the slave holds the master's tables, converges after being down while the
# master changed (deletions included, never an older version), refuses
# changes; a proxy whose master CS is down at start gets its table from the
# slave and moves back to the master; with both config servers down proxies
# keep serving; one of two proxies killed does not affect the other.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port); M4=$(it_free_port)
for m in $M1 $M2 $M3 $M4; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_init_table "$cs1_HTTP" gone 256 "127.0.0.1:$M4" || exit 1
ver() { curl -s -d "{\"namespace\":\"$2\"}" "http://127.0.0.1:$1/kvstore/cs/bucket_table" | J 'j.version'; }
it_check "slave has both namespaces" it_wait 5 sh -c "curl -s http://127.0.0.1:$cs2_HTTP/kvstore/cs/namespace_list | grep -q '\"gone\",\"test\"'"
it_eq "slave refuses changes with its own code" "1008" \
  "$(curl -s -d '{"namespace":"x","bucket_count":256,"address_list":["127.0.0.1:1"]}' "http://127.0.0.1:$cs2_HTTP/kvstore/cs/init_table" | J 'j.code')"

# slave down while the master changes tables
it_kill cs2 TERM
curl -s -d "{\"namespace\":\"test\",\"old_addr\":\"127.0.0.1:$M2\",\"new_addr\":\"127.0.0.1:$M3\"}" "http://127.0.0.1:$cs1_HTTP/kvstore/cs/replace_server" >/dev/null
curl -s -d '{"namespace":"gone"}' "http://127.0.0.1:$cs1_HTTP/kvstore/cs/del_namespace" >/dev/null
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
it_check "slave converges: new version" it_wait 10 sh -c "test \"\$(curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs2_HTTP/kvstore/cs/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 2"
it_eq "slave converges: deleted namespace gone (file too)" '["test"] absent' \
  "$(curl -s "http://127.0.0.1:$cs2_HTTP/kvstore/cs/namespace_list" | J 'j.namespace_list') $([ -e "$IT_DIR/cs2/table/gone" ] && echo present || echo absent)"
it_eq "slave table file equals the master's" "$(cat "$IT_DIR/cs1/table/test")" "$(cat "$IT_DIR/cs2/table/test")"

# proxy starting while the master CS is down: table from the slave, then back to the master
it_kill cs1 TERM
it_kvp_start P test "$cs1_PROXY" "$cs2_PROXY" || exit 1
it_eq "proxy got its table from the slave" "2" "$(curl -s "http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table" | J 'j.version')"
it_eq "and serves" "OK" "$(redis-cli -p "$P_PORT" set k1 v1)"
it_kvcs_start cs1 || exit 1
it_check "proxy moves back to the master when it answers" it_wait 10 sh -c "grep -q 'leaving the slave' '$IT_DIR/P/kvp.log' && test \$(grep -c 'registered with config server 127.0.0.1:$cs1_PROXY' '$IT_DIR/P/kvp.log') -ge 1"

# both config servers down: proxies keep serving reads and writes
it_kvp_start Q test "$cs1_PROXY" "$cs2_PROXY" || exit 1
redis-benchmark -p "$Q_PORT" -t set,get -n 200000 -r 100000 -c 10 -q > "$IT_DIR/bench.out" 2>&1 &
bench=$!
it_kill cs1 KILL; it_kill cs2 KILL
sleep 1
it_eq "writes through both proxies with every config server down" "OK OK" "$(redis-cli -p "$P_PORT" set k2 v2) $(redis-cli -p "$Q_PORT" set k3 v3)"
it_eq "reads too" "v2 v3 v1" "$(redis-cli -p "$Q_PORT" get k2) $(redis-cli -p "$P_PORT" get k3) $(redis-cli -p "$Q_PORT" get k1)"
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
wait "$bench"
it_check "load through the outage and the return saw no error" sh -c "! grep -qi error '$IT_DIR/bench.out' && grep -q 'GET:' '$IT_DIR/bench.out'"
it_check "both proxies re-registered" it_wait 10 sh -c "curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/proxy_info | luajit $IT_ROOT/scripts/lib/json.lua '#j.proxy_info' | grep -qx 2"

# one of two proxies killed
it_kill Q KILL
it_eq "the other proxy is unaffected" "v1" "$(redis-cli -p "$P_PORT" get k1)"
it_check "proxy_info drops the dead one" it_wait 10 sh -c "curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/proxy_info | luajit $IT_ROOT/scripts/lib/json.lua '#j.proxy_info' | grep -qx 1"
it_done
