#!/usr/bin/env bash
# Transactions through the proxy (issue 12, item 1): MULTI/EXEC/DISCARD queued
# in the proxy and sent as one MULTI ... EXEC block to the bucket's master,
# queuing errors abort the whole transaction (nothing reaches any master),
# WATCH on a connection of the client's own, atomicity against concurrent
# readers, and transactions on a migrating or blocked bucket.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT"

out=$("$IT_BIN/kvlua" "$IT_ROOT/tests/it/txn.lua" "$P_PORT" 2>&1)
echo "$out" | sed 's/^/  /'
it_check "transactions as a client sees them (tests/it/txn.lua)" grep -qx "all passed" <<<"$out"

# on the masters themselves: the aborted and abandoned transactions left nothing
left=""
for m in $M1 $M2 $M3; do
  left="$left$(it_redis "$m" --scan --pattern '*_{t}x')$(it_redis "$m" --scan --pattern '*_{u}y')$(it_redis "$m" --scan --pattern '*_{t}gone')"
done
it_eq "aborted transactions wrote nothing on any master" "" "$left"
n=0
for m in $M1 $M2 $M3; do n=$((n + $(it_redis "$m" info clients | sed -n 's/^connected_clients:\([0-9]*\).*/\1/p'))); done
it_check "WATCH connections are reused: $n connections on the masters after 300 WATCHes" test "$n" -lt 40

# a migrating bucket: "{foo}" keys are in bucket 705, owned by M2 (the
# second address), migrating to M1
F=$(it_free_port)
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "127.0.0.1:$M1,127.0.0.1:$M2" \
  "table 1 migrating=705" > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_kvp_start Q test "$F" || exit 1
it_wait 10 it_kvp_ready "$Q_PORT"
it_redis "$M2" set '705_{foo}a' 1 >/dev/null
it_redis "$M2" set '705_{foo}b' old >/dev/null
it_eq "EXEC on a migrating bucket: the keys move first, then it runs" "OK QUEUED 2" \
  "$(printf 'MULTI\nINCR {foo}a\nEXEC\n' | redis-cli -p "$Q_PORT" | xargs)"
it_eq "  on the destination, gone from the source" "2 0" \
  "$(it_redis "$M1" get '705_{foo}a') $(it_redis "$M2" exists '705_{foo}a')"
it_eq "WATCH + EXEC on a migrating bucket" "OK old OK QUEUED OK new" \
  "$(printf 'WATCH {foo}b\nGET {foo}b\nMULTI\nSET {foo}b new\nEXEC\nGET {foo}b\n' | redis-cli -p "$Q_PORT" | xargs)"
it_eq "  on the destination" "new" "$(it_redis "$M1" get '705_{foo}b')"

# a blocked bucket: EXEC waits for the next table, then runs
G=$(it_free_port)
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$G" test "127.0.0.1:$M1,127.0.0.1:$M2" \
  "table 1 blocked=705" "await $IT_DIR/unblock" "table 2 migrating=705" > "$IT_DIR/fake_cs2.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs2.pid"
it_kvp_start R test "$G" || exit 1
it_redis "$M2" set '705_{foo}c' 10 >/dev/null
(printf 'MULTI\nINCR {foo}c\nEXEC\n' | redis-cli -p "$R_PORT" > "$IT_DIR/blocked.out") &
client=$!
sleep 1
it_eq "EXEC on a blocked bucket waits (nothing ran yet)" "10" "$(it_redis "$M2" get '705_{foo}c')"
touch "$IT_DIR/unblock"
wait "$client"
it_eq "  and runs once the bucket migrates" "OK QUEUED 11" "$(xargs < "$IT_DIR/blocked.out")"
it_eq "  on the destination" "11" "$(it_redis "$M1" get '705_{foo}c')"
it_done
