-- raw_migrate.lua PASSWORD BATCH DST_PORT SRC_PORT...: the reference rate of
-- migration for scripts/bench.sh migrate -- what plain Redis servers reach
-- with no proxy, no config server and no bucket bookkeeping. One loop per
-- source, all sources in parallel (one coroutine each on kv.loop), each loop
-- fully synchronous: SCAN a page of keys (COUNT 1000), then MIGRATE them to
-- the destination BATCH keys per command, one MIGRATE at a time, then the
-- next page, until the cursor is back at 0. The keys leave the source (no
-- COPY), as they do with migration_tool.
-- Prints one line per source and a total:
--   src=<port> keys=<n> seconds=<s> rate=<keys/s>
--   total keys=<n> seconds=<s of the slowest loop> rate=<keys/s> errors=<n>
local loop = require "kv.loop"
local redis = require "kv.redis"

local pw, batch, dst = arg[1], tonumber(arg[2]), tonumber(arg[3])
local srcs = {}
for i = 4, #arg do srcs[#srcs + 1] = tonumber(arg[i]) end
assert(pw and batch and dst and #srcs > 0, "usage: raw_migrate.lua PASSWORD BATCH DST_PORT SRC_PORT...")

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
  local t0, moved, cursor = loop.now(), 0, "0"
  local keys, n = {}, 0
  repeat
    local r = assert(c:call("SCAN", cursor, "COUNT", "1000"))
    assert(type(r) == "table" and not r.err, "SCAN failed")
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      n = n + 1
      keys[n] = k
      if n == batch then moved = moved + migrate(c, keys, n); n = 0 end
    end
    -- the page's rest goes now: a key kept for later could be returned
    -- again by the next SCAN (twice in one MIGRATE is a BUSYKEY)
    if n > 0 then moved = moved + migrate(c, keys, n); n = 0 end
  until cursor == "0"
  results[#results + 1] = { port = port, keys = moved, seconds = loop.now() - t0 }
  c:close()
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
  local keys, secs = 0, 0
  table.sort(results, function(a, b) return a.port < b.port end)
  for _, r in ipairs(results) do
    print(("src=%d keys=%d seconds=%.3f rate=%.0f"):format(r.port, r.keys, r.seconds, r.keys / r.seconds))
    keys = keys + r.keys
    secs = math.max(secs, r.seconds)
  end
  print(("total keys=%d seconds=%.3f rate=%.0f errors=%d"):format(keys, secs, secs > 0 and keys / secs or 0, errors))
  loop.stop()
end)
