-- kvlua scripts/lib/kvctl.lua HOST:PORT COMMAND [ARG...]
-- One command on a config server's control port (e.g. the migration port:
-- TABLE ns, MIGRATE.START ...), after the handshake every control port
-- opens with (kv.handshake), the secret taken from $KV_CLUSTER_SECRET.
-- Prints the reply as redis-cli does when not on a terminal (a status or a
-- bulk as its text, an error as its message); exit 1 when the link or the
-- handshake fails. The scripts and tests use it where redis-cli no longer
-- can (redis-cli does not answer a challenge).
local loop = require "kv.loop"
local redis = require "kv.redis"
local handshake = require "kv.handshake"

local addr = arg[1]
local argv = {}
for i = 2, #arg do argv[#argv + 1] = arg[i] end
local status = 0

loop.run(function()
  local host, port = loop.split_addr(addr or "")
  local c, err = redis.connect(host, port, { raw = true, timeout = 120 })
  if c then
    local ok, herr = handshake.client({ send = function(b) return c:send_raw(b) end,
                                        read = function() return c:read_reply(5) end },
                                      os.getenv("KV_CLUSTER_SECRET") or "")
    if not ok then err, c = "handshake: " .. tostring(herr), c:close() end
  end
  if not c then
    io.stderr:write("kvctl: ", tostring(addr), ": ", tostring(err), "\n")
    status = 1
    loop.stop()
    return
  end
  local r, rerr = c:call(unpack(argv))
  if r == nil then
    io.stderr:write("kvctl: ", tostring(rerr), "\n")
    status = 1
  elseif type(r) == "table" and r.err then print(r.err)
  elseif type(r) == "table" and r.status then print(r.status)
  else print(tostring(r)) end
  c:close()
  loop.stop()
end)
return status -- not os.exit: the Lua state must close (the --asan pass checks leaks at exit)
