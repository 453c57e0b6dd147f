#!/usr/bin/env bash
# http_test.sh -- TEST_GUIDE 5: every HTTP interface of the local cluster, one
# step each, green on success, red with what was wrong otherwise. Run from
# $KV_HOME (or anywhere) against a cluster started by kv_store.sh.
# Destructive at the end (replace_server, del_namespace): restart the cluster
# afterwards with `./kv_store.sh stop; ./kv_store.sh start`.
# Overridable (the integration test runs this script on free ports): CS_HTTP
# (7000), PROXY_HTTP (7500), PROXY_PORT (7400), PROXY_LISTEN (0.0.0.0:7400, as
# proxy_info shows it), OLD_ADDR/NEW_ADDR of replace_server (6373 -> 6374),
# KV_HOME (where cs1/ and proxy/ are).
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
CS="http://127.0.0.1:${CS_HTTP:-7000}/kvstore/cs"
PX="http://127.0.0.1:${PROXY_HTTP:-7500}/kvstore/proxy"
PORT=${PROXY_PORT:-7400}
HOME_DIR=${KV_HOME:-$KV_ROOT/run}
TABLE_FILE="$HOME_DIR/cs1/table/test"
LISTEN=${PROXY_LISTEN:-0.0.0.0:7400}
OLD=${OLD_ADDR:-127.0.0.1:6373}
NEW=${NEW_ADDR:-127.0.0.1:6374}
failed=0

J() { luajit "$KV_ROOT/scripts/lib/json.lua" "$1"; }
step() { # step "name" expected actual
  if [ "$2" = "$3" ]; then green "PASS $1"; else red "FAIL $1: expected [$2], got [$3]"; failed=$((failed + 1)); fi
}

out=$(curl -s "$PX/reset_stats")
step "5.1 reset_stats" '{"code":1001,"msg":"OK"}' "$(echo "$out" | J '{code = j.code, msg = j.msg}')"

redis-benchmark -p "$PORT" -d 64 -r 10000000 -n 100000 -t set -q >/dev/null 2>&1
# the benchmark's connections are closing: give the count a moment
for _ in 1 2 3 4 5 6 7 8 9 10; do
  out=$(curl -s "$PX/stats_info")
  [ "$(echo "$out" | J 'j.client_count')" = 0 ] && break
  sleep 0.2
done
step "5.2 stats_info after 100000 SETs" \
  '{"client_count":0,"cmds":{"SET":100000},"code":1001,"msg":"OK","total_cmd_count":100000}' \
  "$(echo "$out" | J '{client_count = j.client_count, cmds = j.cmds, code = j.code, msg = j.msg, total_cmd_count = j.total_cmd_count}')"
echo "     (slow_cmd_count $(echo "$out" | J 'j.slow_cmd_count'), average_rt $(echo "$out" | J 'j.average_rt') ms, qps $(echo "$out" | J 'j.qps'))"

out=$(curl -s -d '{"namespace":"test"}' "$CS/bucket_table")
step "5.3 namespace test exists (init_table was done by kv_store.sh start)" "1001" "$(echo "$out" | J 'j.code')"

out=$(curl -s "$CS/namespace_list")
step "5.4 namespace_list" '["test"]' "$(echo "$out" | J 'j.namespace_list')"

out=$(curl -s -d '{"namespace": "test"}' "$CS/bucket_table")
file_view=$(J '{table = j.table, version = j.version, migrating_bucket_id = j.migrating_bucket_id, migrating_server_addr = j.migrating_server_addr}' < "$TABLE_FILE")
step "5.5 bucket_table matches cs1/table/test" "$file_view" \
  "$(echo "$out" | J '{table = j.table, version = j.version, migrating_bucket_id = j.migrating_bucket_id, migrating_server_addr = j.migrating_server_addr}')"

out=$(curl -s -d '{"namespace": "test"}' "$CS/proxy_info")
step "5.6 proxy_info" "[{\"info\":\"$LISTEN\",\"state\":\"ONLINE\"}]" \
  "$(echo "$out" | J '(function() local r = {} for i, p in ipairs(j.proxy_info) do r[i] = {info = p.info, state = p.state} end return setmetatable(r, {__jsontype = "array"}) end)()')"

old_count=$(J "#(j.table[\"$OLD\"] or {})" < "$TABLE_FILE")
out=$(curl -s -d "{\"namespace\": \"test\", \"old_addr\":\"$OLD\", \"new_addr\":\"$NEW\"}" "$CS/replace_server")
step "5.7 replace_server $OLD -> $NEW" "1001" "$(echo "$out" | J 'j.code')"
step "5.7 cs1/table/test has $NEW where $OLD was ($old_count buckets)" "$old_count 0" \
  "$(J "#(j.table[\"$NEW\"] or {}) .. \" \" .. #(j.table[\"$OLD\"] or {})" < "$TABLE_FILE")"

proxy_pid=$(cat "$HOME_DIR/proxy/kvp.pid" 2>/dev/null)
out=$(curl -s -d '{"namespace":"test"}' "$CS/del_namespace")
step "5.8 del_namespace" "1001" "$(echo "$out" | J 'j.code')"
step "5.8 cs1/table/test is gone" "gone" "$([ -e "$TABLE_FILE" ] && echo present || echo gone)"
for _ in $(seq 1 30); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
step "5.8 the proxy process exited" "exited" "$(kill -0 "$proxy_pid" 2>/dev/null && echo running || echo exited)"

if [ "$failed" -eq 0 ]; then green "http_test: all steps passed"; else red "http_test: $failed step(s) failed"; fi
echo "(the namespace is deleted now: ./kv_store.sh stop; ./kv_store.sh start to get it back)"
[ "$failed" -eq 0 ]
