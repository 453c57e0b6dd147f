-- kvlua tests/it/notleader_cs.lua PORT LEADER|?
-- A stand-in for a kvcs follower's migration port (issue 14): after the
-- control ports' handshake ($KV_CLUSTER_SECRET) it answers PING, serves
-- TABLE from LEADER's migration port (a follower reads the shared store),
-- and refuses every other command with -ERR NOTLEADER LEADER, as a follower
-- does. With "?" (no leader known, an election) every command but PING is
-- refused with -ERR NOTLEADER ?. Each command is printed on stdout, with
-- what it got.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local handshake = require "kv.handshake"
local mt = require "tools.migration_tool"

local port, leader = tonumber(arg[1]), arg[2]
local secret = os.getenv("KV_CLUSTER_SECRET") or ""

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

local function answer(cmd)
  local name = type(cmd) == "table" and type(cmd[1]) == "string" and cmd[1]:upper() or ""
  if name == "PING" then return resp.status("PONG") end
  if name == "TABLE" and leader ~= "?" then
    local c, err = mt.dial(leader, secret)
    if not c then return resp.error("ERR cannot read the table: " .. tostring(err)) end
    local r = c:call("TABLE", cmd[2])
    c:close()
    return r
  end
  return resp.error("ERR NOTLEADER " .. leader)
end

local function serve(sock)
  local reader = resp.new_reader()
  if not handshake.server({ send = function(b) sock:send(b) end,
                            read = function() return redis.read_value(sock, reader, 5) end },
                          secret, sock.peer) then
    sock:close(true)
    return
  end
  while true do
    local cmd = redis.read_value(sock, reader, 3600)
    if not cmd then break end
    local r = answer(cmd)
    say("%s -> %s", type(cmd) == "table" and table.concat(cmd, " ", 1, math.min(cmd.n or #cmd, 4)) or "?",
      type(r) == "table" and (r.err or r.status) or "table")
    sock:send(resp.encode_reply(r))
  end
  sock:close()
end

loop.run(function()
  assert(loop.listen("127.0.0.1", port, serve))
  say("listening on %d, leader %s", port, leader)
  while true do loop.sleep(3600) end
end)
