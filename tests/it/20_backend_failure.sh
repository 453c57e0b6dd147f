#!/usr/bin/env bash
# A backend killed or stalled mid-run gives errors, not hangs: fail-fast
# "-ERR backend <addr> unavailable" when it is known down, "-ERR request
# timeout" after request_timeout when it stalls; the client connection stays
# usable, keys on the other master keep working, and service resumes when the
# backend is back.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1   # request_timeout = 1000 ms
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
R="redis-cli -p $P_PORT"
$R set foo 1 >/dev/null      # bucket 705: second master
$R set hello 2 >/dev/null    # bucket 804: first master

ms() { date +%s%3N; }

T() { "$IT_BIN/kvlua" "$IT_ROOT/tests/it/timed.lua" "$P_PORT" "$@"; }

# stalled backend: SIGSTOP the second master
pid=$(cat "$IT_DIR/redis-$M2.pid")
kill -STOP "$pid"
out=$(T "GET foo" "GET hello" "PING")
echo "$out"
it_eq "stalled master: timeout error, then the other replies" "-ERR request timeout,2,PONG" "$(echo "$out" | cut -d' ' -f2- | paste -sd,)"
el=$(echo "$out" | head -1 | cut -d' ' -f1)
it_check "timeout came after request_timeout (1000 ms) and not much later (${el} ms)" test "$el" -ge 950 -a "$el" -lt 1600
it_eq "other master unaffected while one stalls" "2" "$(redis-cli -p "$P_PORT" get hello)"
kill -CONT "$pid"
it_check "stalled master serves again after SIGCONT" it_wait 10 sh -c "redis-cli -p $P_PORT get foo | grep -qx 1"

# killed backend
it_redis_stop "$M2"
it_wait 5 sh -c "redis-cli -p $P_PORT get foo | grep -q unavailable"
out=$(T "GET foo" "GET hello" "MGET foo hello" "SET foo x")
echo "$out"
it_eq "dead master: unavailable at once, others served, MGET keeps the good key in place" \
  "-ERR backend 127.0.0.1:$M2 unavailable,2,-ERR backend 127.0.0.1:$M2 unavailable,2,-ERR backend 127.0.0.1:$M2 unavailable" \
  "$(echo "$out" | cut -d' ' -f2- | paste -sd,)"
slow=$(echo "$out" | awk '$1 > 300' | wc -l)
it_eq "every reply within 300 ms while the master is down" "0" "$slow"
# a load generator across the failure ends (errors, no hang)
timeout 60 redis-benchmark -p "$P_PORT" -t set -n 20000 -r 100000 -c 20 -q >/dev/null 2>&1
rc=$?
it_check "benchmark across a dead master ends (exit $rc, not the 60 s timeout)" test "$rc" -ne 124
it_redis_start "$M2" || exit 1
it_check "service back when the master returns" it_wait 10 sh -c "redis-cli -p $P_PORT set foo 3 | grep -qx OK"
it_eq "value written after recovery" "3" "$(redis-cli -p "$P_PORT" get foo)"
it_check "proxy logged the backend down and up" sh -c "grep -q 'backend 127.0.0.1:$M2 down' '$IT_DIR/P/kvp.log' && grep -q 'backend 127.0.0.1:$M2 up' '$IT_DIR/P/kvp.log'"
it_done
