#!/usr/bin/env bash
# Control ports authenticated (issue 11, findings 1-6). A config server with
# cluster_secret, one real proxy, and forged peers:
#   - migration port: MIGRATE.START/DONE without the secret (wrong secret,
#     plain redis-cli) are refused and change nothing (table version); with
#     it they are accepted; REDIS_PASSWORD never gives the password;
#   - proxy port: REGISTER + DOWN and PATTERN ADD from a fake proxy without
#     the secret are refused (no pattern, no new proxy); with it accepted;
#   - a REGISTER reusing the real proxy's id does not close its session;
#   - refusals are logged with the peer's address, rate-limited;
#   - a config server with no secret refuses a non-loopback peer (the
#     host's own non-loopback address, when it has one) and accepts loopback;
#   - a proxy stopped cleanly unregisters; a fake proxy that left without
#     saying so stops blocking MIGRATE.START after proxy_forget_after (3 s);
#   - a proxy with stale_table_limit cut off from its config server stops
#     routing, and routes again once the config server is back.
# shellcheck source=lib.sh disable=SC2154  # lib.sh sets <name>_PORT/_HTTP/_PROXY
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
FAKE="$IT_ROOT/tests/it/fake_proxy.lua"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 "" "proxy_forget_after = 3" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$cs1_PROXY" || exit 1
MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs1/kvcs.conf")
CSLOG=$IT_DIR/cs1/kvcs.log
api() { curl -s -d "$2" "http://127.0.0.1:$cs1_HTTP/kvstore/cs/$1"; }
version() { api bucket_table '{"namespace":"test"}' | J 'j.version'; }
owner_of() { api bucket_table '{"namespace":"test"}' | J "(function() for a, l in pairs(j.table) do for _, b in ipairs(l) do if b == $1 then return a end end end end)()"; }
nproxies() { api proxy_info '{"namespace":"test"}' | J '#j.proxy_info'; }
wrong() { KV_CLUSTER_SECRET=guess "$@"; }

it_eq "a key written through the proxy" OK "$(redis-cli -p "$P_PORT" set itauth v1)"
stored=$(it_redis "$M1" --scan --pattern '*_itauth'; it_redis "$M2" --scan --pattern '*_itauth')
b=${stored%%_*}
V0=$(version)

# ------------------------------------------------------------ migration port
out=$(wrong it_ctl "$MIG" MIGRATE.START test "127.0.0.1:$M3" "$b" 2>&1)
it_check "MIGRATE.START with a wrong secret: NOAUTH" grep -q "NOAUTH control port: wrong cluster_secret" <<<"$out"
out=$(wrong it_ctl "$MIG" MIGRATE.DONE test "127.0.0.1:$M3" "$b" 2>&1)
it_check "MIGRATE.DONE with a wrong secret: NOAUTH" grep -q "NOAUTH" <<<"$out"
out=$(printf 'MIGRATE.START test 127.0.0.1:%s %s\r\nMIGRATE.DONE test 127.0.0.1:%s %s\r\n' "$M3" "$b" "$M3" "$b" |
  timeout 5 redis-cli -p "$MIG" 2>&1)
it_check "plain redis-cli gets no OK" sh -c "! grep -q '^OK' <<'EOF'
$out
EOF"
it_eq "nothing changed: table version, owner of bucket $b" "$V0 1" \
  "$(version) $(owner_of "$b" | grep -vc "127.0.0.1:$M3")"
out=$(timeout 5 redis-cli -p "$MIG" REDIS_PASSWORD 2>&1; wrong it_ctl "$MIG" REDIS_PASSWORD 2>&1; it_ctl "$MIG" REDIS_PASSWORD 2>&1)
it_check "REDIS_PASSWORD never answers the password" sh -c "! grep -q '$IT_PW' <<'EOF'
$out
EOF"
it_eq "REDIS_PASSWORD with the secret: an unknown command" "ERR unknown command 'REDIS_PASSWORD'" \
  "$(it_ctl "$MIG" REDIS_PASSWORD)"
it_check "the refusals are logged with the peer's address" grep -q "migration port: refused control peer 127.0.0.1:[0-9]*: wrong cluster_secret" "$CSLOG"

# ------------------------------------------------------------ proxy port
out=$(wrong timeout 20 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test 7901 "DOWN 127.0.0.1:$M1" "PATTERN ADD itauth*" 2>&1)
it_check "REGISTER + DOWN + PATTERN with a wrong secret: refused at the handshake" grep -q "^handshake: refused: NOAUTH" <<<"$out"
it_check "  and nothing ran" sh -c "! grep -q '^REGISTER\|^DOWN\|^PATTERN' <<'EOF'
$out
EOF"
out=$(printf 'REGISTER test 127.0.0.1:7902 7902\r\nPATTERN ADD test itauth*\r\n' | timeout 5 redis-cli -p "$cs1_PROXY" 2>&1)
it_eq "plain redis-cli on the proxy port: nothing changed (version, patterns, proxies)" "$V0 0 1" \
  "$(version) $(api bucket_table '{"namespace":"test"}' | J '#(j.patterns or {})') $(nproxies)"
it_check "  and 7901/7902 are not known" sh -c "! grep -q '790[12]' '$IT_DIR/cs1/known_proxies.json'"
out=$(timeout 20 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test 7903 "PATTERN ADD itauth*" "PATTERN DEL itauth*" "UNREGISTER" 2>&1)
it_check "with the secret: REGISTER, PATTERN ADD/DEL, UNREGISTER accepted" \
  sh -c "grep -q '^REGISTER.*bytes' <<'EOF' && grep -c '^PATTERN.*: OK' <<'EOF' | grep -qx 2 && grep -q '^UNREGISTER test: OK' <<'EOF'
$out
EOF
$out
EOF
$out
EOF"
it_eq "  the pattern was added then removed: two new versions" "$((V0 + 2))" "$(version)"
V0=$(version)

# ------------------------------------------------------------ a stolen id
PID_ID=$(api proxy_info '{"namespace":"test"}' | J 'j.proxy_info[1].id')
PEER=$(api proxy_info '{"namespace":"test"}' | J 'j.proxy_info[1].peer')
it_check "the proxy's id is random per process (host/listen/<random>)" grep -Eq "/127.0.0.1:$P_PORT/[0-9a-f]{16}$" <<<"$PID_ID"
regs=$(grep -c "registered with config server" "$IT_DIR/P/kvp.log")
out=$(timeout 20 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test "$PID_ID" "sleep 1" 2>&1)
it_check "a REGISTER with the live proxy's id is refused" grep -q "^REGISTER.*-ERR proxy id .* is in use" <<<"$out"
sleep 1
it_eq "the real proxy keeps its session (same peer, not re-registered)" "$PEER $PID_ID $regs" \
  "$(api proxy_info '{"namespace":"test"}' | J 'j.proxy_info[1].peer .. " " .. j.proxy_info[1].id') $(grep -c "registered with config server" "$IT_DIR/P/kvp.log")"

# ------------------------------------------------------------ rate-limited log
for i in $(seq 1 30); do wrong it_ctl "$MIG" PING >/dev/null 2>&1 & done; wait
n=$(grep -c "refused control peer" "$CSLOG")
it_check "30 refusals in a burst: a few log lines, not 30 ($n in all)" test "$n" -lt 15
# an authenticated peer's bad requests go through kv.log's limiter (by format)
for i in $(seq 1 60); do it_ctl "$cs1_PROXY" REGISTER nosuchns "127.0.0.1:$((20000 + i))" "x$i" >/dev/null 2>&1 & done; wait
n=$(grep -c "asked for unknown namespace nosuchns" "$CSLOG")
it_check "60 REGISTERs for an unknown namespace: at most 20 log lines per 10 s ($n)" test "$n" -le 20
sleep 10; it_ctl "$cs1_PROXY" REGISTER nosuchns 127.0.0.1:20999 y >/dev/null 2>&1
it_check "  the next line after the window says how many were held back" \
  grep -q "asked for unknown namespace nosuchns (and [0-9]* more like it)" "$CSLOG"

# ------------------------------------------------------------ no secret: loopback only
# no_secret_conf NAME [MIGRATION_HOST]: a kvcs.conf without cluster_secret
no_secret_conf() {
  mkdir -p "$IT_DIR/$1"
  cat > "$IT_DIR/$1/kvcs.conf" <<EOC
http_listen = "127.0.0.1:$(it_free_port)"
proxy_listen = "127.0.0.1:$(it_free_port)"
migration_listen = "${2:-127.0.0.1}:$(it_free_port)"
cs_listen = "127.0.0.1:$(it_free_port)"
table_dir = "table"
log_file = "kvcs.log"
EOC
}
no_secret_conf cs2
it_kvcs_start cs2 || exit 1
IP=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.' | grep -v '^127\.' | head -1)
if [ -n "$IP" ]; then
  no_secret_conf cs3 "$IP"
  it_kvcs_start cs3 || exit 1
  MIG3=$(sed -n 's/^migration_listen = "\(.*\)"$/\1/p' "$IT_DIR/cs3/kvcs.conf")
  out=$(KV_CLUSTER_SECRET= timeout 10 "$IT_BIN/kvlua" "$IT_ROOT/scripts/lib/kvctl.lua" "$MIG3" PING 2>&1)
  it_check "no secret: a non-loopback peer ($IP) is refused" grep -q "NOAUTH control port: not a loopback peer" <<<"$out"
  it_check "  and logged" grep -q "migration port: refused control peer $IP:" "$IT_DIR/cs3/kvcs.log"
else
  echo "no non-loopback address on this host: the non-loopback refusal is shown by tests/lua/handshake_spec.lua only"
fi
MIG2=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs2/kvcs.conf")
it_eq "no secret: a loopback peer without one is accepted" PONG "$(KV_CLUSTER_SECRET= it_ctl "$MIG2" PING)"

# ------------------------------------------------------------ leaving
it_kvp_start Q test "$cs1_PROXY" || exit 1
QID=$(api proxy_info '{"namespace":"test"}' | J "(function() for _, p in ipairs(j.proxy_info) do if p.id ~= '$PID_ID' then return p.id end end end)()")
it_kill Q TERM
sleep 1
it_check "a proxy stopped cleanly unregisters" grep -q "id $QID) of test unregistered" "$CSLOG"
it_check "  and is no longer known" sh -c "! grep -q '$QID' '$IT_DIR/cs1/known_proxies.json'"
# a proxy that leaves without a word: known, then forgotten after 3 s
timeout 20 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test 7999 "sleep 0.3" >/dev/null
it_check "a proxy gone without UNREGISTER is known" grep -q '"7999"' "$IT_DIR/cs1/known_proxies.json"
t0=$(date +%s)
it_eq "MIGRATE.START is not blocked by it once proxy_forget_after passed" OK \
  "$(it_ctl "$MIG" MIGRATE.START test "127.0.0.1:$M3" "$b")"
t1=$(date +%s)
it_check "  (it waited for the forget time, $((t1 - t0)) s, less than the 10 s ack timeout)" test $((t1 - t0)) -lt 10
it_check "the decision is logged" grep -q "proxy 127.0.0.1:7999 (id 7999) of test has not reconnected for [0-9]* s (proxy_forget_after 3): forgotten" "$CSLOG"
it_eq "MIGRATE.DONE with the secret" OK "$(it_ctl "$MIG" MIGRATE.DONE test "127.0.0.1:$M3" "$b")"
it_eq "the bucket moved" "127.0.0.1:$M3" "$(owner_of "$b")"

# ------------------------------------------------------------ the fence
# a proxy cut off from every config server for stale_table_limit stops
# routing (what makes proxy_forget_after safe), and routes again once one answers
it_kvp_start F test "$cs1_PROXY" "" "stale_table_limit = 2" || exit 1
it_eq "F serves" OK "$(redis-cli -p "$F_PORT" set itfence v2)"
CSPID=$(cat "$IT_DIR"/cs1/*.pid)
kill -STOP "$CSPID"
sleep 4
it_check "cut off for longer than stale_table_limit: F stops routing" \
  sh -c "timeout 5 redis-cli -p $F_PORT get itfence | grep -q 'request timeout'"
it_check "  and says why" grep -q "routing stopped: no master config server heard for [0-9]* s (stale_table_limit 2)" "$IT_DIR/F/kvp.log"
kill -CONT "$CSPID"
it_check "F routes again once the config server answers" \
  it_wait 20 sh -c "redis-cli -p $F_PORT get itfence | grep -qx v2"
it_done
