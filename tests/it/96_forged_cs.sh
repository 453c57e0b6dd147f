#!/usr/bin/env bash
# A proxy pointed at a forged config server (issue 11, finding 7 / item 3):
# set_config points the proxy at a stand-in config server (fake_cs.lua) whose
# table of namespace test has version 10^9 and another lineage. The proxy
# refuses every such table (a rate-limited warning naming both lineages),
# keeps serving the real table, and, pointed back at the real config server,
# installs the real server's next version (it is not stranded on 10^9).
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port); FR=$(it_free_port); F=$(it_free_port)
for p in $M1 $M2 $FR; do it_redis_start "$p" || exit 1; done
it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || { echo "proxy has no table"; exit 1; }
for i in $(seq 1 30); do redis-cli -p "$P_PORT" set "k$i" "real$i" >/dev/null; done
for i in $(seq 1 30); do it_redis "$FR" set "$((i % 1023))_k$i" forged >/dev/null; done

# the forger: v 10^9, then 20 more pushes, every table on the forger's Redis
steps=("table 1000000000")
for i in $(seq 1 20); do steps+=("table $((1000000000 + i))"); done
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "127.0.0.1:$FR" "${steps[@]}" \
    > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_wait 5 sh -c "ss -Hltn '( sport = :$F )' | grep -q ." || { echo "fake_cs did not listen"; exit 1; }

PV() { curl -s "http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table" | J 'j.version'; }
all_real() {
    local i
    for i in $(seq 1 30); do [ "$(redis-cli -p "$P_PORT" get "k$i")" = "real$i" ] || return 1; done
}
point() {
    curl -s -d "{\"master_cs_ip\":\"127.0.0.1\",\"master_cs_port\":$1}" \
        "http://127.0.0.1:$P_HTTP/kvstore/proxy/set_config" | J 'j.code'
}

it_eq "set_config points the proxy at the forger" 1001 "$(point "$F")"
it_check "the proxy registers with the forger" it_wait 10 grep -q "registered with config server 127.0.0.1:$F" "$IT_DIR/P/kvp.log"
sleep 2
it_check "it refuses the forged tables and says why (lineage)" grep -q "lineage.*refused" "$IT_DIR/P/kvp.log"
n=$(grep -c "lineage.*refused" "$IT_DIR/P/kvp.log")
it_check "the refusals are rate-limited ($n lines for 21 tables)" test "$n" -le 3
it_eq "the proxy keeps the real table" 1 "$(PV)"
it_check "and serves the real values" all_real

it_eq "set_config points the proxy back" 1001 "$(point "$cs1_PROXY")"
# R2 must hold M2's keys before it replaces M2
it_wait 10 sh -c "[ \"\$(redis-cli -p $R2 -a $IT_PW --no-auth-warning dbsize)\" = \"\$(redis-cli -p $M2 -a $IT_PW --no-auth-warning dbsize)\" ]"
it_check "the proxy registers with the real config server" \
    it_wait 10 sh -c "grep 'registered with config server' '$IT_DIR/P/kvp.log' | tail -1 | grep -q ':$cs1_PROXY'"
it_eq "the real server's change (replace_server to a replica) is accepted" 1001 \
    "$(curl -s -d "{\"namespace\":\"test\",\"old_addr\":\"127.0.0.1:$M2\",\"new_addr\":\"127.0.0.1:$R2\"}" \
        "http://127.0.0.1:$cs1_HTTP/kvstore/cs/replace_server" | J 'j.code')"
it_check "the proxy installs the real v2 (not stranded on 10^9)" it_wait 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 2 ]"
it_check "and serves the real values" it_wait 10 all_real

it_done
