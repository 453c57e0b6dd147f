-- kvlua tests/it/blocking.lua PORT: blocking commands through the proxy, as
-- clients see them (one line per check; the shell test looks at the
-- masters). The proxy runs with request_timeout 500 ms: a blocking wait
-- must not be cut by it.
local loop = require "kv.loop"
local redis = require "kv.redis"

local port = tonumber(arg[1])
local C = dofile(KV_ROOT .. "/tests/it/checks.lua")
local check, show = C.check, C.show

local function connect() return assert(redis.connect("127.0.0.1", port)) end

-- cmd on a fresh connection, woken after `after` s by wake (on another)
local function woken(what, cmd, wake, want, after)
  local c, o = connect(), connect()
  local got, t0
  loop.spawn(function()
    t0 = loop.now()
    got = show(c:call(unpack(cmd)))
  end)
  loop.sleep(after or 0.2)
  check(what .. ": still waiting", got == nil, got)
  for _, w in ipairs(wake) do o:call(unpack(w)) end
  local deadline = loop.now() + 5
  while got == nil and loop.now() < deadline do loop.sleep(0.02) end
  check(what, got == want, "got " .. tostring(got) .. ", expected " .. want)
  c:close()
  o:close()
end

loop.run(function()
  local c = connect()
  c:call("DEL", "{b}q", "{b}q2", "{b}dst", "{b}z", "{b}s")

  woken("BLPOP woken by another client's RPUSH", { "BLPOP", "{b}q", "{b}q2", "0" },
    { { "RPUSH", "{b}q2", "job1" } }, "[{b}q2,job1]")
  woken("BLPOP 0 waits past request_timeout (1.5 s > 500 ms)", { "BLPOP", "{b}q", "0" },
    { { "RPUSH", "{b}q", "late" } }, "[{b}q,late]", 1.5)
  woken("BRPOP", { "BRPOP", "{b}q", "0" }, { { "RPUSH", "{b}q", "a", "b" } }, "[{b}q,b]")
  c:call("DEL", "{b}q")
  woken("BRPOPLPUSH", { "BRPOPLPUSH", "{b}q", "{b}dst", "0" }, { { "RPUSH", "{b}q", "m" } }, "m")
  woken("BLMOVE", { "BLMOVE", "{b}q", "{b}dst", "LEFT", "RIGHT", "0" }, { { "RPUSH", "{b}q", "n" } }, "n")
  check("the moved elements are in the destination", show(c:call("LRANGE", "{b}dst", "0", "-1")) == "[m,n]")
  woken("BLMPOP", { "BLMPOP", "0", "2", "{b}q", "{b}q2", "LEFT", "COUNT", "2" },
    { { "RPUSH", "{b}q2", "x", "y", "z" } }, "[{b}q2,[x,y]]")
  woken("BZPOPMIN", { "BZPOPMIN", "{b}z", "0" }, { { "ZADD", "{b}z", "1", "one" } }, "[{b}z,one,1]")
  woken("BZPOPMAX", { "BZPOPMAX", "{b}z", "0" }, { { "ZADD", "{b}z", "1", "one", "2", "two" } }, "[{b}z,two,2]")
  c:call("DEL", "{b}z")
  woken("BZMPOP", { "BZMPOP", "0", "1", "{b}z", "MIN" }, { { "ZADD", "{b}z", "3", "three" } },
    "[{b}z,[[three,3]]]")
  woken("XREAD BLOCK, stream key restored", { "XREAD", "BLOCK", "0", "STREAMS", "{b}s", "$" },
    { { "XADD", "{b}s", "5-1", "f", "v" } }, "[[{b}s,[[5-1,[f,v]]]]]")
  c:call("XGROUP", "CREATE", "{b}s", "g", "$")
  woken("XREADGROUP BLOCK", { "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "{b}s", ">" },
    { { "XADD", "{b}s", "6-1", "f", "w" } }, "[[{b}s,[[6-1,[f,w]]]]]")

  -- a timeout answers nil, after about the timeout
  local t0 = loop.now()
  local v = c:call("BLPOP", "{b}empty", "1")
  local ms = (loop.now() - t0) * 1000
  check(string.format("BLPOP with a 1 s timeout on an empty list: nil (after %d ms)", ms),
    v == redis.null and ms >= 900, show(v))
  v = c:call("XREAD", "BLOCK", "300", "STREAMS", "{b}s", "$")
  check("XREAD BLOCK 300 with nothing new: nil", v == redis.null, show(v))
  check("the same connection serves ordinary commands after", show(c:call("LRANGE", "{b}dst", "0", "-1")) == "[m,n]")
  check("non-blocking XREAD routes by its STREAMS keys",
    show(c:call("XREAD", "COUNT", "1", "STREAMS", "{b}s", "0")) == "[[{b}s,[[5-1,[f,v]]]]]")
  check("keys of two buckets: CROSSSLOT", show(c:call("BLPOP", "{b}q", "{c}q", "0")) ==
    "-CROSSSLOT Keys in request don't hash to the same bucket")
  check("inside MULTI a blocking command does not block (as in Redis)",
    show((function()
      c:call("MULTI")
      c:call("BLPOP", "{b}nothing", "0")
      return c:call("EXEC")
    end)()) == "[nil]")

  -- RESET pipelined behind a blocking command runs after it, as on Redis:
  -- the pop and the GET are answered, not cut off with an error
  local rs = c:pipeline({ { "BLPOP", "{b}none", "0.3" }, { "LRANGE", "{b}dst", "0", "-1" }, { "RESET" } })
  check("BLPOP, LRANGE, RESET in one write: each answered in order",
    rs and show(rs[1]) == "nil" and show(rs[2]) == "[m,n]" and show(rs[3]) == "+RESET",
    rs and (show(rs[1]) .. " " .. show(rs[2]) .. " " .. show(rs[3])) or "no replies")

  c:close()
  C.summary()
  loop.stop()
end)
