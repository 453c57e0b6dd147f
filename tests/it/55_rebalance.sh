#!/usr/bin/env bash
# migration_tool --rebalance (issue 15, item 4): three masters holding the
# same number of buckets and of keys, but one of them with big values
# (~10x the bytes). --rebalance --dry-run prints a plan that evens the
# bytes within --spread and changes nothing (table version, keys per
# master); --rebalance runs it: the masters' bytes (MEMORY USAGE of every
# key, measured here, not by the tool) end within the spread, no key lost
# or changed. --by keys on the result (keys now uneven by design) and
# argument checks.
# shellcheck source=lib.sh disable=SC2154  # lib.sh sets <name>_PORT/_HTTP/_PROXY
source "$(dirname "$0")/lib.sh"
TOOL=$IT_BIN/migration_tool
[ -x "$TOOL" ] || { echo "build/migration_tool is missing"; exit 1; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_start proxy test "$cs1_PROXY" || exit 1
MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs1/kvcs.conf")
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
version() { it_ctl "$MIG" TABLE test | J 'j.version'; }
dbsizes() { echo "$(it_redis "$M1" dbsize) $(it_redis "$M2" dbsize) $(it_redis "$M3" dbsize)"; }
rb() { "$TOOL" --cs "127.0.0.1:$MIG" --ns test --password "$IT_PW" "$@"; }

# set N: rb:1..N = "v<i>" through the proxy; big FILE: the keys named in
# FILE (stored names "<b>_rb:<i>") get "v<i>" .. 2000 x; check N FILE:
# every key has its value; bytes PORT...: MEMORY USAGE (SAMPLES 0) of every
# key, summed per master, then "spread <pct>"
cat > "$IT_DIR/rb.lua" <<'LUA'
local loop, redis = require "kv.loop", require "kv.redis"
local mode, port = arg[1], tonumber(arg[2])
local PAD = string.rep("x", 2000)
local rc = 1
local function big_set(file)
  local s = {}
  for line in io.lines(file) do
    local i = line:match("_rb:(%d+)$")
    if i then s[tonumber(i)] = true end
  end
  return s
end
loop.run(function()
  if mode == "bytes" then
    local tot, hi, lo = {}, -1, math.huge
    for j = 3, #arg do
      local c = assert(redis.connect("127.0.0.1", tonumber(arg[j]), { password = "itpass" }))
      local cur, sum = "0", 0
      repeat
        local r = c:call("SCAN", cur, "COUNT", 1000)
        cur = r[1]
        local cmds = {}
        for i = 1, r[2].n do cmds[i] = { "MEMORY", "USAGE", r[2][i], "SAMPLES", "0" } end
        if #cmds > 0 then
          for _, x in ipairs(assert(c:pipeline(cmds))) do sum = sum + (tonumber(x) or 0) end
        end
      until cur == "0"
      tot[#tot + 1] = sum
      hi, lo = math.max(hi, sum), math.min(lo, sum)
    end
    print(table.concat(tot, " ") .. " spread " .. string.format("%.1f", (hi / lo - 1) * 100))
    rc = 0
  else
    local c = assert(redis.connect("127.0.0.1", port))
    local n = tonumber(arg[3])
    local big = mode ~= "set" and big_set(arg[mode == "big" and 3 or 4]) or {}
    local bad, cmds = 0, {}
    local function run()
      if #cmds == 0 then return end
      local r = assert(c:pipeline(cmds))
      for k, x in ipairs(r) do
        if mode == "check" then
          if x ~= cmds[k].want then bad = bad + 1 end
        elseif not (type(x) == "table" and x.status == "OK") then bad = bad + 1 end
      end
      cmds = {}
    end
    if mode == "big" then
      for i in pairs(big) do cmds[#cmds + 1] = { "SET", "rb:" .. i, "v" .. i .. PAD } if #cmds >= 500 then run() end end
    else
      for i = 1, n do
        if mode == "set" then cmds[#cmds + 1] = { "SET", "rb:" .. i, "v" .. i }
        else cmds[#cmds + 1] = { "GET", "rb:" .. i, want = "v" .. i .. (big[i] and PAD or "") } end
        if #cmds >= 500 then run() end
      end
    end
    run()
    print(mode .. ": " .. bad .. " bad")
    rc = bad == 0 and 0 or 1
  end
  loop.stop()
end)
return rc
LUA
R() { "$IT_BIN/kvlua" "$IT_DIR/rb.lua" "$@"; }
N=15000
it_check "$N keys written through the proxy" R set "$proxy_PORT" $N
# 1500 of the keys M1 holds get big values: M1 ~10x the bytes of the others
it_redis "$M1" --scan --pattern '*_rb:*' | head -1500 > "$IT_DIR/big.list"
it_check "1500 keys of $M1 made big" R big "$proxy_PORT" "$IT_DIR/big.list"
echo "bytes per master before: $(R bytes 0 "$M1" "$M2" "$M3")"

# ---------------------------------------------------------------- arguments
rb --rebalance --add "127.0.0.1:$M3" > "$IT_DIR/bad.out" 2>&1
it_eq "--rebalance with --add: exit 2" "2 1" "$? $(grep -c 'not with --add or --del' "$IT_DIR/bad.out")"
rb --rebalance --by disk > "$IT_DIR/bad.out" 2>&1
it_eq "--by disk: exit 2" "2 1" "$? $(grep -c 'must be memory or keys' "$IT_DIR/bad.out")"
rb --add "127.0.0.1:$M3" --spread 5 > "$IT_DIR/bad.out" 2>&1
it_eq "--spread without --rebalance: exit 2" "2" "$?"

# ---------------------------------------------------------------- dry run
v0=$(version); d0=$(dbsizes)
rb --rebalance --spread 10 --dry-run > "$IT_DIR/dry.out" 2>&1
rc=$?
grep -v '^  move bucket' "$IT_DIR/dry.out"; echo "($(grep -c '^  move bucket' "$IT_DIR/dry.out") move lines)"
it_eq "--dry-run exits 0" "0" "$rc"
moves=$(grep -c "^  move bucket [0-9]*: 127.0.0.1:$M1 -> 127.0.0.1:\($M2\|$M3\), [0-9]* keys, [0-9.]* [KM]\?B$" "$IT_DIR/dry.out")
it_check "the dry run plans moves off $M1 only, each with keys and bytes ($moves)" \
  test "$moves" -gt 0 -a "$moves" -eq "$(grep -c '^  move bucket' "$IT_DIR/dry.out")"
it_check "the dry run says the plan ends within the spread" \
  grep -q "rebalance by memory, goal: within 10%; now [0-9.]*%, after the plan \([0-9]\.[0-9]\|10\.0\)%$" "$IT_DIR/dry.out"
it_eq "the dry run prints every master's load before and after" "3" "$(grep -c '^  master 127.0.0.1:[0-9]*: .* -> ' "$IT_DIR/dry.out")"
it_eq "the dry run changed nothing (table version, keys per master)" "$v0 $d0" "$(version) $(dbsizes)"

# ---------------------------------------------------------------- the run
rb --rebalance --spread 10 > "$IT_DIR/run.out" 2>&1
rc=$?
grep -v '^  move bucket\|^bucket ' "$IT_DIR/run.out"
it_eq "--rebalance exits 0" "0" "$rc"
it_eq "it moved the buckets the dry run planned" "$moves" "$(grep -c '^bucket [0-9]* -> ' "$IT_DIR/run.out")"
it_check "the table moved on" test "$(version)" -gt "$v0"
after=$(R bytes 0 "$M1" "$M2" "$M3")
echo "bytes per master after: $after"
sp=${after##* spread }
it_check "the masters' bytes (MEMORY USAGE of every key) are within 10% ($sp%)" \
  awk -v s="$sp" 'BEGIN { exit !(s ~ /^[0-9.]+$/ && s <= 10) }'
it_eq "no key lost: $N keys on the masters" "$N" "$(( $(dbsizes | tr ' ' '+') ))"
it_check "every key reads back its value through the proxy" R check "$proxy_PORT" $N "$IT_DIR/big.list"

# ---------------------------------------------------------------- again: nothing to do
v1=$(version)
rb --rebalance --spread 10 > "$IT_DIR/again.out" 2>&1
it_eq "a second --rebalance moves nothing" "0 1 $v1" \
  "$? $(grep -c '^nothing to move in test' "$IT_DIR/again.out") $(version)"

# ---------------------------------------------------------------- --by keys
# $M1 gave away buckets: it now holds fewer keys than the others
rb --rebalance --by keys --spread 10 --dry-run > "$IT_DIR/keys.out" 2>&1
it_check "--by keys --dry-run plans moves onto $M1 (keys, not bytes)" \
  grep -q "^  move bucket [0-9]*: 127.0.0.1:\($M2\|$M3\) -> 127.0.0.1:$M1, " "$IT_DIR/keys.out"
grep '^rebalance\|^  master' "$IT_DIR/keys.out"

# ---------------------------------------------------------------- --dry-run of --del
v2=$(version); d2=$(dbsizes)
rb --del "127.0.0.1:$M3" --dry-run > "$IT_DIR/del.out" 2>&1
it_eq "--del --dry-run prints the plan and moves nothing" "0 1 1 $v2 $d2" \
  "$? $(grep -c "^plan: del 127.0.0.1:$M3 in namespace test" "$IT_DIR/del.out") $(grep -c '^dry run: nothing moved' "$IT_DIR/del.out") $(version) $(dbsizes)"
it_done
