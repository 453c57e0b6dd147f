#!/usr/bin/env bash
# Issue 13, the config server's side of the routing policy: set_policy over
# HTTP publishes it as a table version (the slave config server has it, a
# restart keeps it), a bad policy is refused with its line, a change of
# routing on a namespace holding data needs force, locate answers the master
# a key really lands on through a proxy (default policy: the proxies do not
# apply it in that check), a tenant route rule, a looping route answered
# with an error within a second, replicas in locate, and migration_tool
# printing the policy version it runs under.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port); M4=$(it_free_port)
M5=$(it_free_port); R1=$(it_free_port)
for m in $M1 $M2 $M3 $M4 $M5; do it_redis_start "$m" || exit 1; done
# a replica of M1, there before the config server learns replicas at start
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" || exit 1
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_init_table "$cs1_HTTP" data 256 "127.0.0.1:$M3" || exit 1
it_init_table "$cs1_HTTP" ten 256 "127.0.0.1:$M4" || exit 1
MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs1/kvcs.conf")

api() { curl -s -d "$3" "http://127.0.0.1:$1/kvstore/cs/$2"; }
# set_policy NS FILE [force]: the body built by cjson (the source is any text)
set_policy() {
  local body
  body=$(luajit -e "local cjson = require 'cjson'
    local f = assert(io.open('$2')); local src = f:read('*a'); f:close()
    io.write(cjson.encode({ namespace = '$1', source = src, force = ${3:-false} }))")
  api "$cs1_HTTP" set_policy "$body"
}
now_ms() { date +%s%3N; }

# ------------------------------------------------------------ publish
it_eq "before any publication: version 0, source null, the default's routing" \
  '1001 0 true hash=murmur2_kvstore;tags=true' \
  "$(api "$cs1_HTTP" policy '{"namespace":"test"}' | J 'j.code .. " " .. j.version .. " " .. tostring(j.source == null) .. " " .. j.routing')"
cat > "$IT_DIR/ro.lua" <<'EOF'
-- routing as the default; a read-only prefix
return {
  rules = { { match = "frozen:*", read_only = true } },
}
EOF
V0=$(api "$cs1_HTTP" bucket_table '{"namespace":"test"}' | J 'j.version')
it_eq "set_policy: version 1, in a new table version" "1001 1 $((V0 + 1))" \
  "$(set_policy test "$IT_DIR/ro.lua" | J 'j.code .. " " .. j.version .. " " .. j.table_version')"
same_src="j.version .. ' ' .. tostring(j.source == io.open('$IT_DIR/ro.lua'):read('*a'))"
it_eq "GET policy (?namespace=) answers the source and version" "1 true" \
  "$(curl -s "http://127.0.0.1:$cs1_HTTP/kvstore/cs/policy?namespace=test" | J "$same_src")"
it_eq "the same source again: a no-op" "1 $((V0 + 1))" \
  "$(set_policy test "$IT_DIR/ro.lua" | J 'j.version .. " " .. j.table_version')"
it_eq "bucket_table carries policy_version" "1" \
  "$(api "$cs1_HTTP" bucket_table '{"namespace":"test"}' | J 'j.policy_version')"
it_check "the slave config server has it (policy and bucket_table)" it_wait 5 sh -c \
  "curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs2_HTTP/kvstore/cs/policy | luajit $IT_ROOT/scripts/lib/json.lua 'j.version' | grep -qx 1 &&
   curl -s -d '{\"namespace\":\"test\"}' http://127.0.0.1:$cs2_HTTP/kvstore/cs/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua 'j.policy_version' | grep -qx 1"
it_eq "the slave's table file equals the master's" "$(cat "$IT_DIR/cs1/table/test")" "$(cat "$IT_DIR/cs2/table/test")"
it_eq "a slave refuses set_policy" "1008" \
  "$(api "$cs2_HTTP" set_policy '{"namespace":"test","source":"return {}"}' | J 'j.code')"
it_kill cs1 TERM
it_kvcs_start cs1 || exit 1
it_eq "a restart keeps it (table file)" "1 true" \
  "$(curl -s "http://127.0.0.1:$cs1_HTTP/kvstore/cs/policy?namespace=test" | J "$same_src")"

printf 'return {\n  hash = "murmur2_kvstore",\n  rules = { { match = "a*", max_qps = -1 } },\n}\n' > "$IT_DIR/bad.lua"
out=$(set_policy test "$IT_DIR/bad.lua")
it_eq "a bad policy is refused with its line" "1027 policy.lua:3: rules[1].max_qps" \
  "$(echo "$out" | J 'j.code .. " " .. j.msg:match("^%S+ %S+")')"
printf 'return {\n  hash = \n' > "$IT_DIR/bad2.lua"
it_check "a syntax error names its line" grep -q '"code":1027.*policy.lua:3:' <<<"$(set_policy test "$IT_DIR/bad2.lua")"
it_eq "  and nothing changed" "1 $((V0 + 1))" \
  "$(api "$cs1_HTTP" bucket_table '{"namespace":"test"}' | J 'j.policy_version .. " " .. j.version')"

# ------------------------------------------------------------ routing change on data
it_redis "$M3" set 7_somekey v >/dev/null
echo 'return { hash = "crc16" }' > "$IT_DIR/crc.lua"
out=$(set_policy data "$IT_DIR/crc.lua")
it_eq "crc16 on a namespace holding data: refused" "1018" "$(echo "$out" | J 'j.code')"
it_check "  saying every key would move" grep -q 'every key would move to another bucket' <<<"$out"
it_eq "  nothing published" "0" "$(api "$cs1_HTTP" policy '{"namespace":"data"}' | J 'j.version')"
it_eq "with force: accepted" "1001 1" "$(set_policy data "$IT_DIR/crc.lua" true | J 'j.code .. " " .. j.version')"
it_eq "  and routes with crc16" "hash=crc16;tags=true" "$(api "$cs1_HTTP" policy '{"namespace":"data"}' | J 'j.routing')"

# ------------------------------------------------------------ locate vs a real proxy
it_kvp_start P test "$cs1_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
it_check "the config server learned M1's replica" it_wait 15 sh -c \
  "curl -s -d '{\"namespace\":\"test\",\"key\":\"x\"}' http://127.0.0.1:$cs1_HTTP/kvstore/cs/locate >/dev/null; grep -q 'replicas of 127.0.0.1:$M1: 127.0.0.1:$R1' '$IT_DIR/cs1/kvcs.log'"
seen_m1=0
for key in foo hello 'user:{42}:name' 'user:{42}:mail' 'k:7' 'longer-key-with-some-bytes' 'x'; do
  redis-cli -p "$P_PORT" set "$key" v >/dev/null
  j=$(api "$cs1_HTTP" locate "{\"namespace\":\"test\",\"key\":\"$key\"}")
  b=$(echo "$j" | J 'j.bucket'); m=$(echo "$j" | J 'j.master')
  it_eq "locate $key: the master holding ${b}_$key" "1" "$(it_redis "${m#127.0.0.1:}" exists "${b}_$key")"
  if [ "$m" = "127.0.0.1:$M1" ]; then
    seen_m1=1
    it_eq "  with M1's replica" "[\"127.0.0.1:$R1\"]" "$(echo "$j" | J 'j.replicas')"
  fi
done
it_eq "some key landed on M1" "1" "$seen_m1"
it_eq "tagged keys share the bucket" \
  "$(api "$cs1_HTTP" locate '{"namespace":"test","key":"user:{42}:name"}' | J 'j.bucket')" \
  "$(api "$cs1_HTTP" locate '{"namespace":"test","key":"user:{42}:mail"}' | J 'j.bucket')"

# ------------------------------------------------------------ route rules
cat > "$IT_DIR/tenant.lua" <<'EOF'
return {
  rules = {
    -- tenant:<id>:... routes by the tenant: one bucket per tenant
    { match = "tenant:*", route = function(key, cmd)
        return (key:match("^tenant:([^:]+):"))
      end },
    { match = "pinned:*", route = function() return 17 end },
    -- loops for one key only: a route that loops for keys of its glob is
    -- refused at publication (below)
    { match = "loop:*", route = function(key) if key == "loop:1" then while true do end end return key end },
  },
}
EOF
it_eq "a tenant route on an empty namespace: published" "1001 1" \
  "$(set_policy ten "$IT_DIR/tenant.lua" | J 'j.code .. " " .. j.version')"
ba=$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"acme"}' | J 'j.bucket')
it_eq "tenant:acme:* keys go to the bucket of 'acme' (policy v1, rule 1)" "$ba 1 $ba 1" \
  "$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"tenant:acme:user:1"}' | J 'j.bucket .. " " .. j.policy_version') \
$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"tenant:acme:cart:9","command":"SET"}' | J 'j.bucket .. " " .. j.rule')"
it_eq "an integer route is the bucket" "17 127.0.0.1:$M4" \
  "$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"pinned:x"}' | J 'j.bucket .. " " .. j.master')"
t0=$(now_ms)
out=$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"loop:1"}')
dt=$(( $(now_ms) - t0 ))
it_eq "a looping route: an error naming it" "1028 true" \
  "$(echo "$out" | J 'j.code .. " " .. tostring(j.msg:find("instructions", 1, true) ~= nil)')"
it_check "  within a second (${dt} ms)" test "$dt" -lt 1000
it_eq "  and the config server goes on" "1001" "$(api "$cs1_HTTP" locate '{"namespace":"ten","key":"other"}' | J 'j.code')"
printf 'return { rules = {\n  { match = "spin:*", route = function(k) while true do end end },\n} }\n' > "$IT_DIR/spin.lua"
out=$(set_policy ten "$IT_DIR/spin.lua")
it_eq "a route that loops for keys of its glob is refused at publication" "1027 true" \
  "$(echo "$out" | J 'j.code .. " " .. tostring(j.msg:find("did not return", 1, true) ~= nil)')"

# ------------------------------------------------------------ the proxy link
FAKE="$IT_ROOT/tests/it/fake_proxy.lua"
echo 'return { hash_tags = false }' > "$IT_DIR/notags.lua"
out=$(timeout 20 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test 7901 "POLICY $IT_DIR/ro.lua" \
      "POLICY $IT_DIR/notags.lua" "POLICY $IT_DIR/bad.lua" 2>&1)
echo "$out" | sed 's/^/    /'
# pushed_replicas TEXT: each "push replicas" line as "master=replica,..." pairs
# sorted by master (the JSON's key order follows the port numbers)
pushed_replicas() {
  sed -n 's/^ *push replicas test //p' <<<"$1" | while read -r json; do
    printf '%s' "$json" | luajit -e "local cjson = require 'cjson'; local m = cjson.decode(io.read('*a'))
      local out = {}
      for k, v in pairs(m) do out[#out + 1] = k .. '=' .. table.concat(v, ',') end
      table.sort(out); print(table.concat(out, ' '))"
  done
}
want=$(printf '%s\n' "127.0.0.1:$M1=127.0.0.1:$R1" "127.0.0.1:$M2=" | sort | tr '\n' ' ' | sed 's/ $//')
it_check "REGISTER is followed by the replicas of every master" \
  grep -qx "$want" <<<"$(pushed_replicas "$out")"
it_check "POLICY with the published source: its version" grep -qx 'POLICY test: :1' <<<"$out"
it_check "POLICY changing routing on data: -ERR 1018" grep -q '^POLICY test: -ERR 1018 .*every key would move' <<<"$out"
it_check "POLICY with a bad policy: -ERR 1027 and its line" grep -q '^POLICY test: -ERR 1027 policy.lua:3:' <<<"$out"
# a new replica of M2: the proxies get the namespace's replicas again
R2=$(it_free_port)
it_redis_start "$R2" --replicaof 127.0.0.1 "$M2" || exit 1
timeout 30 "$IT_BIN/kvlua" "$FAKE" "$cs1_PROXY" test 7902 "sleep 12" > "$IT_DIR/fake2.out" 2>&1 &
FAKE2=$!
echo 'return { rules = { { match = "frozen:*", read_only = true }, { match = "cold:*", read_only = true } } }' > "$IT_DIR/ro2.lua"
sleep 0.5
set_policy test "$IT_DIR/ro2.lua" >/dev/null # a table change: the config server learns replicas again
wait "$FAKE2"
want=$(printf '%s\n' "127.0.0.1:$M1=127.0.0.1:$R1" "127.0.0.1:$M2=127.0.0.1:$R2" | sort | tr '\n' ' ' | sed 's/ $//')
it_check "a master's new replica is pushed to the namespace's proxies" \
  grep -qx "$want" <<<"$(pushed_replicas "$(cat "$IT_DIR/fake2.out")")"

# ------------------------------------------------------------ migration_tool
out=$(timeout 60 "$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns ten --add "127.0.0.1:$M5" 2>&1)
it_check "migration_tool prints the policy version it runs under" grep -q '^policy: ten routes with policy v1 ' <<<"$out"
it_check "  and moves the buckets" grep -q '^done: 128 bucket' <<<"$out"
it_done
