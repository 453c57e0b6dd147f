#!/usr/bin/env bash
# TEST_GUIDE 5 and 7 on free ports: key_rewrite_test.sh and http_test.sh (the
# scripts operators run) against a real cluster, plus patterns surviving
# restarts and reaching every proxy, set_config, admin_token, /metrics.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" && it_redis_start "$M3" || exit 1
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start proxy test "$cs1_PROXY" || exit 1
it_kvp_start proxy2 test "$cs1_PROXY" || exit 1
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
PX="http://127.0.0.1:$proxy_HTTP/kvstore/proxy"

it_check "key_rewrite_test.sh passes" env PROXY_PORT="$proxy_PORT" PROXY_HTTP="$proxy_HTTP" \
  "$IT_ROOT/scripts/key_rewrite_test.sh"

# a pattern reaches every proxy and survives proxy and config-server restarts
redis-cli -p "$proxy_PORT" set aaa old >/dev/null
it_eq "add_pattern at one proxy" "1001" "$(curl -s -d '{"pattern":"aa*"}' "$PX/add_pattern" | J 'j.code')"
it_eq "the other proxy applies it too" "" "$(redis-cli -p "$proxy2_PORT" get aaa)"
it_eq "the rewritten key is <bucket>_<sha1 hex> (520_7e24... for aaa)" "new" \
  "$(redis-cli -p "$proxy_PORT" set aaa new >/dev/null; it_redis "$M1" get 520_7e240de74fb1ed08fa08d38063f6a6a91462a815)"
it_eq "duplicate pattern refused with its code" "1023" "$(curl -s -d '{"pattern":"aa*"}' "$PX/add_pattern" | J 'j.code')"
it_eq "pattern persisted with the table" '["aa*"]' "$(J 'j.patterns' < "$IT_DIR/cs1/table/test")"
it_kill proxy2 TERM
it_kvp_start proxy2 test "$cs1_PROXY" || exit 1
it_eq "pattern still applied after a proxy restart" "new" "$(redis-cli -p "$proxy2_PORT" get aaa)"
it_kill cs1 TERM
it_kvcs_start cs1 || exit 1
it_kill proxy2 TERM
it_kvp_start proxy2 test "$cs1_PROXY" || exit 1
it_eq "pattern still applied after a config-server restart" "new" "$(redis-cli -p "$proxy2_PORT" get aaa)"
it_wait 10 sh -c "curl -s -d '{\"pattern\":\"aa*\"}' $PX/del_pattern | grep -q 1001"
it_eq "del_pattern brings the old value back everywhere" "old old" \
  "$(redis-cli -p "$proxy_PORT" get aaa) $(redis-cli -p "$proxy2_PORT" get aaa)"
it_eq "deleting an unknown pattern names the cause" "1022" "$(curl -s -d '{"pattern":"zz*"}' "$PX/del_pattern" | J 'j.code')"
redis-cli -p "$proxy_PORT" del aaa >/dev/null
it_redis "$M1" del 520_7e240de74fb1ed08fa08d38063f6a6a91462a815 >/dev/null

# set_config: all or nothing, written back keeping the file's other lines
echo "-- operator note: keep me" >> "$IT_DIR/proxy/kvp.conf"
out=$(curl -s -d '{"request_timeout": 1500, "bogus": 1}' "$PX/set_config")
it_eq "set_config with an unknown key changes nothing" "1016 1000" \
  "$(echo "$out" | J 'j.code') $(sed -n 's/^request_timeout = //p' "$IT_DIR/proxy/kvp.conf")"
it_check "and its msg names the key" sh -c "echo '$out' | grep -q bogus"
it_eq "set_config with a bad value" "1017" "$(curl -s -d '{"max_qps": -5}' "$PX/set_config" | J 'j.code')"
it_eq "set_config refuses what the data path cannot hold in an int, writing nothing" "1017 1017 0" \
  "$(curl -s -d '{"max_client_num": 4294967296}' "$PX/set_config" | J 'j.code') $(curl -s -d '{"max_qps": 4294967297}' "$PX/set_config" | J 'j.code') $(grep -c '^max_' "$IT_DIR/proxy/kvp.conf")"
it_eq "set_config refuses a key read at start only" "1016" "$(curl -s -d '{"io_threads": 2}' "$PX/set_config" | J 'j.code')"
it_eq "set_config applies and writes back" "1001 1500" \
  "$(curl -s -d '{"request_timeout": 1500, "max_qps": 0}' "$PX/set_config" | J 'j.code') $(sed -n 's/^request_timeout = //p' "$IT_DIR/proxy/kvp.conf")"
it_check "the operator's comment survived" grep -q "operator note: keep me" "$IT_DIR/proxy/kvp.conf"
it_eq "max_qps takes effect at once for existing clients" "ERR reach qps limit" \
  "$(curl -s -d '{"max_qps": 2}' "$PX/set_config" >/dev/null; printf 'GET a\r\nGET a\r\nGET a\r\nGET a\r\nGET a\r\nGET a\r\n' | redis-cli -p "$proxy_PORT" | grep -m1 qps)"
curl -s -d '{"max_qps": 0}' "$PX/set_config" >/dev/null

# redis_password reaches new backend connections: restart the first master
# with another password; the proxy fails AUTH until it is told the new one
it_redis_stop "$M1"
it_redis_start "$M1" --requirepass newpw || exit 1
it_check "with the old password the master is unavailable" it_wait 10 sh -c "redis-cli -p $proxy_PORT set hello x | grep -q 'unavailable'"
it_check "AUTH failure logged" it_wait 10 grep -q "refused AUTH" "$IT_DIR/proxy/kvp.log"
it_eq "set_config redis_password" "1001" "$(curl -s -d '{"redis_password": "newpw"}' "$PX/set_config" | J 'j.code')"
it_check "new backend connections use it" it_wait 10 sh -c "redis-cli -p $proxy_PORT set hello x | grep -qx OK"
it_eq "written back" 'redis_password = "newpw"' "$(grep '^redis_password' "$IT_DIR/proxy/kvp.conf")"

# metrics
it_check "proxy /metrics" sh -c "curl -s http://127.0.0.1:$proxy_HTTP/metrics | grep -q '^kvp_table_version '"
it_check "kvcs /metrics" sh -c "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_proxies_connected{namespace=\"test\"} 2'"

# admin_token on the config server
sed -i 's/^admin_token = .*//' "$IT_DIR/cs1/kvcs.conf"; echo 'admin_token = "t0k"' >> "$IT_DIR/cs1/kvcs.conf"
it_kill cs1 TERM; it_kvcs_start cs1 || exit 1
it_eq "a change without the token is refused (401, 1011)" "401 1011" \
  "$(curl -s -o "$IT_DIR/r.json" -w '%{http_code}' -d '{"support_ha":true}' "http://127.0.0.1:$cs1_HTTP/kvstore/cs/set_config") $(J 'j.code' < "$IT_DIR/r.json")"
it_eq "with the token it is accepted" "1001" \
  "$(curl -s -H 'Authorization: Bearer t0k' -d '{"support_ha":true}' "http://127.0.0.1:$cs1_HTTP/kvstore/cs/set_config" | J 'j.code')"
it_eq "reads need no token" "1001" "$(curl -s "http://127.0.0.1:$cs1_HTTP/kvstore/cs/namespace_list" | J 'j.code')"
sed -i 's/^admin_token = .*//' "$IT_DIR/cs1/kvcs.conf"
it_kill cs1 TERM; it_kvcs_start cs1 || exit 1
it_wait 10 sh -c "curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/proxy_info | grep -q $proxy2_PORT"
it_kill proxy2 TERM
it_wait 10 sh -c "! curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/proxy_info | grep -q $proxy2_PORT"

# the operators' HTTP scenario, same script as TEST_GUIDE 5 (destructive at the end)
it_check "http_test.sh passes" env KV_HOME="$IT_DIR" CS_HTTP="$cs1_HTTP" PROXY_HTTP="$proxy_HTTP" \
  PROXY_PORT="$proxy_PORT" PROXY_LISTEN="127.0.0.1:$proxy_PORT" OLD_ADDR="127.0.0.1:$M2" \
  NEW_ADDR="127.0.0.1:$M3" "$IT_ROOT/scripts/http_test.sh"
it_done
