#!/usr/bin/env bash
# RESP3 through the proxy (issue 12, item 7): HELLO 3 (and 2, with AUTH and
# SETNAME) answered like Redis with the proxy's own server info; a RESP3
# client's commands run on backend connections that speak RESP3, so maps,
# sets, doubles and nulls arrive as Redis writes them; merged replies
# (MGET, EXISTS counts, INFO, SCAN) are built in RESP3; pub/sub messages are
# pushes. Each command is sent with redis-cli -3 to the proxy and to a plain
# redis-server holding the same data, and the printed replies compared.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port); R=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
redis-server --port "$R" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$IT_DIR/plain.pid" --dir "$IT_DIR" --logfile "$IT_DIR/plain.log" >/dev/null
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT"
it_wait 5 redis-cli -p "$R" ping >/dev/null

both() { redis-cli -3 -p "$P_PORT" "$@" >/dev/null; redis-cli -3 -p "$R" "$@" >/dev/null; }
# same "what" CMD...: redis-cli -3's print of the proxy's reply equals Redis's
same() {
  local what=$1; shift
  it_eq "$what" "$(redis-cli -3 -p "$R" "$@" 2>&1)" "$(redis-cli -3 -p "$P_PORT" "$@" 2>&1)"
}

hello=$(redis-cli -p "$P_PORT" hello 3 | xargs)
it_check "HELLO 3: the proxy's own server info, proto 3 ($hello)" grep -q "^server kvp version .* proto 3 id" <<<"$hello"
it_eq "HELLO 3 as a map" '1# "server" => "kvp"' "$(redis-cli -3 --no-raw -p "$P_PORT" hello 3 | head -1)"
it_eq "HELLO 2 after 3: proto 2 again" "2" \
  "$(printf 'HELLO 3\nHELLO 2\n' | redis-cli -p "$P_PORT" | grep -A1 -x proto | tail -1)"
it_eq "HELLO 4: NOPROTO, as Redis" "$(redis-cli -p "$R" hello 4)" "$(redis-cli -p "$P_PORT" hello 4)"
it_eq "HELLO 3 SETNAME" "resp3app" "$(printf 'HELLO 3 SETNAME resp3app\nCLIENT GETNAME\n' | redis-cli -p "$P_PORT" | tail -1)"
it_eq "HELLO with a bad option: Redis's error" "$(redis-cli -p "$R" hello 3 setname)" "$(redis-cli -p "$P_PORT" hello 3 setname)"
it_eq "HELLO SETNAME with a space: Redis's error" "$(redis-cli -p "$R" hello 3 setname 'a b')" "$(redis-cli -p "$P_PORT" hello 3 setname 'a b')"
it_eq "HELLO AUTH without a password configured: accepted, as Redis's nopass user" \
  "$(redis-cli -p "$R" hello 3 auth default x | grep -x 'proto 3')" "$(redis-cli -p "$P_PORT" hello 3 auth default x | grep -x 'proto 3')"
same "PING with two arguments: the arity error" ping a b
same "PUBSUB NUMSUB in RESP3: a flat array, as Redis 7.0" pubsub numsub nosuchchannel

both hset h f1 v1 f2 v2
both hset '{t}h' f1 v1 f2 v2
both zadd '{t}z' 1.5 a 2 b
both sadd s one
both zadd z 1.5 a 2 b
both rpush l x y
both set k1 v1
both set k2 v2
both xadd st 1-1 f v
same "HGETALL: a map" hgetall h
same "SMEMBERS: a set" smembers s
same "ZSCORE: a double" zscore z a
same "ZRANGE WITHSCORES: pairs with doubles" zrange z 0 -1 withscores
same "GET of a missing key: null" get nokey
same "MGET over three masters with a missing key (merged)" mget k1 nokey k2
same "EXISTS over masters (merged count)" exists k1 k2 nokey
same "XRANGE" xrange st - +
same "XREAD: a map of streams" xread streams st 0
same "LPOS missing: null" lpos l zz
same "CLIENT GETNAME without one: null" client getname
same "OBJECT ENCODING" object encoding h
same "EVAL returning a value" eval "redis.call('set',KEYS[1],'1'); return redis.call('get',KEYS[1])" 1 '{t}a'
it_eq "MULTI/EXEC in RESP3: a map and a double inside" \
  "$(printf 'MULTI\nHGETALL {t}h\nZSCORE {t}z b\nEXEC\n' | redis-cli -3 --no-raw -p "$R")" \
  "$(printf 'MULTI\nHGETALL {t}h\nZSCORE {t}z b\nEXEC\n' | redis-cli -3 --no-raw -p "$P_PORT")"
it_eq "BLPOP timing out: null" "$(redis-cli -3 -p "$R" blpop nolist 0.2)" "$(redis-cli -3 -p "$P_PORT" blpop nolist 0.2)"
info=$(redis-cli -3 -p "$P_PORT" info server | head -1)
it_check "INFO in RESP3: verbatim text ($info)" grep -q "# Server" <<<"$info"
it_eq "SCAN over every master: every key" "h k1 k2 l s st z {t}a {t}h {t}z" "$(redis-cli -3 -p "$P_PORT" --scan | sort | xargs)"
it_eq "RANDOMKEY is one of them" 1 "$(redis-cli -3 -p "$P_PORT" randomkey | grep -cxE 'h|k1|k2|l|s|st|z|\{t\}[ahz]')"

( printf 'WATCH k1\nGET k1\n'; sleep 0.4; printf 'MULTI\nSET k1 x\nEXEC\n' ) | redis-cli -3 --no-raw -p "$P_PORT" > "$IT_DIR/watch.out" 2>&1 &
w=$!
sleep 0.2
redis-cli -p "$P_PORT" set k1 changed >/dev/null
wait "$w"
it_eq "WATCH broken by another client: EXEC answers null in RESP3" "(nil)" "$(tail -1 "$IT_DIR/watch.out")"

# pub/sub: a RESP3 subscriber gets pushes, and may run other commands
# (redis-cli stops sending once subscribed: a raw socket)
out=$(python3 "$IT_ROOT/tests/it/resp3_sub.py" "$P_PORT" 2>&1)
echo "$out" | sed 's/^/  /'
it_check "a RESP3 subscriber: confirmation and message as pushes, GET answered between" \
  grep -qx "all passed" <<<"$out"
kill "$(cat "$IT_DIR/plain.pid")" 2>/dev/null
it_done
