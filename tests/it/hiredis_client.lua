-- kvlua tests/it/hiredis_client.lua PORT PASSWORD SILENT_PORT
-- kv.redis over hiredis's async client against a real redis-server (with
-- requirepass PASSWORD): values in kv.resp's convention, pipelines, raw
-- sends, AUTH, timeouts, refused connects, a server that never answers
-- (SILENT_PORT: a free port this script listens on), a server that
-- drops the connection, close from every state. Prints "ok - what" or
-- "not ok - what: detail" per check; exit status 1 when one failed.
local loop = require "kv.loop"
local redis = require "kv.redis"
local resp = require "kv.resp"

local port, pw, silent = tonumber(arg[1]), arg[2], tonumber(arg[3])
local failed = 0

local function show(v)
  if v == nil then return "nil" end
  if v == resp.null then return "null" end
  if type(v) ~= "table" then return type(v) .. " " .. tostring(v) end
  if v.err then return "-" .. v.err end
  if v.status then return "+" .. v.status end
  local parts = {}
  for i = 1, v.n do parts[i] = show(v[i]) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

local function check(what, ok, detail)
  if ok then
    print("ok - " .. what)
  else
    failed = failed + 1
    print("not ok - " .. what .. ": " .. tostring(detail))
  end
end

local function same(what, want, got, err)
  check(what, show(want) == show(got), "want " .. show(want) .. ", got " .. show(got) .. " " .. tostring(err or ""))
end

local function main()
  local c, err = redis.connect("127.0.0.1", port, { password = pw, timeout = 2 })
  check("connect with AUTH", c ~= nil, err)
  if not c then return end

  same("status", resp.status("OK"), c:call("SET", "hc:k", "v\r\n\0x"))
  same("bulk, binary safe", "v\r\n\0x", c:call("GET", "hc:k"))
  same("null", resp.null, c:call("GET", "hc:none"))
  same("integer", 3, c:call("RPUSH", "hc:l", "a", 12, 1.5))
  same("numbers sent as kv.resp.encode writes them", { n = 3, "a", "12", "1.5" },
    c:call("LRANGE", "hc:l", 0, -1))
  same("error reply", resp.error("WRONGTYPE Operation against a key holding the wrong kind of value"),
    c:call("GET", "hc:l"))
  same("empty array", { n = 0 }, c:call("LRANGE", "hc:none", 0, -1))
  local nested = c:call("EVAL", "return {1, {'a', {false}}, redis.status_reply('S'), redis.error_reply('MYERR e')}", 0)
  same("nested array", { n = 4, 1, { n = 2, "a", { n = 1, resp.null } }, resp.status("S"), resp.error("MYERR e") },
    nested)
  local big = string.rep("x", 3 * 1024 * 1024)
  c:call("SET", "hc:big", big)
  local got = c:call("GET", "hc:big")
  check("3 MiB bulk", got == big, got and #tostring(got))

  local many = { n = 20001, "RPUSH", "hc:many" }
  for i = 3, many.n do many[i] = i % 2 == 0 and i or "k" .. i end
  assert(c:send(many))
  same("a command of 20001 arguments, strings and numbers", 19999, c:read_reply())
  local cmds = {}
  for i = 1, 500 do cmds[i] = { "INCR", "hc:n" } end
  local r = c:pipeline(cmds)
  check("pipeline of 500, replies in order", r and r[1] == 1 and r[500] == 500, r and show(r[500]))

  -- queued without waiting, read in order (as migration_tool does)
  assert(c:send_raw(resp.encode("ECHO", "one")))
  assert(c:send({ "ECHO", "two" }))
  same("send_raw then read_reply", "one", c:read_reply())
  same("send then read_reply", "two", c:read_reply())
  local none, nerr = c:read_reply()
  check("read_reply with nothing sent", none == nil and nerr == "no command waits for a reply", nerr)
  check("send_raw refuses what is not one command",
    not pcall(c.send_raw, c, "PING\r\n") and not pcall(c.send_raw, c, resp.encode("A") .. resp.encode("B"))
      and not pcall(c.send_raw, c, "*0\r\n"))
  check("pub/sub and MONITOR are refused",
    not pcall(c.call, c, "SUBSCRIBE", "x") and not pcall(c.send_raw, c, resp.encode("monitor")))
  check("bad arguments raise", not pcall(c.call, c, "GET", {}) and not pcall(c.call, c))
  same("still usable after refusals", resp.status("PONG"), c:call("PING"))

  -- a timeout closes the client (a late reply must not answer a later command)
  c.timeout = 0.3
  local t0 = loop.now()
  local v, terr = c:call("BLPOP", "hc:never", "0.6")
  local dt = loop.now() - t0
  check("a call times out after its timeout", v == nil and terr == "timeout" and dt >= 0.25 and dt < 0.6,
    tostring(terr) .. " after " .. dt)
  v, terr = c:call("PING")
  check("closed after a timeout", v == nil and terr == "closed: timeout", terr)

  -- AUTH
  local c3, aerr = redis.connect("127.0.0.1", port, { password = "wrong" })
  check("wrong password", c3 == nil and tostring(aerr):find("^AUTH failed: WRONGPASS") ~= nil, aerr)
  c3 = assert(redis.connect("127.0.0.1", port))
  same("no AUTH: NOAUTH as an error reply", resp.error("NOAUTH Authentication required."), c3:call("GET", "x"))
  c3:close()

  -- the server drops the connection: pending calls fail, later ones too
  local victim = assert(redis.connect("127.0.0.1", port, { password = pw }))
  local vid = victim:call("CLIENT", "ID")
  local killer = assert(redis.connect("127.0.0.1", port, { password = pw }))
  local waiting = victim:send({ "BLPOP", "hc:never", 0 })
  loop.spawn(function()
    loop.sleep(0.1)
    killer:call("CLIENT", "KILL", "ID", vid)
  end)
  v, terr = victim:read_reply(5)
  check("server closes: the waiting call fails at once", waiting and v == nil and tostring(terr):find("^closed: ") ~= nil,
    tostring(terr))
  v, terr = victim:call("PING")
  check("then every call fails", v == nil and tostring(terr):find("^closed: ") ~= nil, terr)
  victim:close()
  killer:close()

  -- refused and black-holed connects
  local rc, rerr = redis.connect("127.0.0.1", 1, { timeout = 1 })
  check("refused connect", rc == nil and tostring(rerr):find("^cannot connect to 127.0.0.1:1") ~= nil, rerr)
  -- a server that accepts and never answers: AUTH times out
  local held = {}
  assert(loop.listen("127.0.0.1", silent, function(sock) held[#held + 1] = sock end))
  t0 = loop.now()
  rc, rerr = redis.connect("127.0.0.1", silent, { password = pw, timeout = 0.3 })
  dt = loop.now() - t0
  check("silent server: AUTH times out", rc == nil and rerr == "timeout" and dt < 1, tostring(rerr) .. " after " .. dt)
  check("invalid address", redis.connect("no such host", 6379) == nil)

  -- close from another task while one waits; close twice; close before use
  local c4 = assert(redis.connect("127.0.0.1", port, { password = pw }))
  local res
  loop.spawn(function() res = { c4:call("BLPOP", "hc:never", 0) } end)
  c4:close()
  c4:close()
  loop.sleep(0.05)
  check("close wakes a waiting task", res and res[1] == nil and res[2] == "closed: closed locally", res and res[2])
  -- many connections opened and closed (ids are not reused; nothing leaks)
  for _ = 1, 200 do
    local x = assert(redis.connect("127.0.0.1", port, { password = pw }))
    x:send({ "PING" })
    x:close()
  end
  local last = assert(redis.connect("127.0.0.1", port, { password = pw }))
  same("after 200 connections", resp.status("PONG"), last:call("PING"))
  loop.sleep(0.2)
  local clients = last:call("CLIENT", "LIST")
  local n = select(2, tostring(clients):gsub("\n", ""))
  check("closed connections are gone from the server", n <= 3, n .. " clients")
  last:call("DEL", "hc:k", "hc:l", "hc:big", "hc:n", "hc:many")
  last:close()
end

loop.run(function()
  local ok, err = xpcall(main, debug.traceback)
  if not ok then
    failed = failed + 1
    print("not ok - crashed: " .. tostring(err))
  end
  loop.stop()
end)
return failed == 0 and 0 or 1 -- kvlua exits with it (after closing the Lua state)
