-- raw_migrate.lua [--buckets FILE] PASSWORD BATCH DST_PORT SRC_PORT...: the
-- reference rate of migration for scripts/bench.sh migrate -- what plain
-- Redis servers reach with no proxy, no config server and no bucket
-- bookkeeping. One loop per source, all sources in parallel (one coroutine
-- each on kv.loop), each loop fully synchronous: SCAN a page of keys (COUNT
-- 1000), then MIGRATE them to the destination BATCH keys per command, one
-- MIGRATE at a time, then the next page, until the cursor is back at 0. The
-- keys leave the source (no COPY), as they do with migration_tool.
-- With --buckets FILE (bucket numbers separated by blanks or newlines), only
-- the keys "<bucket>_..." whose bucket is in FILE move: the others are
-- scanned and stay -- the work migration_tool does when it moves those
-- buckets off masters that keep the rest. Without it every key moves.
-- Prints one line per source and a total:
--   src=<port> keys=<moved> scanned=<n> seconds=<s> rate=<keys moved/s>
--   total keys=<n> scanned=<n> seconds=<s of the slowest loop> rate=<keys/s> errors=<n>
-- then, with --buckets, untimed: a second SCAN of every server,
--   check set_left_on_sources=<n> others_on_destination=<n>
-- (both 0 when exactly the keys of the set moved).
local loop = require "kv.loop"
local redis = require "kv.redis"

local USAGE = "usage: raw_migrate.lua [--buckets FILE] PASSWORD BATCH DST_PORT SRC_PORT..."
local args, set = { unpack(arg) }, nil
if args[1] == "--buckets" then
  assert(args[2], USAGE)
  local f = assert(io.open(args[2]))
  set = {}
  for b in f:read("*a"):gmatch("%d+") do set[tonumber(b)] = true end
  f:close()
  table.remove(args, 1); table.remove(args, 1)
end
local pw, batch, dst = args[1], tonumber(args[2]), tonumber(args[3])
local srcs = {}
for i = 4, #args do srcs[#srcs + 1] = tonumber(args[i]) end
assert(pw and batch and dst and #srcs > 0, USAGE)

-- the key's bucket is in the set (always, with no set)
local function wanted(key)
  if not set then return true end
  local b = key:match("^(%d+)_")
  return b ~= nil and set[tonumber(b)] == true
end

local TIMEOUT_MS = 5000       -- MIGRATE's own I/O timeout, as the tool's
local results, errors = {}, 0

-- MIGRATE keys[1..n] from c to the destination; a NOKEY reply (nothing to
-- move) is fine, anything else counts as an error.
local function migrate(c, keys, n)
  local cmd = { "MIGRATE", "127.0.0.1", tostring(dst), "", "0", tostring(TIMEOUT_MS), "AUTH", pw, "KEYS" }
  for i = 1, n do cmd[#cmd + 1] = keys[i] end
  local r, err = c:call(unpack(cmd))
  if r == nil then error("MIGRATE: " .. tostring(err)) end
  if type(r) == "table" and r.err then
    errors = errors + 1
    io.stderr:write("MIGRATE: ", r.err, "\n")
    return 0
  end
  if r == "NOKEY" then return 0 end
  return n
end

local function one_source(port)
  local c = assert(redis.connect("127.0.0.1", port, { timeout = 60, password = pw }))
  local t0, moved, scanned, cursor = loop.now(), 0, 0, "0"
  local keys, n = {}, 0
  repeat
    local r = assert(c:call("SCAN", cursor, "COUNT", "1000"))
    assert(type(r) == "table" and not r.err, "SCAN failed")
    cursor = r[1]
    scanned = scanned + #r[2]
    for _, k in ipairs(r[2]) do
      if wanted(k) then
        n = n + 1
        keys[n] = k
        if n == batch then moved = moved + migrate(c, keys, n); n = 0 end
      end
    end
    -- the page's rest goes now: a key kept for later could be returned
    -- again by the next SCAN (twice in one MIGRATE is a BUSYKEY)
    if n > 0 then moved = moved + migrate(c, keys, n); n = 0 end
  until cursor == "0"
  results[#results + 1] = { port = port, keys = moved, scanned = scanned, seconds = loop.now() - t0 }
  c:close()
end

-- after the timed loops: the keys on PORT whose bucket is (IN true) or is
-- not (IN false) in the set
local function count(port, in_set)
  local c = assert(redis.connect("127.0.0.1", port, { timeout = 60, password = pw }))
  local cursor, n = "0", 0
  repeat
    local r = assert(c:call("SCAN", cursor, "COUNT", "1000"))
    assert(type(r) == "table" and not r.err, "SCAN failed")
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      if wanted(k) == in_set then n = n + 1 end
    end
  until cursor == "0"
  c:close()
  return n
end

loop.run(function()
  local me, left = coroutine.running(), #srcs
  for _, port in ipairs(srcs) do
    loop.spawn(function()
      local ok, err = pcall(one_source, port)
      if not ok then
        errors = errors + 1
        io.stderr:write("source ", port, ": ", tostring(err), "\n")
      end
      left = left - 1
      if left == 0 then loop.timer(0, function() coroutine.resume(me) end) end
    end)
  end
  coroutine.yield()
  local keys, scanned, secs = 0, 0, 0
  table.sort(results, function(a, b) return a.port < b.port end)
  for _, r in ipairs(results) do
    print(("src=%d keys=%d scanned=%d seconds=%.3f rate=%.0f"):format(r.port, r.keys, r.scanned, r.seconds,
      r.keys / r.seconds))
    keys, scanned = keys + r.keys, scanned + r.scanned
    secs = math.max(secs, r.seconds)
  end
  print(("total keys=%d scanned=%d seconds=%.3f rate=%.0f errors=%d"):format(keys, scanned, secs,
    secs > 0 and keys / secs or 0, errors))
  if set then
    local left = 0
    for _, port in ipairs(srcs) do left = left + count(port, true) end
    print(("check set_left_on_sources=%d others_on_destination=%d"):format(left, count(dst, false)))
  end
  loop.stop()
end)
