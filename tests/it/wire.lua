-- Wire-level checks against a running proxy, run by kvlua:
--   kvlua tests/it/wire.lua PORT
-- 1. a pipeline sent one byte per TCP write gets the same replies, in order,
--    as the same pipeline sent at once;
-- 2. 2000 pipelined SET/GET/INCR over keys on every master come back in
--    request order with the right values;
-- 3. a protocol error is answered after the replies before it, then the
--    connection closes; the next connection works;
-- 4. 120 pipelined MGETs of cycling sizes (up to 1500 keys, over the size a
--    pooled request keeps) reusing pooled requests, each reply exact.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"

local port = tonumber(arg[1])
-- these connections write bytes of their own (inline commands, malformed
-- input, one byte per write): a socket read through hiredis's reader
local RAW = { raw = true }
local failed = 0
local function check(what, ok, detail)
  if ok then print("ok - " .. what)
  else
    failed = failed + 1
    print("FAILED - " .. what .. (detail and (": " .. detail) or ""))
  end
end

local function show(v)
  if type(v) == "table" then
    if v.err then return "-" .. v.err end
    if v.status then return "+" .. v.status end
    if v == resp.null then return "nil" end
    local parts = {}
    for i = 1, v.n do parts[i] = show(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return tostring(v)
end

local function read_n(c, n)
  local out = {}
  for i = 1, n do
    local v, err = c:read_reply(5)
    if v == nil then return nil, err end
    out[i] = show(v)
  end
  return out
end

local PIPE = table.concat({
  resp.encode("SET", "wire:a", "1"),
  "PING\r\n",
  resp.encode("INCR", "wire:a"),
  resp.encode("MSET", "wire:b", "x", "wire:c", "", "wire:d", "bin\0\r\nary"),
  "get wire:b\r\n",
  resp.encode("MGET", "wire:b", "wire:c", "wire:d", "wire:none", "wire:a"),
  'set "wire:q" "v\\x41l"\r\n',
  resp.encode("GET", "wire:q"),
  resp.encode("DEL", "wire:a", "wire:b", "wire:c", "wire:d", "wire:q"),
  resp.encode("ECHO", string.rep("z", 3000)),
})
local NREPLIES = 10

loop.run(function()
  -- 1. whole vs byte by byte
  local c = assert(redis.connect("127.0.0.1", port, RAW))
  c:send_raw(PIPE)
  local whole, err = read_n(c, NREPLIES)
  check("pipeline sent at once answered", whole ~= nil, err)
  local c2 = assert(redis.connect("127.0.0.1", port, RAW))
  for i = 1, #PIPE do
    c2:send_raw(PIPE:sub(i, i))
    if i % 7 == 0 then loop.sleep(0.001) end
  end
  local split, err2 = read_n(c2, NREPLIES)
  check("pipeline sent one byte per write answered", split ~= nil, err2)
  if whole and split then
    local same = table.concat(whole, "|") == table.concat(split, "|")
    check("same replies in the same order at any split", same,
      table.concat(whole, "|"):sub(1, 300) .. " vs " .. table.concat(split, "|"):sub(1, 300))
    check("merged MGET keeps order, empty string and binary values",
      whole[6] == "[x,,bin\0\r\nary,nil,2]", whole[6])
    check("inline quoted escapes decoded", whole[8] == "vAl", whole[8])
    check("DEL across masters sums", whole[9] == "5", whole[9])
  end
  c:close()
  c2:close()

  -- 2. deep pipeline order over every master
  local c3 = assert(redis.connect("127.0.0.1", port, RAW))
  local cmds, want = {}, {}
  for i = 1, 700 do
    local k = "wire:o:" .. i
    cmds[#cmds + 1] = resp.encode("SET", k, "v" .. i); want[#want + 1] = "+OK"
    cmds[#cmds + 1] = resp.encode("INCR", k .. ":n"); want[#want + 1] = "1"
    cmds[#cmds + 1] = resp.encode("GET", k); want[#want + 1] = "v" .. i
  end
  c3:send_raw(table.concat(cmds))
  local got, err3 = read_n(c3, #want)
  local bad
  if got then
    for i = 1, #want do
      if got[i] ~= want[i] then bad = ("reply %d: want %s got %s"):format(i, want[i], got[i]) break end
    end
  end
  check("2100 pipelined replies in request order", got ~= nil and bad == nil, err3 or bad)
  local dels = { "DEL" }
  for i = 1, 700 do dels[#dels + 1] = "wire:o:" .. i; dels[#dels + 1] = "wire:o:" .. i .. ":n" end
  local n = c3:call(unpack(dels))
  check("DEL of 1400 keys over every master", n == 1400, show(n))
  c3:close()

  -- 3. protocol error after good commands
  local c4 = assert(redis.connect("127.0.0.1", port, RAW))
  c4:send_raw("PING\r\n" .. resp.encode("GET", "wire:none") .. "*1\r\n12\r\nPING\r\n")
  local r = read_n(c4, 3)
  check("replies before a protocol error, then the error",
    r ~= nil and r[1] == "+PONG" and r[2] == "nil" and r[3] == "-ERR Protocol error: expected '$', got '1'",
    r and table.concat(r, "|"))
  local after, aerr = c4:read_reply(2)
  check("connection closed after a protocol error", after == nil and tostring(aerr):find("closed") ~= nil,
    tostring(aerr))
  c4:close()
  local c5 = assert(redis.connect("127.0.0.1", port, RAW))
  c5:send_raw("*1\r\n$1234567891011121314\r\nxx\r\n")
  local r5 = read_n(c5, 1)
  check("over-long bulk length refused", r5 and r5[1] == "-ERR Protocol error: invalid bulk length",
    r5 and r5[1])
  c5:close()
  local c6 = assert(redis.connect("127.0.0.1", port, RAW))
  c6:send_raw("no_such_cmd param\r\nget\r\n" .. resp.encode("") .. "PING\r\n")
  local r6 = read_n(c6, 4)
  check("unknown, wrong-arity and empty commands get errors and the connection stays",
    r6 and r6[1] == "-ERR unknown command 'no_such_cmd'"
      and r6[2] == "-ERR wrong number of arguments for 'get' command"
      and r6[3] == "-ERR unknown command ''" and r6[4] == "+PONG",
    r6 and table.concat(r6, "|"))
  c6:close()

  -- 4. pooled requests reused by MGETs of every size, in one pipeline
  local c7 = assert(redis.connect("127.0.0.1", port, RAW))
  local mset = { "MSET" }
  for i = 1, 1500 do mset[#mset + 1] = "wire:m:" .. i; mset[#mset + 1] = "v" .. i end
  check("MSET of 1500 keys", show(c7:call(unpack(mset))) == "+OK")
  local sizes, pipe, expect = { 2, 7, 1500, 3, 40, 1, 1100, 5 }, {}, {}
  for n = 1, 120 do
    local size, args, vals = sizes[(n - 1) % #sizes + 1], { "MGET" }, {}
    for j = 1, size do
      local i = (n * 37 + j * 11) % 1600 + 1 -- some keys past 1500: nil
      args[#args + 1] = "wire:m:" .. i
      vals[#vals + 1] = i <= 1500 and ("v" .. i) or "nil"
    end
    pipe[#pipe + 1] = resp.encode(unpack(args))
    expect[n] = "[" .. table.concat(vals, ",") .. "]"
  end
  c7:send_raw(table.concat(pipe))
  local got7, err7 = read_n(c7, #expect)
  local bad7
  for n = 1, got7 and #expect or 0 do
    if got7[n] ~= expect[n] then bad7 = ("MGET %d: %s"):format(n, got7[n]:sub(1, 200)) break end
  end
  check("120 pipelined MGETs of 1 to 1500 keys answered exactly", got7 ~= nil and bad7 == nil, err7 or bad7)
  local del = { "DEL" }
  for i = 1, 1500 do del[#del + 1] = "wire:m:" .. i end
  check("DEL of the 1500 keys", show(c7:call(unpack(del))) == "1500")
  c7:close()
  loop.stop()
end)
return failed == 0 and 0 or 1
