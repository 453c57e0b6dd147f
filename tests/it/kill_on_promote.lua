-- kvlua tests/it/kill_on_promote.lua REPLICA_PORT PID SECONDS
-- Asks the replica ROLE as fast as one connection answers (password:
-- $KV_REDIS_PASSWORD) and sends SIGKILL to PID (the leader kvcs) the moment
-- the replica says it is a master -- right after the leader's REPLICAOF NO
-- ONE, before or while it writes the new table. Prints how long it watched;
-- status 1 when the replica never became a master within SECONDS.
local loop = require "kv.loop"
local redis = require "kv.redis"
local ffi = require "ffi"
ffi.cdef "int kill(int pid, int sig);"

local port, pid, seconds = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]) or 20
local status = 1
loop.run(function()
  local c = assert(redis.connect("127.0.0.1", port, { timeout = 2, password = os.getenv("KV_REDIS_PASSWORD") }))
  local t0 = loop.now()
  while loop.now() - t0 < seconds do
    local r = c:call("ROLE")
    if type(r) == "table" and r[1] == "master" then
      ffi.C.kill(pid, 9)
      print(("replica on %d became a master after %.3f s: SIGKILL sent to %d"):format(port, loop.now() - t0, pid))
      status = 0
      break
    end
  end
  if status ~= 0 then print("the replica never became a master") end
  c:close()
  loop.stop()
end)
return status
