#!/usr/bin/env bash
# Validation where servers enter a table (issue 11, item 3): replace_server,
# init_table and scale_cache_cluster take an address only when it answers as
# a Redis with the configured redis_password; replace_server's new address
# must be the old master's replica or an empty master.
#
#   1. replace_server to the config server's own HTTP port (not Redis) -> 1024
#   2. to a port nobody listens on -> 1024
#   3. to a Redis with another password -> 1025
#   4. to a master holding keys -> 1026; to another master's replica -> 1026
#      (after each refusal the table's version and owners are unchanged and
#      the proxy still serves every key)
#   5. to the old master's replica -> 1001, the proxy serves through it
#   6. init_table with a non-Redis address -> 1024, no namespace made
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); R1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port)
FULL=$(it_free_port); OTHERPW=$(it_free_port); NOBODY=$(it_free_port)
for p in $M1 $M2 $FULL; do it_redis_start "$p" || exit 1; done
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" || exit 1
it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
redis-server --port "$OTHERPW" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --requirepass not-the-one --dir "$IT_DIR" --pidfile "$IT_DIR/redis-$OTHERPW.pid" \
    --logfile "$IT_DIR/redis-$OTHERPW.log" >/dev/null
it_redis "$FULL" set somekey 1 >/dev/null
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || { echo "proxy has no table"; exit 1; }
for i in $(seq 1 50); do redis-cli -p "$P_PORT" set "k$i" "v$i" >/dev/null; done
it_wait 10 sh -c "[ \"\$(redis-cli -p $R1 -a $IT_PW --no-auth-warning dbsize)\" = \"\$(redis-cli -p $M1 -a $IT_PW --no-auth-warning dbsize)\" ]"

TABLE() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$cs1_HTTP/kvstore/cs/bucket_table" | J '(function() local a = {} for k in pairs(j.table) do a[#a + 1] = k end table.sort(a) return j.version .. " " .. table.concat(a, ",") end)()'; }
BEFORE=$(TABLE)
replace() {
    curl -s -d "{\"namespace\":\"test\",\"old_addr\":\"127.0.0.1:$M1\",\"new_addr\":\"$1\"}" \
        "http://127.0.0.1:$cs1_HTTP/kvstore/cs/replace_server" | J 'j.code'
}
all_served() {
    local i got
    for i in $(seq 1 50); do
        got=$(redis-cli -p "$P_PORT" get "k$i" 2>&1)
        # the last miss, for the log when the check fails
        [ "$got" = "v$i" ] || { echo "k$i: $got" > "$IT_DIR/last_miss"; return 1; }
    done
}

for case in "1024|127.0.0.1:$cs1_HTTP|the config server's own HTTP port" \
            "1024|127.0.0.1:$NOBODY|a port nobody listens on" \
            "1025|127.0.0.1:$OTHERPW|a Redis with another password" \
            "1026|127.0.0.1:$FULL|a master holding keys" \
            "1026|127.0.0.1:$R2|another master's replica"; do
    IFS='|' read -r want addr what <<<"$case"
    it_eq "replace_server to $what refused" "$want" "$(replace "$addr")"
    it_eq "  table unchanged" "$BEFORE" "$(TABLE)"
done
it_check "the proxy still serves every key" all_served
it_check "the refusal is logged in the reply, not as a fault" sh -c "! grep -q 'INTERNAL\|traceback' '$IT_DIR/cs1/kvcs.log'"

it_eq "replace_server to the old master's replica accepted" 1001 "$(replace "127.0.0.1:$R1")"
it_redis "$R1" replicaof no one >/dev/null
failed_before=$IT_FAILED
it_check "the proxy serves every key through the replica" it_wait 10 all_served
[ "$IT_FAILED" = "$failed_before" ] || echo "# last miss: $(cat "$IT_DIR/last_miss" 2>/dev/null)"

it_eq "init_table with a non-Redis address refused" 1024 \
    "$(curl -s -d "{\"namespace\":\"t2\",\"bucket_count\":256,\"address_list\":[\"127.0.0.1:$NOBODY\"]}" \
        "http://127.0.0.1:$cs1_HTTP/kvstore/cs/init_table" | J 'j.code')"
it_check "  no namespace t2" sh -c "! curl -s http://127.0.0.1:$cs1_HTTP/kvstore/cs/namespace_list | grep -q t2"

it_done
