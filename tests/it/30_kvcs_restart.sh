#!/usr/bin/env bash
# The config server going away does not disturb clients: the proxy serves
# with its last table, re-registers when kvcs returns, and a proxy started
# while kvcs is down answers PING, then serves once the table arrives.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1

redis-benchmark -p "$P_PORT" -t set,get -n 300000 -r 100000 -c 10 -q > "$IT_DIR/bench.out" 2>&1 &
bench=$!
sleep 0.5
it_kill CS TERM
sleep 2
it_check "proxy serves with kvcs down" sh -c "redis-cli -p $P_PORT set during down | grep -qx OK"
it_kvcs_start CS || exit 1
it_check "proxy re-registered with the restarted kvcs" it_wait 10 sh -c "test \$(grep -c 'registered with config server' '$IT_DIR/P/kvp.log') -ge 2"
wait "$bench"
it_check "benchmark through the restart finished without errors" sh -c "! grep -qi error '$IT_DIR/bench.out' && grep -q 'GET:' '$IT_DIR/bench.out'"
it_eq "data intact" "down" "$(redis-cli -p "$P_PORT" get during)"

# a proxy started while no config server is reachable: it answers PING at
# once, holds data commands, and serves them when the table arrives
it_kill CS TERM
it_kvp_conf Q test "$CS_PROXY"
( it_kvp_start Q test "$CS_PROXY" > "$IT_DIR/q.out" 2>&1 ) &
starter=$!
it_check "table-less proxy answers PING" it_wait 5 sh -c "redis-cli -p $Q_PORT ping | grep -qx PONG"
( redis-cli -p "$Q_PORT" get during > "$IT_DIR/early.out" 2>&1 ) &
early=$!
sleep 0.3
it_kvcs_start CS || exit 1
wait "$early"
wait "$starter"
it_eq "kvp -d returned once its table arrived" "0" "$?"
it_eq "a data command sent before the first table is served once it arrives" "down" "$(cat "$IT_DIR/early.out")"

# no config server at all: a new proxy fails to start, with a clear message
it_kill CS TERM
it_kvp_conf R test "$CS_PROXY"
out=$("$IT_BIN/kvp" -c "$IT_DIR/R/kvp.conf" -d 2>&1)
rc=$?
echo "$out"
it_check "kvp -d without any config server exits non-zero (rc $rc)" test "$rc" -ne 0
it_check "and says why" sh -c "echo \"\$1\" | grep -q 'no config server answered'" _ "$out"
it_check "the other proxy kept serving throughout" sh -c "redis-cli -p $P_PORT get during | grep -qx down"
it_done
