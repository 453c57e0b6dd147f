#!/usr/bin/env bash
# Blocking commands through the proxy (issue 12, item 2): BLPOP & co. and
# XREAD/XREADGROUP BLOCK wait on a connection of the client's own, with no
# request_timeout on the wait, key names restored; a client that leaves while
# blocked releases the master's connection; 1 000 clients blocked at once.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_conf P test "$cs1_PROXY"
sed -i 's/^request_timeout = .*/request_timeout = 500/' "$IT_DIR/P/kvp.conf"
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT"

out=$("$IT_BIN/kvlua" "$IT_ROOT/tests/it/blocking.lua" "$P_PORT" 2>&1)
echo "$out" | sed 's/^/  /'
it_check "blocking commands as clients see them (tests/it/blocking.lua)" grep -qx "all passed" <<<"$out"

blocked() { # blocked clients over the masters
  local m n=0
  for m in $M1 $M2 $M3; do n=$((n + $(it_redis "$m" info clients | sed -n 's/^blocked_clients:\([0-9]*\).*/\1/p'))); done
  echo "$n"
}
timeout 30 redis-cli -p "$P_PORT" blpop '{b}gone' 0 >/dev/null &
cli=$!
for i in $(seq 50); do [ "$(blocked)" = 1 ] && break; sleep 0.1; done
it_eq "a client in BLPOP 0 is blocked on its master" 1 "$(blocked)"
it_eq "  and the proxy's INFO says so (blocked_clients, redis-cli --stat's column)" "blocked_clients:1" \
  "$(redis-cli -p "$P_PORT" info clients | grep -o 'blocked_clients:[0-9]*')"
kill "$cli"; wait "$cli" 2>/dev/null
it_check "it leaves: the master's connection is released (no blocked client)" it_wait 5 sh -c "
  n=0; for m in $M1 $M2 $M3; do n=\$((n + \$(redis-cli -p \$m -a $IT_PW --no-auth-warning info clients | sed -n 's/^blocked_clients:\\([0-9]*\\).*/\\1/p'))); done; [ \$n = 0 ]"
it_eq "  and nothing was popped" 0 "$(redis-cli -p "$P_PORT" exists '{b}gone')"
it_eq "  blocked_clients back to 0" "blocked_clients:0" "$(redis-cli -p "$P_PORT" info clients | grep -o 'blocked_clients:[0-9]*')"

# a migrating bucket: "{foo}" keys are in bucket 705, owned by M2, migrating
# to M1; BLPOP's key moves first (migrate-on-access), then it waits there
F=$(it_free_port)
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "127.0.0.1:$M1,127.0.0.1:$M2" \
  "table 1 migrating=705" > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_kvp_start Q test "$F" || exit 1
it_wait 10 it_kvp_ready "$Q_PORT"
it_redis "$M2" rpush '705_{foo}q' first >/dev/null
it_eq "BLPOP on a migrating bucket: the list moves, then pops" "{foo}q first" \
  "$(redis-cli -p "$Q_PORT" blpop '{foo}q' 0 | xargs)"
timeout 10 redis-cli -p "$Q_PORT" blpop '{foo}q' 0 > "$IT_DIR/mig.out" &
cli=$!
sleep 0.5
redis-cli -p "$Q_PORT" rpush '{foo}q' second >/dev/null
wait "$cli"
it_eq "  then blocks on the destination and is woken there" "{foo}q second" "$(xargs < "$IT_DIR/mig.out")"
it_eq "  nothing left on the source" "0" "$(it_redis "$M2" exists '705_{foo}q')"

pid=$IT_DIR/P/kvp.pid
out=$("$IT_BIN/kvlua" "$IT_ROOT/tests/it/blocked_many.lua" "$P_PORT" 1000 "$pid" 2>&1)
echo "$out" | sed 's/^/  /'
rss=$(awk '/^rss_kib/ {print $2}' <<<"$out")
echo "# kvp RSS with 1000 clients blocked in BLPOP: $((rss / 1024)) MiB"
it_eq "1000 clients blocked in BLPOP are all woken with their value" "woken 1000" "$(grep '^woken' <<<"$out")"
it_check "kvp's RSS with 1000 blocked clients stays small ($((rss / 1024)) MiB < 100)" test "${rss:-999999}" -lt 102400
it_done
