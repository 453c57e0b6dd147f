#!/usr/bin/env bash
# TEST_GUIDE 2 on free ports: scripts/scale_test.sh (the operators' script)
# against two masters with requirepass, a third one to add, a config server
# that knows the password and one proxy; then an --add killed with SIGKILL
# at random points three times and run again each time: it must finish with
# every key present exactly once (total unchanged, no key on two masters),
# binary keys included, and clients served between the kills.
# shellcheck source=lib.sh disable=SC2154  # lib.sh sets <name>_PORT/_HTTP/_PROXY
source "$(dirname "$0")/lib.sh"
TOOL=$IT_BIN/migration_tool
[ -x "$TOOL" ] || { echo "build/migration_tool is missing"; exit 1; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start proxy test "$cs1_PROXY" || exit 1
MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs1/kvcs.conf")
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
table_json() { it_ctl "$MIG" TABLE test; }
total() { echo $(( $(it_redis "$M1" dbsize) + $(it_redis "$M2" dbsize) + $(it_redis "$M3" dbsize) )); }

# ---------------------------------------------------------------- command line
"$TOOL" --help > "$IT_DIR/help.out" 2>&1
it_eq "--help exits 0 with the usage" "0 1" "$? $(grep -c '^usage: migration_tool --cs HOST:PORT' "$IT_DIR/help.out")"
"$TOOL" --cs "127.0.0.1:$MIG" --ns test > "$IT_DIR/bad.out" 2>&1
it_eq "no --add/--del: exit 2, the cause and the usage on stderr" "2 1 1" \
  "$? $(grep -c 'add ADDR or --del ADDR is required' "$IT_DIR/bad.out") $(grep -c '^usage:' "$IT_DIR/bad.out")"
"$TOOL" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:0$M3" > "$IT_DIR/bad.out" 2>&1
it_eq "a bad address: exit 2" "2" "$?"
"$TOOL" --cs "127.0.0.1:$MIG" --ns nosuch --add "127.0.0.1:$M3" > "$IT_DIR/bad.out" 2>&1
it_eq "an unknown namespace: exit 1 naming it" "1 1" "$? $(grep -c "no such namespace 'nosuch'" "$IT_DIR/bad.out")"

# ---------------------------------------------------------------- scale_test.sh
it_check "scale_test.sh passes (add, then del)" env PROXY_PORT="$proxy_PORT" PROXY_HTTP="$proxy_HTTP" \
  CS_MIGRATION="$MIG" NEW_MASTER_PORT="$M3" KV_PASSWORD="$IT_PW" LOAD_N=100000 MARKERS=5000 \
  "$IT_ROOT/scripts/scale_test.sh"

# ---------------------------------------------------------------- SIGKILL and resume
# binary keys (NUL, CR LF, high bytes) through the proxy, read back at the end
cat > "$IT_DIR/binkeys.lua" <<'EOF'
local loop, redis = require "kv.loop", require "kv.redis"
local port, mode = tonumber(arg[1]), arg[2]
local rc = 1
loop.run(function()
  local c = assert(redis.connect("127.0.0.1", port))
  local bad = 0
  for i = 1, 300 do
    local k, v = "bin\0key\r\n" .. i .. "\255\128", "v\0" .. i
    if mode == "set" then
      local r = c:call("SET", k, v)
      if not (type(r) == "table" and r.status == "OK") then bad = bad + 1 end
    else
      if c:call("GET", k) ~= v then bad = bad + 1 end
    end
  end
  print(mode .. ": " .. bad .. " bad")
  rc = bad == 0 and 0 or 1
  loop.stop()
end)
return rc
EOF
it_check "300 binary keys written through the proxy" "$IT_BIN/kvlua" "$IT_DIR/binkeys.lua" "$proxy_PORT" set
before=$(total)
echo "total before: $before keys ($(it_redis "$M3" dbsize) on $M3)"

clients_ok() { # a few keys through the proxy while buckets may be left migrating
  local ks vs
  ks=$(seq -f "it70:%.0f" 1 50 | tr '\n' ' ')
  # shellcheck disable=SC2046,SC2086
  [ "$(redis-cli -p "$proxy_PORT" mset $(for k in $ks; do echo "$k $k"; done))" = OK ] || return 1
  # shellcheck disable=SC2086
  vs=$(redis-cli -p "$proxy_PORT" mget $ks | tr '\n' ' ')
  # shellcheck disable=SC2086
  redis-cli -p "$proxy_PORT" del $ks >/dev/null
  [ "$vs" = "$ks" ]
}

killed=0
for i in 1 2 3; do
  "$TOOL" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:$M3" --parallel 4 --batch 50 \
    > "$IT_DIR/kill$i.out" 2>&1 &
  pid=$!
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.1 + rand() * 0.9 }')"
  if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
  wait "$pid" 2>/dev/null
  echo "run $i killed: $(table_json | J '#j.migrating') bucket(s) left migrating," \
    "$(table_json | J "#(j.table[\"127.0.0.1:$M3\"] or {})") owned by $M3"
  it_check "clients are served after kill $i" clients_ok
done
it_eq "the three kills hit a running tool" 3 "$killed"
it_check "the same command run again finishes" sh -c "'$TOOL' --cs 127.0.0.1:$MIG --ns test \
  --add 127.0.0.1:$M3 --parallel 4 --batch 50 > '$IT_DIR/final.out' 2>&1"
grep -v '^bucket ' "$IT_DIR/final.out"
it_eq "total number of keys unchanged" "$before" "$(total)"
it_check "no key on two masters" "$IT_BIN/kvlua" "$IT_ROOT/tests/it/dupkeys.lua" "$IT_PW" "$M1" "$M2" "$M3"
it_eq "3 masters with 341 buckets each, none migrating" "341 341 341 0" \
  "$(table_json | J "#j.table[\"127.0.0.1:$M1\"] .. ' ' .. #j.table[\"127.0.0.1:$M2\"] .. ' ' .. #j.table[\"127.0.0.1:$M3\"] .. ' ' .. #j.migrating")"
it_check "binary keys read back through the proxy" "$IT_BIN/kvlua" "$IT_DIR/binkeys.lua" "$proxy_PORT" get
it_check "a run after the end has nothing to do" sh -c \
  "'$TOOL' --cs 127.0.0.1:$MIG --ns test --add 127.0.0.1:$M3 | grep -q 'nothing to do'"
it_done
