-- The no-loss checker (issue 4): run by kvlua while buckets move.
--   kvlua tests/it/noloss.lua PORT1,PORT2 SECONDS TASKS KEYS_PER_TASK [stopfile]
-- Each task owns its keys (so the expected state is exact) and works through
-- both proxies in turn, so a write through one proxy must be visible through
-- the other. Per key it uses one of four kinds:
--   SET   : k = the task's sequence number; a GET right after an acknowledged
--           SET (through the other proxy) must return it; no read may return
--           an older value than one already read or acknowledged
--   INCR  : the final value equals the acknowledged increments (plus at most
--           the ambiguous ones: a timeout or error may or may not have run)
--   LPUSH : every acknowledged element is in the final list
--   HSET  : every acknowledged field holds its last acknowledged value
-- It runs until SECONDS pass or stopfile exists, then waits a moment and
-- verifies everything through the first proxy. Prints the figures; exit 0
-- only when nothing was lost and no read went backwards.
local loop = require "kv.loop"
local redis = require "kv.redis"

local ports = {}
for p in tostring(arg[1]):gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
local seconds = tonumber(arg[2]) or 10
local ntasks = tonumber(arg[3]) or 4
local nkeys = tonumber(arg[4]) or 50
local stopfile = arg[5]
local run_id = tostring(math.floor(loop.now() * 1000) % 1000000)

local stats = { acked = 0, ambiguous = 0, reads = 0, backwards = 0, lost = 0, verified = 0, errors = 0 }
local failures = {}
local function fail(msg)
  if #failures < 20 then failures[#failures + 1] = msg end
end

local function stop_requested(deadline)
  if loop.now() >= deadline then return true end
  if stopfile then
    local f = io.open(stopfile, "r")
    if f then f:close() return true end
  end
  return false
end

local function is_err(v) return v == nil or (type(v) == "table" and v.err ~= nil) end

local function task(id, deadline, done)
  local conns = {}
  for i, p in ipairs(ports) do
    conns[i] = assert(redis.connect("127.0.0.1", p, { timeout = 10 }))
  end
  local keys = {}
  for k = 1, nkeys do
    local kind = ({ "set", "incr", "lpush", "hset" })[(k % 4) + 1]
    keys[k] = { name = ("nl:%s:%d:%d"):format(run_id, id, k), kind = kind, acked = 0, amb = 0,
                last_read = 0, elems = {}, fields = {} }
  end
  local seq, turn = 0, 0
  while not stop_requested(deadline) do
    local key = keys[math.random(nkeys)]
    turn = turn + 1
    local c = conns[(turn % #conns) + 1]
    local other = conns[((turn + 1) % #conns) + 1]
    seq = seq + 1
    if key.kind == "set" then
      local r = c:call("SET", key.name, tostring(seq))
      if is_err(r) then
        stats.ambiguous = stats.ambiguous + 1
        key.amb = seq -- may or may not be the value now
      else
        stats.acked = stats.acked + 1
        key.acked = seq
        key.amb = 0
        local g = other:call("GET", key.name)
        stats.reads = stats.reads + 1
        if not is_err(g) then
          local v = tonumber(g) or 0
          if v ~= seq then
            stats.backwards = stats.backwards + 1
            fail(("%s: GET through the other proxy after SET %d returned %s"):format(key.name, seq, tostring(g)))
          end
          key.last_read = v
        else
          stats.errors = stats.errors + 1
        end
      end
    elseif key.kind == "incr" then
      local r = c:call("INCR", key.name)
      if is_err(r) then key.amb = key.amb + 1; stats.ambiguous = stats.ambiguous + 1
      else
        key.acked = key.acked + 1
        stats.acked = stats.acked + 1
        if r < key.acked then
          stats.backwards = stats.backwards + 1
          fail(("%s: INCR returned %d after %d acknowledged increments"):format(key.name, r, key.acked))
        end
      end
    elseif key.kind == "lpush" then
      local r = c:call("LPUSH", key.name, tostring(seq))
      if is_err(r) then stats.ambiguous = stats.ambiguous + 1
      else key.elems[#key.elems + 1] = tostring(seq); stats.acked = stats.acked + 1 end
    else
      local field = "f" .. (seq % 7)
      local r = c:call("HSET", key.name, field, tostring(seq))
      if is_err(r) then stats.ambiguous = stats.ambiguous + 1; key.fields[field] = nil
      else key.fields[field] = tostring(seq); stats.acked = stats.acked + 1 end
    end
  end
  -- verify through the first proxy
  loop.sleep(0.5)
  local c = conns[1]
  for _, key in ipairs(keys) do
    if key.kind == "set" and key.acked > 0 then
      local g = tonumber(c:call("GET", key.name)) or 0
      stats.verified = stats.verified + 1
      if g ~= key.acked and not (key.amb > key.acked and g == key.amb) then
        stats.lost = stats.lost + 1
        fail(("%s: final value %d, last acknowledged %d"):format(key.name, g, key.acked))
      end
    elseif key.kind == "incr" and (key.acked > 0 or key.amb > 0) then
      local g = tonumber(c:call("GET", key.name)) or 0
      stats.verified = stats.verified + 1
      if g < key.acked or g > key.acked + key.amb then
        stats.lost = stats.lost + 1
        fail(("%s: counter %d, acknowledged increments %d (+%d ambiguous)"):format(key.name, g, key.acked, key.amb))
      end
    elseif key.kind == "lpush" and #key.elems > 0 then
      local list = c:call("LRANGE", key.name, "0", "-1")
      local have = {}
      for i = 1, (type(list) == "table" and list.n or 0) do have[list[i]] = true end
      for _, e in ipairs(key.elems) do
        stats.verified = stats.verified + 1
        if not have[e] then
          stats.lost = stats.lost + 1
          fail(("%s: acknowledged element %s missing"):format(key.name, e))
        end
      end
    elseif key.kind == "hset" then
      for field, v in pairs(key.fields) do
        stats.verified = stats.verified + 1
        local g = c:call("HGET", key.name, field)
        if g ~= v then
          stats.lost = stats.lost + 1
          fail(("%s: field %s is %s, last acknowledged %s"):format(key.name, field, tostring(g), v))
        end
      end
    end
  end
  -- clean up
  for _, key in ipairs(keys) do c:call("DEL", key.name) end
  for _, cc in ipairs(conns) do cc:close() end
  done()
end

local rc = 1
loop.run(function()
  local deadline = loop.now() + seconds
  local left = ntasks
  local me = coroutine.running()
  for i = 1, ntasks do
    loop.spawn(task, i, deadline, function()
      left = left - 1
      if left == 0 then loop.timer(0, function() coroutine.resume(me) end) end
    end)
  end
  coroutine.yield()
  print(("no-loss checker: writes acknowledged %d, ambiguous %d, reads after writes %d, values verified %d, lost %d, reads gone backwards %d, read errors %d")
    :format(stats.acked, stats.ambiguous, stats.reads, stats.verified, stats.lost, stats.backwards, stats.errors))
  for _, f in ipairs(failures) do print("  " .. f) end
  rc = (stats.lost == 0 and stats.backwards == 0 and stats.acked > 0) and 0 or 1
  loop.stop()
end)
return rc
