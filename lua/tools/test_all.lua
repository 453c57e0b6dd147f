-- tools.test_all: functional test of the proxy (SPEC §8).
--
--   test_all [-h HOST] [-p PORT] [-l LOOPS] [-a PASSWORD]
--
-- Runs, once, the protocol-error checks (each on a new connection), then per
-- loop the command groups with random keys, on one connection; prints each
-- passing check (green on a terminal); on the first failure prints it (red)
-- with the expected and actual values, deletes the keys it made and exits 1.
-- After all loops: QUIT, "PASSED ALL TEST", exit 0. Every read has a timeout;
-- a timeout is a failure. Bad arguments: usage on stderr, exit 2.
--
-- --tolerate-unavailable (for runs across an HA fail-over, TEST_GUIDE 4): a
-- check whose actual reply is the proxy's "backend ... unavailable" or
-- "request timeout" error does not fail the run; the loop it happened in is
-- abandoned (its keys deleted, best effort) and run again after a short
-- pause. Any other failure still fails at once, and so does a stretch of
-- more than UNAVAILABLE_LIMIT seconds of such errors only. The summary says
-- how many loops were restarted and over which period.
--
-- Hidden flag --direct: the target is a plain redis-server, not the proxy;
-- the checks whose answer only the proxy gives (CROSSSLOT, unsupported
-- commands, SELECT 1) are skipped and the texts Redis extends (unknown
-- command) are matched by prefix. Used to check this tool itself.
local loop = require "kv.loop"
local redis = require "kv.redis"
local core = require "kv.core"
local check = require "tools.check"
local resp3 = require "tools.resp3"

local M = {}

local null = redis.null
local OK = check.OK
local TIMEOUT = 5
local USAGE = "usage: test_all [-h HOST] [-p PORT] [-l LOOPS] [-a PASSWORD] [--tolerate-unavailable]"
local UNAVAILABLE_LIMIT = 60 -- seconds of nothing but tolerated errors

local Failure = {} -- metatable of the error object raised by a failed check
local Retry = {}   -- ... by a tolerated one (--tolerate-unavailable)

-- The errors the proxy gives while a master is down or being replaced.
local function tolerable(actual_text)
  return actual_text:find("ERR backend [^ ]+ unavailable") ~= nil
      or actual_text:find("ERR request timeout", 1, true) ~= nil
end

--------------------------------------------------------------------------------
-- Arguments
--------------------------------------------------------------------------------

local function parse_args(argv)
  local o = { host = "127.0.0.1", port = 7400, loops = 1, direct = false }
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    i = i + 1
    if a == "--direct" then
      o.direct = true
    elseif a == "--tolerate-unavailable" then
      o.tolerate = true
    elseif a == "--help" then
      return nil, nil
    else
      local flag, v = a:match("^%-([hpla])(.*)$")
      if not flag then return nil, "unknown argument '" .. a .. "'" end
      if v == "" then
        v = argv[i]
        i = i + 1
        if v == nil then return nil, "option -" .. flag .. " needs a value" end
      end
      if flag == "h" then
        if v == "" then return nil, "empty host" end
        o.host = v
      elseif flag == "p" then
        local p = tonumber(v)
        if not v:find("^%d+$") or not p or p < 1 or p > 65535 then
          return nil, "bad port '" .. v .. "'"
        end
        o.port = p
      elseif flag == "l" then
        local n = tonumber(v)
        if not v:find("^%d+$") or not n or n < 1 then
          return nil, "bad loop count '" .. v .. "' (a positive integer)"
        end
        o.loops = n
      else
        o.password = v
      end
    end
  end
  return o
end

--------------------------------------------------------------------------------
-- The runner
--------------------------------------------------------------------------------

local T = {}
T.__index = T

local function new_runner(o)
  return setmetatable({ o = o, rep = check.reporter(core.isatty(1)), keys = {},
                        tolerated = 0, restarts = 0 }, T)
end

function T:fail(group, what, expected_text, actual_text, why)
  if self.o.tolerate and self.in_loop and tolerable(actual_text) then
    local now = loop.now()
    self.tolerated = self.tolerated + 1
    self.first_tolerated = self.first_tolerated or now
    self.last_tolerated = now
    self.unavailable_since = self.unavailable_since or now
    if now - self.unavailable_since <= UNAVAILABLE_LIMIT then
      self.rep:plain("[" .. group .. "] " .. what .. " → " .. actual_text
        .. " (tolerated: this loop starts again)", "yellow")
      error(setmetatable({}, Retry), 0)
    end
    why = ("only unavailable/timeout errors for more than %d s"):format(UNAVAILABLE_LIMIT)
  end
  self.rep:fail(group, what, expected_text, actual_text, why)
  error(setmetatable({}, Failure), 0)
end

-- raw: a connection that writes bytes of its own (kv.redis's raw client)
function T:connect(group, raw)
  local o = self.o
  local c, err = redis.connect(o.host, o.port, { timeout = TIMEOUT, password = o.password, raw = raw })
  if not c then
    self:fail(group, "connect to " .. o.host .. ":" .. o.port,
              "a connection" .. (o.password and " (and AUTH OK)" or ""), "(" .. tostring(err) .. ")")
  end
  return c
end

-- A new random key "<prefix>_<n>", remembered for the cleanup check.
function T:key(prefix)
  local k = prefix .. "_" .. math.random(1, 999999999)
  self.keys[#self.keys + 1] = k
  return k
end

-- Send one command, check its reply, print the check. Returns the reply.
function T:expect(group, args, exp, c, prefix)
  c = c or self.c
  local what = (prefix or "") .. check.label(args)
  local r, err = c:call(unpack(args, 1, args.n or #args))
  if r == nil then
    self:fail(group, what, check.describe(exp), "(connection error: " .. tostring(err) .. ")")
  end
  local ok, why = check.match(exp, r)
  if not ok then self:fail(group, what, check.describe(exp), check.show(r), why) end
  self.rep:pass(group, what, check.show(r))
  return r
end

-- A command sent without printing; a transport error is a failure.
function T:call(group, args)
  local r, err = self.c:call(unpack(args, 1, args.n or #args))
  if r == nil then
    self:fail(group, check.label(args), "a reply", "(connection error: " .. tostring(err) .. ")")
  end
  return r
end

-- g(expect, cmd, args...) for the checks of one group.
function T:group(name)
  return function(exp, ...)
    return self:expect(name, { n = select("#", ...), ... }, exp)
  end
end

-- Send cmds as one pipeline and check every reply in order. With `each`,
-- one line per reply, else one line for the whole pipeline (`desc`).
function T:pipeline(group, cmds, exps, each, desc)
  local n = #cmds
  local what = desc or ("pipeline of " .. n .. " commands")
  local replies, err = self.c:pipeline(cmds)
  if not replies then
    self:fail(group, what, n .. " replies", "(connection error: " .. tostring(err) .. ")")
  end
  for i = 1, n do
    local ok, why = check.match(exps[i], replies[i])
    local line = "pipeline #" .. i .. " " .. check.label(cmds[i])
    if not ok then
      self:fail(group, line, check.describe(exps[i]), check.show(replies[i]), why)
    end
    if each then self.rep:pass(group, line, check.show(replies[i])) end
  end
  if not each then self.rep:pass(group, what, n .. " replies, all as expected, in order") end
end

-- Error text of an unknown command: exact from the proxy, Redis adds
-- ", with args beginning with: ...".
function T:unknown_err(name)
  local text = "ERR unknown command '" .. name .. "'"
  if self.o.direct then return check.err_prefix(text) end
  return check.err(text)
end

--------------------------------------------------------------------------------
-- Protocol errors (once, each on a new connection)
--------------------------------------------------------------------------------

function T:raw_check(bytes, exp, closes)
  local group = "protocol"
  local c = self:connect(group, true)
  local what = "raw " .. check.quote(bytes)
  local ok, err = c:send_raw(bytes)
  if not ok then self:fail(group, what, check.describe(exp), "(connection error: " .. tostring(err) .. ")") end
  local r
  r, err = c:read_reply()
  if r == nil then
    self:fail(group, what, check.describe(exp), "(connection error: " .. tostring(err) .. ")")
  end
  local why
  ok, why = check.match(exp, r)
  if not ok then self:fail(group, what, check.describe(exp), check.show(r), why) end
  self.rep:pass(group, what, check.show(r))
  if closes then
    local r2, err2 = c:read_reply(TIMEOUT)
    local then_what = "after " .. what
    if r2 ~= nil then
      self:fail(group, then_what, "the connection closed by the server", "another reply: " .. check.show(r2))
    elseif not tostring(err2):find("^closed") then
      self:fail(group, then_what, "the connection closed by the server", "(" .. tostring(err2) .. ")")
    end
    self.rep:pass(group, then_what, "connection closed by the server")
  else
    -- not a protocol error: the connection stays usable
    self:expect(group, { "PING" }, check.status("PONG"), c, "after " .. what .. ": ")
  end
  c:close()
end

function T:protocol_checks()
  self:raw_check("*1\r\n$0\r\n\r\n", check.any_error(), false)
  self:raw_check("*1\r\n12\r\n", check.err("ERR Protocol error: expected '$', got '1'"), true)
  self:raw_check("*1\r\n$1234567891011121314\r\nxx\r\n", check.err("ERR Protocol error: invalid bulk length"), true)
  self:raw_check("no_such_cmd param\r\n", self:unknown_err("no_such_cmd"), false)
  self:raw_check("get\r\n", check.err("ERR wrong number of arguments for 'get' command"), false)
end

--------------------------------------------------------------------------------
-- The groups of the old test_all (reference §5.3)
--------------------------------------------------------------------------------

function T:basic()
  local g = self:group("basic")
  g(check.status("PONG"), "PING")
  g(check.not_error(), "RANDOMKEY")
end

function T:string()
  local g = self:group("string")
  local k = self:key("str_key")
  local k1, k2, k3 = self:key("str_key1"), self:key("str_key2"), self:key("str_key3")
  local kex = self:key("str_key_ex")
  local i = self:key("int_key")
  local b = self:key("bit_key")
  g(OK, "SET", k, "str_value")
  g("str_value", "GET", k)
  g(16, "APPEND", k, "_append")
  g(16, "STRLEN", k)
  g("str_", "GETRANGE", k, "0", "3")
  g(16, "SETRANGE", k, "4", "test")
  g("str_teste_append", "GET", k)
  g(OK, "MSET", k1, "value1", k2, "value2", k3, "value3")
  g({ n = 3, "value1", "value2", "value3" }, "MGET", k1, k2, k3)
  g(OK, "SETEX", kex, "30", "str_value_ex")
  g("str_value_ex", "GET", kex)
  g(0, "SETNX", k, "other_value")
  g(1, "INCR", i)
  g(8, "INCRBY", i, "7")
  g(7, "DECR", i)
  g(5, "DECRBY", i, "2")
  g("5", "GETSET", i, "2")
  g(1, "EXPIRE", k, "30")
  g(check.int_between(1, 30), "TTL", k)
  g(check.status("string"), "TYPE", k)
  g(1, "EXISTS", k)
  g(0, "SETBIT", b, "7", "1")
  g(1, "GETBIT", b, "7")
  g(1, "BITCOUNT", b)
  g(7, "DEL", k, k1, k2, k3, kex, i, b)
end

function T:hash()
  local g = self:group("hash")
  local h, h2 = self:key("hash_key"), self:key("hash_key2")
  g(1, "HSET", h, "hash_field1", "hash_value1")
  g(1, "HSET", h, "hash_field2", "hash_value2")
  g("hash_value1", "HGET", h, "hash_field1")
  g(null, "HGET", h, "hash_field_none")
  g(2, "HLEN", h)
  g(1, "HEXISTS", h, "hash_field1")
  g(2, "HDEL", h, "hash_field1", "hash_field2")
  g(OK, "HMSET", h, "field1", "value1", "field2", "value2", "field3", "value3")
  g({ n = 3, "value1", "value2", null }, "HMGET", h, "field1", "field2", "nofield")
  g(check.array_len(6, "[1] = field1, [2] = value1", function(a)
    return a[1] == "field1" and a[2] == "value1"
  end), "HGETALL", h)
  g(2, "HINCRBY", h2, "f", "2")
  g("3.5", "HINCRBYFLOAT", h2, "f", "1.5")
  g(1, "HSETNX", h, "field4", "value4")
  g(0, "HSETNX", h, "field1", "value_new")
  g(check.array_len(4), "HKEYS", h)
  g(check.array_len(4), "HVALS", h)
  g(2, "DEL", h, h2)
end

function T:set()
  local g = self:group("set")
  local s = self:key("set_key")
  g(3, "SADD", s, "aaa", "bbb", "ccc")
  g(3, "SCARD", s)
  g(check.array_len(3), "SMEMBERS", s)
  g(1, "SISMEMBER", s, "aaa")
  g(check.one_of({ "aaa", "bbb", "ccc" }), "SPOP", s)
  g(check.one_of({ "aaa", "bbb", "ccc" }), "SRANDMEMBER", s)
  g(2, "SREM", s, "aaa", "bbb", "ccc")
  g(0, "DEL", s) -- the set is empty, so already gone
end

function T:zset()
  local g = self:group("zset")
  local z = self:key("zset_key")
  g(6, "ZADD", z, "1", "one", "2", "two", "3", "three", "4", "four", "5", "five", "6", "six")
  g(6, "ZCARD", z)
  g(3, "ZCOUNT", z, "1", "3")
  g(2, "ZREMRANGEBYRANK", z, "0", "1")
  g(1, "ZRANK", z, "four")
  g(1, "ZREM", z, "three")
  g({ n = 2, "four", "five" }, "ZRANGE", z, "0", "1")
  g({ n = 4, "four", "4", "five", "5" }, "ZRANGE", z, "0", "1", "WITHSCORES")
  g(check.array_len(3), "ZRANGEBYSCORE", z, "0", "10")
  g(1, "ZREMRANGEBYSCORE", z, "1", "4")
  g({ n = 2, "six", "five" }, "ZREVRANGE", z, "0", "-1")
  g({ n = 1, "five" }, "ZREVRANGEBYSCORE", z, "5", "4")
  g(1, "ZREVRANK", z, "five")
  g("5", "ZSCORE", z, "five")
  g("8", "ZINCRBY", z, "2", "six")
  g(1, "DEL", z)
end

function T:list()
  local g = self:group("list")
  local l = self:key("list_key")
  local none = self:key("list_no_key")
  g(1, "LPUSH", l, "two")
  g(2, "LPUSH", l, "one")
  g(3, "RPUSH", l, "three")
  g(4, "RPUSH", l, "four")
  g(4, "LLEN", l)
  g("two", "LINDEX", l, "1")
  g("one", "LPOP", l)
  g("four", "RPOP", l)
  g({ n = 2, "two", "three" }, "LRANGE", l, "0", "1")
  g(3, "LINSERT", l, "BEFORE", "two", "one")
  g(1, "LREM", l, "1", "three")
  g(OK, "LSET", l, "0", "zero")
  g(OK, "LTRIM", l, "1", "2")
  g(2, "RPUSHX", l, "ten")
  g({ n = 2, "two", "ten" }, "LRANGE", l, "0", "-1")
  g(0, "LPUSHX", none, "nine")
  g(1, "DEL", l)
end

function T:hyperloglog()
  local g = self:group("hyperloglog")
  local p1, p2 = self:key("hll_key1"), self:key("hll_key2")
  g(1, "PFADD", p1, "a", "b", "c", "d", "e", "f", "g")
  g(1, "PFADD", p2, "h", "i", "j", "k", "l", "m", "n", "o", "p", "q")
  g(7, "PFCOUNT", p1)
  g(10, "PFCOUNT", p2)
  g(2, "DEL", p1, p2)
end

function T:pipeline_group()
  local group = "pipeline"
  local k1, k2 = self:key("pipe_key1"), self:key("pipe_key2")
  self:pipeline(group,
    { { "SET", k1, "1" }, { "INCR", k1 }, { "INCRBY", k1, "6" },
      { "SET", k2, "2" }, { "INCR", k2 }, { "INCRBY", k2, "6" } },
    { OK, 2, 8, OK, 3, 9 }, true)
  self:expect(group, { "DEL", k1, k2 }, 2)

  -- 100 commands: SET then GET of 50 keys, interleaved, over many buckets
  local cmds, exps, keys = {}, {}, {}
  for i = 1, 50 do
    local k = self:key("pipe_many_key")
    local v = "pipe_value_" .. i .. "_" .. math.random(1, 999999)
    keys[i] = k
    cmds[#cmds + 1] = { "SET", k, v }
    exps[#exps + 1] = OK
    cmds[#cmds + 1] = { "GET", k }
    exps[#exps + 1] = v
  end
  self:pipeline(group, cmds, exps, false, "pipeline of 100 commands (SET k_i v_i; GET k_i for 50 keys)")
  local del = { "DEL", unpack(keys) }
  self:expect(group, del, 50)
end

--------------------------------------------------------------------------------
-- Multi-key commands split by bucket, and CROSSSLOT
--------------------------------------------------------------------------------

function T:multikey()
  local group = "multikey"
  local g = self:group(group)
  local ks, vs = {}, { "mk_value1", "", "mk_value3", "mk value 4", "mk_\r\n\0_value5", "mk_value6" }
  for i = 1, 6 do ks[i] = self:key("mk_key" .. i) end
  local missing = self:key("mk_missing")
  g(OK, "MSET", ks[1], vs[1], ks[2], vs[2], ks[3], vs[3], ks[4], vs[4], ks[5], vs[5], ks[6], vs[6])
  g({ n = 7, vs[1], vs[2], vs[3], null, vs[4], vs[5], vs[6] },
    "MGET", ks[1], ks[2], ks[3], missing, ks[4], ks[5], ks[6])
  g("", "GET", ks[2])
  g(6, "EXISTS", ks[1], ks[2], ks[3], ks[4], ks[5], ks[6], missing)
  g(6, "DEL", ks[1], ks[2], ks[3], ks[4], ks[5], ks[6], missing)
  g({ n = 3, null, null, null }, "MGET", ks[1], ks[4], ks[6])
  g(0, "EXISTS", ks[1], ks[2], ks[3], ks[4], ks[5], ks[6])

  -- RENAME across buckets: try names until the proxy says CROSSSLOT
  if not self.o.direct then
    local crossslot = check.err("CROSSSLOT Keys in request don't hash to the same bucket")
    local done = false
    for _ = 1, 20 do
      local a, b = self:key("rename_src"), self:key("rename_dst")
      self:expect(group, { "SET", a, "rename_value" }, OK)
      local args = { "RENAME", a, b }
      local r = self:call(group, args)
      if check.match(crossslot, r) then
        self.rep:pass(group, check.label(args), check.show(r))
        g("rename_value", "GET", a)
        g(1, "DEL", a)
        done = true
        break
      elseif check.match(OK, r) then
        -- both in one bucket: undo and try other names
        self.rep:plain("[" .. group .. "] " .. check.label(args) .. " → OK (same bucket; trying other names)")
        g(1, "DEL", b)
      else
        self:fail(group, check.label(args), check.describe(crossslot) .. " or OK", check.show(r))
      end
    end
    if not done then
      self:fail(group, "RENAME across buckets (20 pairs of names)", check.describe(crossslot),
                "OK every time")
    end
  end

  -- RENAME within one bucket thanks to a hash tag
  local tag = "{tag" .. math.random(1, 999999999) .. "}"
  local a, b = self:key(tag .. "rename_src"), self:key(tag .. "rename_dst")
  g(OK, "SET", a, "tagged_value")
  g(OK, "RENAME", a, b)
  g("tagged_value", "GET", b)
  g(null, "GET", a)
  g(1, "DEL", b)
end

--------------------------------------------------------------------------------
-- Newer commands (Redis 6.2 / 7) and error paths
--------------------------------------------------------------------------------

function T:siblings()
  local g = self:group("siblings")
  local direct = self.o.direct

  -- GETDEL, GETEX
  local k = self:key("sib_getdel")
  g(OK, "SET", k, "getdel_value")
  g("getdel_value", "GETDEL", k)
  g(null, "GETDEL", k)
  g(0, "EXISTS", k)
  local kx = self:key("sib_getex")
  g(OK, "SET", kx, "getex_value")
  g(-1, "TTL", kx)
  g("getex_value", "GETEX", kx, "EX", "100")
  g(check.int_between(1, 100), "TTL", kx)
  g("getex_value", "GETEX", kx, "PERSIST")
  g(-1, "TTL", kx)

  -- SET options
  local ks, knone = self:key("sib_set"), self:key("sib_set_none")
  g(OK, "SET", ks, "a", "NX")
  g(null, "SET", ks, "b", "NX")
  g(OK, "SET", ks, "c", "XX")
  g(null, "SET", knone, "x", "XX")
  g(0, "EXISTS", knone)
  g("c", "SET", ks, "d", "GET")
  g(null, "SET", knone, "y", "GET")
  g("y", "GET", knone)
  g(OK, "SET", ks, "e", "EX", "100")
  g(OK, "SET", ks, "f", "KEEPTTL")
  g(check.int_between(1, 100), "TTL", ks)
  g("f", "GET", ks)

  -- LPOS
  local l = self:key("sib_list")
  g(8, "RPUSH", l, "a", "b", "c", "1", "2", "3", "c", "c")
  g(2, "LPOS", l, "c")
  g(6, "LPOS", l, "c", "RANK", "2")
  g(7, "LPOS", l, "c", "RANK", "-1")
  g({ n = 3, 2, 6, 7 }, "LPOS", l, "c", "COUNT", "0")
  g(null, "LPOS", l, "nothing")

  -- ZADD options
  local z = self:key("sib_zset")
  g(2, "ZADD", z, "1", "a", "2", "b")
  g(1, "ZADD", z, "NX", "5", "a", "3", "c")
  g("1", "ZSCORE", z, "a")
  g(0, "ZADD", z, "XX", "10", "a", "4", "d")
  g("10", "ZSCORE", z, "a")
  g(null, "ZSCORE", z, "d")
  g(1, "ZADD", z, "XX", "CH", "11", "a")
  g(1, "ZADD", z, "GT", "CH", "5", "a", "20", "b")
  g({ n = 2, "11", "20" }, "ZMSCORE", z, "a", "b")
  g("8", "ZADD", z, "INCR", "5", "c")
  g(null, "ZADD", z, "NX", "INCR", "1", "c")

  -- ZRANGE with BYSCORE / REV / LIMIT
  local z2 = self:key("sib_zrange")
  g(5, "ZADD", z2, "1", "one", "2", "two", "3", "three", "4", "four", "5", "five")
  g({ n = 3, "two", "three", "four" }, "ZRANGE", z2, "2", "4", "BYSCORE")
  g({ n = 3, "four", "three", "two" }, "ZRANGE", z2, "4", "2", "BYSCORE", "REV")
  g({ n = 2, "three", "four" }, "ZRANGE", z2, "(1", "+inf", "BYSCORE", "LIMIT", "1", "2")
  g({ n = 4, "five", "5", "four", "4" }, "ZRANGE", z2, "0", "1", "REV", "WITHSCORES")

  -- HRANDFIELD
  local h = self:key("sib_hash")
  local fields = { f1 = "v1", f2 = "v2", f3 = "v3" }
  g(3, "HSET", h, "f1", "v1", "f2", "v2", "f3", "v3")
  g(check.array_len(2, "distinct fields of the hash", function(a)
    return fields[a[1]] ~= nil and fields[a[2]] ~= nil and a[1] ~= a[2]
  end), "HRANDFIELD", h, "2")
  g(check.array_len(4, "field, its value, field, its value", function(a)
    return fields[a[1]] == a[2] and fields[a[3]] == a[4] and a[1] ~= a[3]
  end), "HRANDFIELD", h, "2", "WITHVALUES")
  g(check.one_of({ "f1", "f2", "f3" }), "HRANDFIELD", h)
  g(null, "HRANDFIELD", self:key("sib_hash_none"))

  -- SMISMEMBER
  local s = self:key("sib_set_members")
  g(3, "SADD", s, "a", "b", "c")
  g({ n = 3, 1, 0, 1 }, "SMISMEMBER", s, "a", "x", "c")

  -- LMPOP on one key (the reply names the key)
  local l2 = self:key("sib_lmpop")
  g(3, "RPUSH", l2, "x", "y", "z")
  g({ n = 2, l2, { n = 2, "x", "y" } }, "LMPOP", "1", l2, "LEFT", "COUNT", "2")
  g({ n = 2, l2, { n = 1, "z" } }, "LMPOP", "1", l2, "RIGHT")
  g(null, "LMPOP", "1", l2, "LEFT")

  -- COPY within a hash tag
  local tag = "{sib" .. math.random(1, 999999999) .. "}"
  local src, dst = self:key(tag .. "copy_src"), self:key(tag .. "copy_dst")
  g(OK, "SET", src, "copy_value")
  g(1, "COPY", src, dst)
  g("copy_value", "GET", dst)
  g(0, "COPY", src, dst)
  g(2, "DEL", src, dst)

  -- OBJECT ENCODING
  local ko = self:key("sib_object")
  g(OK, "SET", ko, "12345")
  g("int", "OBJECT", "ENCODING", ko)
  g(null, "OBJECT", "ENCODING", self:key("sib_object_none"))

  -- EVAL with one key
  local ke = self:key("sib_eval")
  g(OK, "SET", ke, "eval_value")
  g("eval_value", "EVAL", "return redis.call('GET', KEYS[1])", "1", ke)
  g(OK, "EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", ke, "eval_new")
  g("eval_new", "GET", ke)

  -- error paths and proxy-local commands
  g(check.err("ERR wrong number of arguments for 'get' command"), "GET", ke, "extra")
  g(self:unknown_err("kvp_no_such_command"), "kvp_no_such_command", ke)
  if not direct then
    g(check.err("ERR command 'lastsave' is not supported by the proxy"), "LASTSAVE")
    g(check.any_error(), "SELECT", "1")
  end
  g(OK, "SELECT", "0")
  g("hello", "PING", "hello")
  g("x", "ECHO", "x")

  g(10, "DEL", kx, ks, knone, l, z, z2, h, s, ko, ke)
end

--------------------------------------------------------------------------------
-- Transactions (issue 12, item 1): MULTI/EXEC/DISCARD queued in the proxy and
-- run whole on one master; a queuing error aborts everything; WATCH on a
-- connection of the client's own. Keys of one transaction share a hash tag.
--------------------------------------------------------------------------------

function T:transactions()
  local g = self:group("transactions")
  local tag = "{tx" .. math.random(1, 999999999) .. "}"
  local a, b = self:key(tag .. "a"), self:key(tag .. "b")
  local Q = check.status("QUEUED")
  g(OK, "MULTI")
  g(Q, "SET", a, "1")
  g(Q, "INCR", a)
  g(Q, "RPUSH", b, "x")
  g({ n = 3, OK, 2, 1 }, "EXEC")
  g(OK, "MULTI")
  g(Q, "INCR", a)
  g(check.err("ERR wrong number of arguments for 'get' command"), "GET")
  g(check.err("EXECABORT Transaction discarded because of previous errors."), "EXEC")
  g("2", "GET", a)
  if not self.o.direct then
    -- a key of another bucket (a table of few buckets may put two tags in
    -- one: try tags until the proxy says CROSSSLOT)
    local crossslot = check.err("CROSSSLOT Keys in request don't hash to the same bucket")
    local other, done
    for _ = 1, 20 do
      other = self:key("{txo" .. math.random(1, 999999999) .. "}x")
      g(OK, "MULTI")
      g(Q, "INCR", a)
      local r = self:call("transactions", { n = 3, "SET", other, "1" })
      if check.match(crossslot, r) then
        self.rep:pass("transactions", "SET " .. other .. " 1 (another bucket)", check.show(r))
        done = true
        break
      end
      g(OK, "DISCARD")
    end
    if not done then self:fail("transactions", "a key of another bucket in MULTI", "CROSSSLOT", "QUEUED 20 times") end
    g(check.err("EXECABORT Transaction discarded because of previous errors."), "EXEC")
    g("2", "GET", a)
    g(0, "EXISTS", other)
  end
  g(OK, "MULTI")
  g(Q, "INCR", a)
  g(OK, "DISCARD")
  g("2", "GET", a)
  g(check.err("ERR EXEC without MULTI"), "EXEC")
  -- WATCH: a change by another client aborts EXEC (nil), none lets it run
  g(OK, "WATCH", a)
  local other_c = self:connect("transactions")
  self:expect("transactions", { "SET", a, "10" }, OK, other_c, "(another client) ")
  other_c:close()
  g(OK, "MULTI")
  g(Q, "INCR", a)
  g(null, "EXEC")
  g(OK, "WATCH", a)
  g(OK, "MULTI")
  g(Q, "INCR", a)
  g({ n = 1, 11 }, "EXEC")
  g(2, "DEL", a, b)
end

--------------------------------------------------------------------------------
-- Blocking commands (issue 12, item 2): a pop that finds data answers at
-- once, one that times out answers nil, one woken by another client gets
-- the client's key name back.
--------------------------------------------------------------------------------

function T:blocking()
  local g = self:group("blocking")
  local tag = "{bl" .. math.random(1, 999999999) .. "}"
  local q, q2, z = self:key(tag .. "q"), self:key(tag .. "q2"), self:key(tag .. "z")
  g(2, "RPUSH", q2, "a", "b")
  g({ n = 2, q2, "a" }, "BLPOP", q, q2, "1")
  g({ n = 2, q2, { n = 1, "b" } }, "BLMPOP", "1", "2", q, q2, "LEFT", "COUNT", "5")
  g(null, "BLPOP", q, "0.01")
  g(1, "ZADD", z, "5", "m")
  g({ n = 3, z, "m", "5" }, "BZPOPMIN", z, "1")
  -- woken by another client while blocked
  local waiter = self:connect("blocking")
  local got
  loop.spawn(function() got = waiter:call("BLPOP", q, "0") end)
  -- push only once it waits (INFO's blocked_clients, the proxy's or Redis's),
  -- so the check is of a wake-up, not of an element already there
  local until_t, n = loop.now() + 1, 0
  repeat
    loop.sleep(0.005)
    local info = self:call("blocking", { n = 2, "INFO", "clients" })
    n = type(info) == "string" and tonumber(info:match("blocked_clients:(%d+)")) or 0
  until n > 0 or loop.now() > until_t
  if n == 0 then self:fail("blocking", "BLPOP " .. q .. " 0 (another client)", "blocked_clients > 0", "0 after 1 s") end
  g(1, "RPUSH", q, "woken")
  local deadline = loop.now() + TIMEOUT
  while got == nil and loop.now() < deadline do loop.sleep(0.01) end
  local ok, why = check.match({ n = 2, q, "woken" }, got)
  if not ok then self:fail("blocking", "BLPOP woken by RPUSH", check.describe({ n = 2, q, "woken" }), check.show(got), why) end
  self.rep:pass("blocking", "BLPOP " .. q .. " 0 (another client) woken by RPUSH", check.show(got))
  waiter:close()
  g(0, "EXISTS", q, q2, z)
end

--------------------------------------------------------------------------------
-- RESP3 (issue 12, item 7): HELLO 3 switches the connection; maps, sets,
-- doubles and nulls arrive as Redis writes them (tools.resp3 reads them: the
-- tools' hiredis reader is RESP2 only); merged replies in RESP3; a
-- subscriber's messages are pushes and it may run commands meanwhile.
--------------------------------------------------------------------------------

-- A raw connection speaking RESP3 after HELLO 3 (and AUTH in it).
function T:resp3_connect()
  local o = self.o
  local s, err = loop.connect(o.host, o.port, TIMEOUT)
  if not s then self:fail("resp3", "connect", "a connection", tostring(err)) end
  local r = { s = s }
  if o.password then
    self:resp3_expect(r, { "HELLO", "3", "AUTH", "default", o.password }, "a map with proto 3", function(v)
      return type(v) == "table" and v.kind == "%" and v.map.proto == 3
    end)
  else
    self:resp3_expect(r, { "HELLO", "3" }, "a map with proto 3", function(v)
      return type(v) == "table" and v.kind == "%" and v.map.proto == 3
    end)
  end
  return r
end

-- Send args on r, check the reply with ok(v); returns it.
function T:resp3_expect(r, args, want, ok)
  local what = table.concat(args, " ")
  r.s:send(resp3.command(unpack(args)))
  local v, err = r.s:receive_with(resp3.decode, TIMEOUT)
  if v == nil then self:fail("resp3", what, want, "(" .. tostring(err) .. ")") end
  if not ok(v) then self:fail("resp3", what, want, resp3.show(v)) end
  self.rep:pass("resp3", what, resp3.show(v))
  return v
end

function T:resp3()
  local r = self:resp3_connect()
  local E = function(args, want, ok) return self:resp3_expect(r, args, want, ok) end
  local h, z, k1, k2 = self:key("r3h"), self:key("r3z"), self:key("r3k"), self:key("r3k")
  local missing = self:key("r3missing")
  E({ "HSET", h, "f1", "v1", "f2", "v2" }, "2", function(v) return v == 2 end)
  E({ "HGETALL", h }, "a map of 2 pairs", function(v)
    return type(v) == "table" and v.kind == "%" and v.n == 2 and v.map.f1 == "v1" and v.map.f2 == "v2"
  end)
  E({ "ZADD", z, "1.5", "a" }, "1", function(v) return v == 1 end)
  E({ "ZSCORE", z, "a" }, "a double 1.5", function(v) return type(v) == "table" and v.double == "1.5" end)
  E({ "GET", missing }, "null", function(v) return v == resp3.null end)
  E({ "SET", k1, "one" }, "OK", function(v) return type(v) == "table" and v.status == "OK" end)
  E({ "SET", k2, "two" }, "OK", function(v) return type(v) == "table" and v.status == "OK" end)
  E({ "MGET", k1, missing, k2 }, "[one, null, two] (merged over masters)", function(v)
    return type(v) == "table" and v.kind == "*" and v[1] == "one" and v[2] == resp3.null and v[3] == "two"
  end)
  E({ "EXISTS", k1, k2, missing }, "2", function(v) return v == 2 end)
  E({ "SMEMBERS", missing }, "an empty set", function(v) return type(v) == "table" and v.kind == "~" and v.n == 0 end)
  E({ "INFO", "server" }, "verbatim text with # Server", function(v)
    return type(v) == "table" and v.format == "txt" and v.verbatim:find("# Server", 1, true) ~= nil
  end)
  E({ "DEL", h, z, k1, k2 }, "4", function(v) return v == 4 end)
  -- a subscriber: pushes, and a GET answered meanwhile
  local ch = "r3ch_" .. math.random(1, 999999999)
  E({ "SUBSCRIBE", ch }, "a push [subscribe, ch, 1]", function(v)
    return type(v) == "table" and v.kind == ">" and v[1] == "subscribe" and v[3] == 1
  end)
  self:expect("resp3", { "PUBLISH", ch, "hi" }, 1)
  local v, err = r.s:receive_with(resp3.decode, TIMEOUT)
  if not (type(v) == "table" and v.kind == ">" and v[1] == "message" and v[3] == "hi") then
    self:fail("resp3", "the message", "a push [message, ch, hi]", v and resp3.show(v) or tostring(err))
  end
  self.rep:pass("resp3", "the published message", resp3.show(v))
  E({ "GET", missing }, "null (a command while subscribed)", function(x) return x == resp3.null end)
  E({ "UNSUBSCRIBE", ch }, "a push [unsubscribe, ch, 0]", function(x)
    return type(x) == "table" and x.kind == ">" and x[1] == "unsubscribe" and x[3] == 0
  end)
  r.s:close()
end

--------------------------------------------------------------------------------
-- Keys named by keyword (issue 12, item 6): STORE keys, SORT's BY/GET
-- patterns, XREAD's STREAMS, numkeys commands; all within one hash tag
--------------------------------------------------------------------------------

function T:keyword()
  local g = self:group("keyword")
  local tag = "{kw" .. math.random(1, 999999999) .. "}"
  local function K(name) -- a key of the tag, deleted at the end
    local k = tag .. name
    self.keys[#self.keys + 1] = k
    return k
  end
  local A = function(...) return { n = select("#", ...), ... } end

  local geo, gdst = K("geo"), K("geo_dst")
  g(2, "GEOADD", geo, "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania")
  g(2, "GEORADIUS", geo, "15", "37", "200", "km", "STORE", gdst)
  g(A("Palermo", "Catania"), "ZRANGE", gdst, "0", "-1")
  g(1, "GEORADIUSBYMEMBER", geo, "Palermo", "100", "km", "STOREDIST", gdst)
  g(A("Palermo", "0"), "ZRANGE", gdst, "0", "-1", "WITHSCORES")

  local l, out = K("list"), K("sorted")
  g(3, "RPUSH", l, "3", "1", "2")
  g(OK, "MSET", K("w_1"), "30", K("w_2"), "20", K("w_3"), "10")
  for i, name in ipairs({ "one", "two", "three" }) do g(1, "HSET", K("h_" .. i), "f", name) end
  g(A("1", "2", "3"), "SORT", l)
  g(A("3", "2", "1"), "SORT", l, "BY", tag .. "w_*")
  g(A("3", "three", "2", "two"), "SORT_RO", l, "BY", tag .. "w_*", "LIMIT", "0", "2", "GET", "#", "GET", tag .. "h_*->f")
  g(3, "SORT", l, "BY", tag .. "w_*", "GET", tag .. "h_*->f", "STORE", out)
  g(A("three", "two", "one"), "LRANGE", out, "0", "-1")
  if not self.o.direct then
    g(check.err("ERR BY option of SORT denied by the proxy: keys formed by the pattern may be in another "
                .. "bucket (the pattern needs the sorted key's {hash tag} before its first '*')"), "SORT", l, "BY", "w_*")
  end

  local s1, s2 = K("stream1"), K("stream2")
  g("1-1", "XADD", s1, "1-1", "f", "v")
  g("2-1", "XADD", s2, "2-1", "g", "w")
  g(A(A(s1, A(A("1-1", A("f", "v")))), A(s2, A(A("2-1", A("g", "w"))))),
    "XREAD", "COUNT", "5", "STREAMS", s1, s2, "0", "0")
  g(OK, "XGROUP", "CREATE", s1, "grp", "0")
  g(A(A(s1, A(A("1-1", A("f", "v"))))), "XREADGROUP", "GROUP", "grp", "c", "STREAMS", s1, ">")

  local la, lb = K("lmpop_a"), K("lmpop_b")
  g(2, "RPUSH", lb, "x", "y")
  g(A(lb, A("x")), "LMPOP", "2", la, lb, "LEFT")
  local z, sa, sb = K("zset"), K("set_a"), K("set_b")
  g(1, "ZADD", z, "1", "m")
  g(A(z, A(A("m", "1"))), "ZMPOP", "1", z, "MIN")
  g(3, "SADD", sa, "1", "2", "3")
  g(3, "SADD", sb, "2", "3", "4")
  g(2, "SINTERCARD", "2", sa, sb)
  g(1, "SINTERCARD", "2", sa, sb, "LIMIT", "1")

  local del = { n = 1, "DEL" }
  for _, k in ipairs(self.keys) do
    if k:sub(1, #tag) == tag then del.n = del.n + 1; del[del.n] = k end
  end
  self:call("keyword", del)
end

-- Keyspace iteration and scripts (issue 12): SCAN walks every master with
-- one cursor, KEYS asks them all, names come back as the client wrote them;
-- a script loaded once runs wherever its keys are.

-- Every name a full SCAN (COUNT 1000, then the extra arguments) returns.
function T:scan_names(group, ...)
  local names, cursor, calls = {}, "0", 0
  repeat
    local args = { "SCAN", cursor, "COUNT", "1000", ... }
    args.n = #args
    local r = self:call(group, args)
    if type(r) ~= "table" or r.n ~= 2 or type(r[1]) ~= "string" or type(r[2]) ~= "table" then
      self:fail(group, check.label(args), "a SCAN page", check.show(r))
    end
    cursor = r[1]
    for i = 1, r[2].n do names[#names + 1] = r[2][i] end
    calls = calls + 1
  until cursor == "0" or calls > 1000000
  return names
end

-- want and got hold the same names, each once.
function T:same_names(group, what, want, got)
  local a, b = {}, {}
  for i, v in ipairs(want) do a[i] = v end
  for i = 1, got.n or #got do b[i] = got[i] end
  table.sort(a)
  table.sort(b)
  local same = #a == #b
  for i = 1, #a do same = same and a[i] == b[i] end
  if not same then
    self:fail(group, what, #a .. " names: " .. table.concat(a, " "), #b .. " names: " .. table.concat(b, " "))
  end
  self.rep:pass(group, what, #b .. " names")
end

function T:keyspace()
  local group = "keyspace"
  local g = self:group(group)
  local base = "ks" .. math.random(1, 999999999)
  local plain, tagged, all = {}, {}, {}
  local mset = { "MSET" }
  for i = 1, 20 do
    plain[i] = self:key(base)
    tagged[i] = self:key("{" .. base .. "t}")
  end
  for _, k in ipairs(plain) do mset[#mset + 1] = k; mset[#mset + 1] = "v" end
  for _, k in ipairs(tagged) do mset[#mset + 1] = k; mset[#mset + 1] = "v" end
  mset.n = #mset
  self:expect(group, mset, OK)
  local l = self:key(base)
  g(1, "RPUSH", l, "a")
  for i, k in ipairs(plain) do all[i] = k end
  all[#all + 1] = l

  self:same_names(group, "SCAN ... MATCH " .. base .. "_* over every master", all,
                  self:scan_names(group, "MATCH", base .. "_*"))
  self:same_names(group, "SCAN ... MATCH {" .. base .. "t}* (one bucket)", tagged,
                  self:scan_names(group, "MATCH", "{" .. base .. "t}*"))
  self:same_names(group, "SCAN ... MATCH " .. base .. "_* TYPE list", { l },
                  self:scan_names(group, "MATCH", base .. "_*", "TYPE", "list"))
  self:same_names(group, "KEYS " .. base .. "_*", all, self:call(group, { n = 2, "KEYS", base .. "_*" }))
  g(check.err("ERR invalid cursor"), "SCAN", "nope")

  local sha = g(check.pred("a sha1", function(a) return type(a) == "string" and #a == 40 end),
                "SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])")
  g("v", "EVALSHA", sha, "1", plain[1])
  g("v", "EVALSHA", sha, "1", tagged[1])
  g({ n = 1, 1 }, "SCRIPT", "EXISTS", sha)
  g(7, "EVAL", "return 7", "0")
  g(check.err("NOSCRIPT No matching script. Please use EVAL."), "EVALSHA", string.rep("0", 40), "0")

  local del = { "DEL", l }
  for _, k in ipairs(plain) do del[#del + 1] = k end
  for _, k in ipairs(tagged) do del[#del + 1] = k end
  del.n = #del
  self:expect(group, del, #del - 1)
end

-- Every key this loop named is gone.
function T:cleanup()
  local args = { "EXISTS" }
  for i, k in ipairs(self.keys) do args[i + 1] = k end
  args.n = #args
  self:expect("cleanup", args, 0)
end

-- After a failure: delete what this loop may have left (best effort).
function T:remove_keys()
  if #self.keys == 0 then return end
  local o = self.o
  local c = redis.connect(o.host, o.port, { timeout = 2, password = o.password })
  if not c then return end
  local cmds = {}
  for i, k in ipairs(self.keys) do cmds[i] = { "DEL", k } end
  c:pipeline(cmds)
  c:close()
end

--------------------------------------------------------------------------------
-- Pub/sub: a subscriber on a connection of its own, messages published on
-- the main one; subscribed mode as Redis has it.
--------------------------------------------------------------------------------

-- The next thing pushed to sub must be exp.
function T:pushed(group, sub, what, exp)
  local r, err = sub:read_reply(TIMEOUT)
  if r == nil then self:fail(group, what, check.describe(exp), "(connection error: " .. tostring(err) .. ")") end
  local ok, why = check.match(exp, r)
  if not ok then self:fail(group, what, check.describe(exp), check.show(r), why) end
  self.rep:pass(group, what, check.show(r))
end

function T:pubsub()
  local group = "pubsub"
  local sub = self:connect(group, true)
  local base = "ps_" .. math.random(1, 999999999)
  local ch1, ch2, pat = base .. "_a", base .. "_b", base .. "_*"
  local function s(exp, ...) return self:expect(group, { n = select("#", ...), ... }, exp, sub) end
  local function push(what, exp) self:pushed(group, sub, what, exp) end
  local g = self:group(group)
  sub:send({ "SUBSCRIBE", ch1, ch2 })
  push("SUBSCRIBE " .. ch1 .. " " .. ch2 .. ": first confirmation", { "subscribe", ch1, 1 })
  push("second confirmation", { "subscribe", ch2, 2 })
  g(1, "PUBLISH", ch1, "hello")
  push("the message", { "message", ch1, "hello" })
  g({ ch1, 1, ch2, 1, base .. "_none", 0 }, "PUBSUB", "NUMSUB", ch1, ch2, base .. "_none")
  g(check.pred("an array naming " .. ch1, function(a)
    if type(a) ~= "table" then return false end
    for i = 1, a.n do if a[i] == ch1 then return true end end
    return false
  end), "PUBSUB", "CHANNELS", base .. "_*")
  s({ "psubscribe", pat, 3 }, "PSUBSCRIBE", pat)
  g(2, "PUBLISH", ch2, "both") -- one connection, two subscriptions matching
  push("the message", { "message", ch2, "both" })
  push("and the pmessage", { "pmessage", pat, ch2, "both" })
  s(check.err("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
      .. "allowed in this context"), "GET", ch1)
  s({ "pong", "" }, "PING")
  s({ "pong", "x" }, "PING", "x")
  s({ "punsubscribe", pat, 2 }, "PUNSUBSCRIBE")
  sub:send({ "UNSUBSCRIBE" })
  for i = 1, 2 do
    push("UNSUBSCRIBE (all): reply " .. i, check.pred("[unsubscribe, a channel, " .. (2 - i) .. "]", function(a)
      return type(a) == "table" and a[1] == "unsubscribe" and (a[2] == ch1 or a[2] == ch2) and a[3] == 2 - i
    end))
  end
  s({ "unsubscribe", null, 0 }, "UNSUBSCRIBE")
  s(check.status("PONG"), "PING")
  s({ "ssubscribe", ch1, 1 }, "SSUBSCRIBE", ch1)
  g(1, "SPUBLISH", ch1, "shard")
  push("the shard message", { "smessage", ch1, "shard" })
  s(check.status("RESET"), "RESET")
  if self.o.password then
    -- RESET logs the connection out, as Redis does with requirepass
    s(check.err("NOAUTH Authentication required."), "PING")
    s(OK, "AUTH", self.o.password)
  end
  s(check.status("PONG"), "PING")
  sub:close()
end

function T:run()
  local o = self.o
  self.c = self:connect("connect")
  self:protocol_checks()
  local n = 1
  while n <= o.loops do
    self.keys = {}
    if o.loops > 1 then self.rep:plain("--- loop " .. n .. " of " .. o.loops .. " ---") end
    self.in_loop = true
    local ok, e = pcall(self.one_loop, self)
    self.in_loop = false
    if ok then
      n = n + 1
      self.unavailable_since = nil
    elseif getmetatable(e) == Retry then
      self.restarts = self.restarts + 1
      pcall(self.remove_keys, self)
      loop.sleep(0.2)
    else
      error(e, 0)
    end
  end
  self.keys = {}
  self:expect("end", { "QUIT" }, OK)
  self.c:close()
  self.rep:plain(self.rep.count .. " checks passed (" .. self.rep:summary() .. ")")
  if self.tolerated > 0 then
    self.rep:plain(("%d unavailable/timeout error(s) tolerated over %.1f s, %d loop(s) run again"):format(
      self.tolerated, self.last_tolerated - self.first_tolerated, self.restarts), "yellow")
  end
  self.rep:plain("PASSED ALL TEST", "green")
end

--------------------------------------------------------------------------------
-- Introspection clients rely on: INFO fields, CLIENT, CONFIG GET, COMMAND
--------------------------------------------------------------------------------

function T:introspection()
  local group = "introspection"
  local g = self:group(group)
  local direct = self.o.direct
  local function has_fields(fields)
    return check.pred("INFO text with " .. table.concat(fields, ", "), function(v)
      if type(v) ~= "string" then return false end
      for _, f in ipairs(fields) do
        if not v:find("\r\n" .. f .. ":%d") and not v:find("^" .. f .. ":%d") then return false end
      end
      return true
    end)
  end
  -- what redis-cli --stat and monitoring agents read, as numbers
  g(has_fields({ "uptime_in_seconds", "connected_clients", "used_memory", "used_memory_rss",
                 "total_connections_received", "total_commands_processed",
                 "instantaneous_ops_per_sec", "keyspace_hits" }), "INFO")
  g(check.pred("only the Memory section", function(v)
    return type(v) == "string" and v:find("^# Memory\r\n") ~= nil and not v:find("# Server", 1, true)
  end), "INFO", "memory")

  local id = self:call(group, { "CLIENT", "ID" })
  if type(id) ~= "number" then self:fail(group, "CLIENT ID", "an integer", check.show(id)) end
  self.rep:pass(group, "CLIENT ID", check.show(id))
  local name = "ta" .. math.random(1, 999999999)
  g(OK, "CLIENT", "SETNAME", name)
  g(name, "CLIENT", "GETNAME")
  g(check.pred("the caller's line (id, name, cmd)", function(v)
    return type(v) == "string" and v:find("^id=" .. id .. " ") ~= nil and v:find(" name=" .. name .. " ", 1, true) ~= nil
  end), "CLIENT", "INFO")
  g(check.pred("a list with the caller", function(v)
    return type(v) == "string" and v:find("id=" .. id .. " addr=", 1, true) ~= nil
  end), "CLIENT", "LIST")
  g(0, "CLIENT", "KILL", "ID", tostring(id), "SKIPME", "yes")
  g(0, "CLIENT", "KILL", "ADDR", "203.0.113.1:1")

  g(check.array_len(2, "save and its value", function(a) return a[1] == "save" end), "CONFIG", "GET", "save")
  g(check.array_len(2, "appendonly and its value", function(a) return a[1] == "appendonly" end),
    "CONFIG", "GET", "appendonly")
  g({ n = 0 }, "CONFIG", "GET", "no-such-parameter-" .. name)

  g(check.pred("a count of commands", function(v) return type(v) == "number" and v > 100 end), "COMMAND", "COUNT")
  g(check.array_len(1, "GET's entry: name, arity", function(a)
    return type(a[1]) == "table" and a[1][1] == "get" and a[1][2] == 2
  end), "COMMAND", "INFO", "get")
  g({ n = 2, "a", "c" }, "COMMAND", "GETKEYS", "MSET", "a", "b", "c", "d")
  g({ n = 2, "k1", "k2" }, "COMMAND", "GETKEYS", "EVAL", "return 1", "2", "k1", "k2", "x")
  g(check.err("ERR Invalid command specified"), "COMMAND", "GETKEYS", "nosuchcommand", "a")
  if not direct then
    g(check.err("ERR command 'config|set' is not supported by the proxy"), "CONFIG", "SET", "maxmemory", "1")
    g({ n = 1, null }, "COMMAND", "INFO", "wait")
    g(check.err("ERR command 'sync' is not supported by the proxy"), "SYNC")
    g(check.err("ERR command 'replicaof' is not supported by the proxy"), "REPLICAOF", "NO", "ONE")
  end
end

function T:one_loop()
  self:basic()
  self:string()
  self:hash()
  self:set()
  self:zset()
  self:list()
  self:hyperloglog()
  self:pipeline_group()
  self:multikey()
  self:siblings()
  self:keyspace()
  self:keyword()
  self:transactions()
  self:blocking()
  self:resp3()
  self:pubsub()
  self:introspection()
  self:cleanup()
end

--------------------------------------------------------------------------------

function M.main(argv)
  local o, err = parse_args(argv or {})
  if not o then
    if err == nil then
      io.stdout:write(USAGE, "\n")
      return 0
    end
    io.stderr:write("test_all: ", err, "\n", USAGE, "\n")
    return 2
  end
  math.randomseed((math.floor(core.wall() * 1000) + core.getpid() * 7919) % 2147483647)
  for _ = 1, 10 do math.random() end

  local rc = 1
  -- kv.loop turns signals into events: without this, Ctrl-C would be ignored
  loop.on_signal(function(signo) core.exit(128 + signo) end)
  loop.run(function()
    local t = new_runner(o)
    local ok, e = xpcall(function() t:run() end, function(e)
      if getmetatable(e) == Failure then return e end
      return debug.traceback(tostring(e), 2)
    end)
    if ok then
      rc = 0
    else
      if getmetatable(e) ~= Failure then
        io.stdout:flush()
        io.stderr:write("test_all: internal error: ", tostring(e), "\n")
      end
      pcall(t.remove_keys, t)
      rc = 1
    end
    io.stdout:flush()
    loop.stop()
  end)
  return rc
end

return M
