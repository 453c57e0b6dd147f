-- kvlua tests/it/txn.lua PORT: transactions through the proxy, as a client
-- sees them. One line per check ("ok - ..." / "FAILED - ..."); the shell
-- test (21_transactions.sh) checks the masters themselves.
local loop = require "kv.loop"
local redis = require "kv.redis"

local port = tonumber(arg[1])
local C = dofile(KV_ROOT .. "/tests/it/checks.lua")
local check, show = C.check, C.show

local function connect()
  return assert(redis.connect("127.0.0.1", port))
end

-- run each command, return the replies shown
local function run(c, cmds)
  local out = {}
  for i, cmd in ipairs(cmds) do
    local v, e = c:call(unpack(cmd))
    out[i] = v == nil and ("transport: " .. tostring(e)) or show(v)
  end
  return table.concat(out, " ")
end

local function expect(c, what, cmds, want)
  local got = run(c, cmds)
  check(what, got == want, "got " .. got .. ", expected " .. want)
end

loop.run(function()
  local c = connect()
  local other = connect()

  expect(c, "MULTI SET INCR EXEC: queued, then both replies",
    { { "DEL", "{t}a" }, { "MULTI" }, { "SET", "{t}a", "1" }, { "INCR", "{t}a" }, { "GET", "{t}a" }, { "EXEC" } },
    "0 +OK +QUEUED +QUEUED +QUEUED [+OK,2,2]")

  expect(c, "a key of another bucket: CROSSSLOT when queued, EXECABORT, nothing ran",
    { { "MULTI" }, { "SET", "{t}x", "1" }, { "SET", "{u}y", "1" }, { "EXEC" }, { "EXISTS", "{t}x" }, { "EXISTS", "{u}y" } },
    "+OK +QUEUED -CROSSSLOT Keys in request don't hash to the same bucket " ..
    "-EXECABORT Transaction discarded because of previous errors. 0 0")

  expect(c, "an unknown command: its error, EXECABORT, nothing ran",
    { { "MULTI" }, { "SET", "{t}x", "1" }, { "NOSUCHCMD" }, { "EXEC" }, { "EXISTS", "{t}x" } },
    "+OK +QUEUED -ERR unknown command 'NOSUCHCMD' -EXECABORT Transaction discarded because of previous errors. 0")

  expect(c, "an arity error: Redis's error, EXECABORT",
    { { "MULTI" }, { "INCR", "{t}x" }, { "GET" }, { "EXEC" }, { "EXISTS", "{t}x" } },
    "+OK +QUEUED -ERR wrong number of arguments for 'get' command " ..
    "-EXECABORT Transaction discarded because of previous errors. 0")

  expect(c, "a fan-out command inside MULTI is refused and aborts",
    { { "MULTI" }, { "INCR", "{t}x" }, { "DBSIZE" }, { "EXEC" }, { "EXISTS", "{t}x" } },
    "+OK +QUEUED -ERR command 'dbsize' is not supported by the proxy inside MULTI (a transaction runs on one master) " ..
    "-EXECABORT Transaction discarded because of previous errors. 0")

  expect(c, "DISCARD: nothing ran",
    { { "MULTI" }, { "SET", "{t}x", "1" }, { "DISCARD" }, { "EXISTS", "{t}x" } }, "+OK +QUEUED +OK 0")

  expect(c, "MULTI nested, EXEC/DISCARD without MULTI: Redis's errors, the transaction goes on",
    { { "MULTI" }, { "MULTI" }, { "PING" }, { "ECHO", "hi" }, { "EXEC" }, { "EXEC" }, { "DISCARD" } },
    "+OK -ERR MULTI calls can not be nested +QUEUED +QUEUED [+PONG,hi] -ERR EXEC without MULTI -ERR DISCARD without MULTI")

  expect(c, "an empty transaction", { { "MULTI" }, { "EXEC" } }, "+OK []")

  expect(c, "a transaction with no key (TIME, EVAL 0) runs on a master",
    { { "MULTI" }, { "EVAL", "return 7", "0" }, { "EXEC" } }, "+OK +QUEUED [7]")

  expect(c, "key names in EXEC's reply restored (LMPOP), values left alone",
    { { "DEL", "{t}l", "{t}v" }, { "SET", "{t}v", "12_abc" }, { "MULTI" }, { "RPUSH", "{t}l", "x", "y" },
      { "LMPOP", "1", "{t}l", "LEFT" }, { "GET", "{t}v" }, { "EXEC" } },
    "0 +OK +OK +QUEUED +QUEUED +QUEUED [2,[{t}l,[x]],12_abc]")

  -- WATCH
  run(c, { { "SET", "{t}w", "0" } })
  expect(c, "WATCH, nothing changed: EXEC runs",
    { { "WATCH", "{t}w" }, { "GET", "{t}w" }, { "MULTI" }, { "INCR", "{t}w" }, { "EXEC" } },
    "+OK 0 +OK +QUEUED [1]")
  local got = run(c, { { "WATCH", "{t}w" }, { "GET", "{t}w" } })
  run(other, { { "SET", "{t}w", "100" } })
  got = got .. " " .. run(c, { { "MULTI" }, { "INCR", "{t}w" }, { "EXEC" }, { "GET", "{t}w" } })
  check("WATCH, another client changes the key: EXEC answers nil, nothing ran",
    got == "+OK 1 +OK +QUEUED nil 100", got)
  got = run(c, { { "WATCH", "{t}w" }, { "UNWATCH" } })
  run(other, { { "SET", "{t}w", "5" } })
  got = got .. " " .. run(c, { { "MULTI" }, { "INCR", "{t}w" }, { "EXEC" } })
  check("UNWATCH: a change no longer aborts", got == "+OK +OK +OK +QUEUED [6]", got)
  got = run(c, { { "WATCH", "{t}w" } })
  run(other, { { "SET", "{t}w", "7" } })
  got = got .. " " .. run(c, { { "MULTI" }, { "SET", "{t}w", "8" }, { "DISCARD" }, { "MULTI" }, { "INCR", "{t}w" }, { "EXEC" } })
  check("DISCARD ends the WATCH too (as in Redis)", got == "+OK +OK +QUEUED +OK +OK +QUEUED [8]", got)
  expect(c, "WATCH inside MULTI is refused, the transaction goes on",
    { { "MULTI" }, { "WATCH", "{t}w" }, { "INCR", "{t}w" }, { "EXEC" } },
    "+OK -ERR WATCH inside MULTI is not allowed +QUEUED [9]")
  expect(c, "WATCH keys of two buckets: CROSSSLOT", { { "WATCH", "{t}w", "{u}w" } },
    "-CROSSSLOT Keys in request don't hash to the same bucket")

  -- the WATCH retry loop applications write: 4 clients add 25 each
  run(c, { { "SET", "{t}ctr", "0" } })
  local done = 0
  for w = 1, 4 do
    loop.spawn(function()
      local cw = connect()
      for _ = 1, 25 do
        while true do
          cw:call("WATCH", "{t}ctr")
          local v = tonumber(cw:call("GET", "{t}ctr"))
          cw:call("MULTI")
          cw:call("SET", "{t}ctr", tostring(v + 1))
          local r = cw:call("EXEC")
          if r ~= redis.null then break end
        end
      end
      cw:close()
      done = done + 1
    end)
  end
  while done < 4 do loop.sleep(0.05) end
  expect(c, "WATCH retry loops of 4 clients x 25 increments: no lost update", { { "GET", "{t}ctr" } }, "100")

  -- atomicity: while transactions increment two keys together, another
  -- client's MGET of both (same master) never sees one without the other,
  -- and a third client's commands share the connection meanwhile
  run(c, { { "MSET", "{t}c1", "0", "{t}c2", "0" } })
  local stop, bad, reads = false, 0, 0
  loop.spawn(function()
    local r = connect()
    while not stop do
      local v = r:call("MGET", "{t}c1", "{t}c2")
      reads = reads + 1
      if type(v) ~= "table" or v[1] ~= v[2] then bad = bad + 1 end
    end
    r:close()
  end)
  loop.spawn(function()
    local r = connect()
    while not stop do r:call("SET", "{t}noise", "x") end
    r:close()
  end)
  local txok = 0
  for _ = 1, 300 do
    c:call("MULTI")
    c:call("INCR", "{t}c1")
    c:call("SET", "{t}pad", string.rep("p", 100))
    c:call("INCR", "{t}c2")
    local r = c:call("EXEC")
    if type(r) == "table" and r.n == 3 then txok = txok + 1 end
  end
  stop = true
  loop.sleep(0.1)
  check("300 transactions ran whole", txok == 300, txok .. " of 300")
  check(string.format("no MGET saw half a transaction (%d reads)", reads), bad == 0 and reads > 0, bad .. " bad reads")

  -- owned connections are reused, not one per WATCH
  for _ = 1, 200 do
    c:call("WATCH", "{t}w")
    c:call("MULTI")
    c:call("INCR", "{t}w")
    c:call("EXEC")
  end
  expect(c, "200 WATCH/EXEC cycles", { { "GET", "{t}w" } }, "209")

  -- a client gone in the middle of a transaction: nothing ran
  local g = connect()
  run(g, { { "MULTI" }, { "SET", "{t}gone", "1" } })
  g:close()
  loop.sleep(0.2)
  expect(c, "a client that closes while queuing: nothing ran", { { "EXISTS", "{t}gone" } }, "0")

  c:close()
  other:close()
  C.summary()
  loop.stop()
end)
