-- kvlua tests/it/kill_when.lua PID SECONDS promoted REPLICA_PORT
-- kvlua tests/it/kill_when.lua PID SECONDS votes ETCD_ENDPOINTS PREFIX MASTER N
-- Sends SIGKILL to PID (the leader kvcs) the moment something happens,
-- polled as fast as one connection answers:
--   promoted  the replica (password $KV_REDIS_PASSWORD) says ROLE master:
--             right after the leader's REPLICAOF NO ONE, before or while it
--             writes the new table
--   votes     N distinct proxies' down votes for MASTER are in etcd (the
--             members' reports under PREFIX/<ns>/members/: the votes are in,
--             the leader's promotion about to start)
-- Prints what it saw and when; status 1 when it never happened in SECONDS.
local loop = require "kv.loop"
local redis = require "kv.redis"
local ffi = require "ffi"
ffi.cdef "int kill(int pid, int sig);"

local pid, seconds, what = tonumber(arg[1]), tonumber(arg[2]) or 20, arg[3]
local status = 1

local function promoted(port)
  local c = assert(redis.connect("127.0.0.1", tonumber(port), { timeout = 2, password = os.getenv("KV_REDIS_PASSWORD") }))
  return function()
    local r = c:call("ROLE")
    return type(r) == "table" and r[1] == "master"
  end
end

local function votes(endpoints, prefix, master, n)
  local cjson = require "cjson"
  local eps = {}
  for a in endpoints:gmatch("[^,]+") do eps[#eps + 1] = a end
  local client = require("kv.etcd").new({ endpoints = eps, timeout = 1 })
  return function()
    local kvs = client:range(prefix)
    local ids, count = {}, 0
    for _, kv in ipairs(kvs or {}) do
      if kv.key:find("/members/", 1, true) then
        local ok, r = pcall(cjson.decode, kv.value or "")
        local list = ok and type(r) == "table" and type(r.votes) == "table" and r.votes[master]
        for _, id in ipairs(type(list) == "table" and list or {}) do
          if not ids[id] then ids[id] = true count = count + 1 end
        end
      end
    end
    return count >= tonumber(n)
  end
end

loop.run(function()
  local seen = what == "promoted" and promoted(arg[4]) or votes(arg[4], arg[5], arg[6], arg[7])
  local t0 = loop.now()
  while loop.now() - t0 < seconds do
    if seen() then
      ffi.C.kill(pid, 9)
      print(("%s after %.3f s: SIGKILL sent to %d"):format(what, loop.now() - t0, pid))
      status = 0
      break
    end
  end
  if status ~= 0 then print(what .. ": never seen") end
  loop.stop()
end)
return status
