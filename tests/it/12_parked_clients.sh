#!/usr/bin/env bash
# A client parked on a blocked bucket is never stranded: when a table comes
# that still blocks its bucket it waits again (it used to be dropped from the
# wait list and never answered), it runs when the bucket is unblocked, and a
# wait that outlasts request_timeout ends in an error reply. The tables come
# from a stand-in config server (fake_cs.lua), so their order is exact.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); F=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
A="127.0.0.1:$M1,127.0.0.1:$M2"
GO=$IT_DIR/go GO2=$IT_DIR/go2
# "foo" is in bucket 705 (owned by M2, migrating to M1 while blocked)
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "$A" \
  "table 1 blocked=705" "await $GO" "sleep 0.8" "table 2 blocked=705" "sleep 0.8" "table 3" \
  "await $GO2" "table 4 blocked=705" > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_kvp_conf P test "$F"
sed -i 's/^request_timeout = .*/request_timeout = 3000/' "$IT_DIR/P/kvp.conf"
it_kvp_start P test "$F" || exit 1
T() { timeout 10 "$IT_BIN/kvlua" "$IT_ROOT/tests/it/timed.lua" "$P_PORT" "$@"; }

# parked on v1; v2 (still blocked) resumes it and it must wait again; v3 frees it
T "SET foo parked" "GET foo" > "$IT_DIR/c1.out" &
c1=$!
sleep 0.3
touch "$GO"
wait "$c1"
out=$(cat "$IT_DIR/c1.out")
echo "$out"
it_eq "a client parked across two blocking tables gets its replies" "OK,parked" \
  "$(echo "$out" | cut -d' ' -f2- | paste -sd,)"
ms=$(echo "$out" | head -1 | cut -d' ' -f1)
it_check "it waited for the unblocking table (${ms:-?} ms, expected 1200..2900)" \
  test "${ms:-0}" -ge 1200 -a "${ms:-0}" -lt 2900
it_eq "the value is on the owner of v3" "parked" "$(it_redis "$M2" get 705_foo)"

# v4 blocks the bucket for good: the wait ends at request_timeout (3000 ms)
touch "$GO2"
it_wait 5 sh -c "grep -q 'v4 installed' '$IT_DIR/P/kvp.log'"
out=$(T "GET foo" "PING")
echo "$out"
first=$(echo "$out" | head -1)
it_check "a wait on a bucket blocked for good ends in an error ($first)" \
  sh -c "echo '$first' | grep -q -- '-ERR request timeout'"
ms=${first%% *}
it_check "... after request_timeout (${ms:-?} ms, expected 2900..4500)" \
  test "${ms:-0}" -ge 2900 -a "${ms:-0}" -lt 4500
it_eq "the connection stays usable" "PONG" "$(echo "$out" | sed -n 2p | cut -d' ' -f2)"
it_done
