#!/usr/bin/env bash
# MIGRATE.START with a known proxy that never acks (issue 10): the START
# fails naming it, and clients of the bucket are served again at once (the
# bucket is not left blocked); a retry fails the same way; once the proxy is
# removed, START succeeds and the bucket migrates (not blocked), and DONE
# moves it. tests/it/fake_proxy.lua is the proxy that registers and leaves.
# shellcheck source=lib.sh disable=SC2154  # lib.sh sets <name>_PORT/_HTTP/_PROXY
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1
MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/CS/kvcs.conf")
table_json() { it_ctl "$MIG" TABLE test; }

it_eq "a key written through the proxy" OK "$(redis-cli -p "$P_PORT" set it75key v1)"
stored=$(it_redis "$M1" --scan --pattern '*_it75key'; it_redis "$M2" --scan --pattern '*_it75key')
b=${stored%%_*}
echo "it75key is in bucket $b"

# a proxy that registers, then goes away: known, never acks
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_proxy.lua" "$CS_PROXY" test 7999 "sleep 0.3" >/dev/null
start() { it_ctl "$MIG" MIGRATE.START test "127.0.0.1:$M3" "$b"; }
get() { timeout 3 redis-cli -p "$P_PORT" get it75key; }

for try in 1 2; do
  out=$(start)
  it_check "START $try fails naming the proxy that did not ack" \
    grep -q "127.0.0.1:7999 (id 7999.*has not acked" <<<"$out"
  it_eq "START $try: a GET on the bucket is answered" v1 "$(get)"
  it_eq "START $try: the bucket is neither blocked nor migrating" 0 "$(table_json | J '#j.migrating')"
done

it_check "the proxy that is gone is removed" sh -c "curl -s -d '{\"namespace\":\"test\",\"proxy\":\"7999\"}' \
  http://127.0.0.1:$CS_HTTP/kvstore/cs/remove_proxy | grep -q '\"code\":1001'"
it_eq "START after the removal succeeds" OK "$(start)"
it_eq "the bucket migrates, not blocked" "1 $b 127.0.0.1:$M3 nil" \
  "$(table_json | J '#j.migrating .. " " .. j.migrating[1].bucket .. " " .. j.migrating[1].dst .. " " .. tostring(j.migrating[1].blocked)')"
it_eq "a GET on the migrating bucket is answered" v1 "$(get)"
it_eq "DONE" OK "$(it_ctl "$MIG" MIGRATE.DONE test "127.0.0.1:$M3" "$b")"
it_eq "the key is on the destination" 1 "$(it_redis "$M3" exists "${b}_it75key")"
it_eq "and read through the proxy" v1 "$(get)"
it_done
