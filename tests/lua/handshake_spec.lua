-- kv.handshake: the control ports' challenge-response, both halves driven
-- against each other through in-memory pipes, and the pure predicates.
local hs = require "kv.handshake"
local resp = require "kv.resp"

-- Two in-memory ends: what one sends, the other reads (decoded).
local function pipe()
  local a2b, b2a = {}, {}
  local function reader(q)
    return function()
      local bytes = table.remove(q, 1)
      if not bytes then return nil, "closed" end
      local v = resp.decode(bytes)
      return v
    end
  end
  return { send = function(b) a2b[#a2b + 1] = b end, read = reader(b2a) },
         { send = function(b) b2a[#b2a + 1] = b end, read = reader(a2b) }, a2b, b2a
end

-- Run server and client in coroutines over a pipe; -> server result, client result
local function run(server_secret, client_secret, peer)
  local s_io, c_io = pipe()
  local srv = coroutine.wrap(function() return { hs.server(s_io, server_secret, peer or "127.0.0.1:5000") } end)
  local cli = coroutine.wrap(function() return { hs.client(c_io, client_secret) } end)
  -- the exchange is strictly alternating: drive it step by step without yields
  -- by letting each read fail only when nothing was sent yet
  local function lazy(io)
    local r = io.read
    io.read = function()
      for _ = 1, 10 do
        local v, e = r()
        if v ~= nil then return v end
        if coroutine.running() then coroutine.yield() end
      end
      return nil, "closed"
    end
  end
  lazy(s_io) lazy(c_io)
  local sres, cres
  for _ = 1, 20 do
    if not sres then local r = srv() if type(r) == "table" then sres = r end end
    if not cres then local r = cli() if type(r) == "table" then cres = r end end
    if sres and cres then break end
  end
  return sres, cres
end

describe("kv.handshake", function()
  it("HMAC-SHA1 matches RFC 2202", function()
    local crypto = require "kv.crypto"
    local h = crypto.hmac_sha1("Jefe", "what do ya want for nothing?")
    assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", (h:gsub(".", function(c) return ("%02x"):format(c:byte()) end)))
  end)

  it("makes fresh 128-bit nonces", function()
    local a, b = hs.nonce(), hs.nonce()
    assert.matches("^%x+$", a)
    assert.equal(32, #a)
    assert.not_equal(a, b)
  end)

  it("binds the mac to secret and nonce", function()
    local n = hs.nonce()
    assert.equal(40, #hs.mac("s", n))
    assert.equal(hs.mac("s", n), hs.mac("s", n))
    assert.not_equal(hs.mac("s", n), hs.mac("t", n))
    assert.not_equal(hs.mac("s", n), hs.mac("s", hs.nonce()))
  end)

  it("compares macs", function()
    assert.is_true(hs.equal("abc", "abc"))
    assert.is_false(hs.equal("abc", "abd"))
    assert.is_false(hs.equal("abc", "ab"))
    assert.is_false(hs.equal(nil, "ab"))
  end)

  it("knows loopback peers", function()
    assert.is_true(hs.is_loopback("127.0.0.1:1234"))
    assert.is_true(hs.is_loopback("127.0.0.2:1"))
    assert.is_false(hs.is_loopback("10.0.0.1:1234"))
    assert.is_false(hs.is_loopback("128.0.0.1:1234"))
    assert.is_false(hs.is_loopback("1.127.0.0:1"))
    assert.is_false(hs.is_loopback("?"))
    assert.is_false(hs.is_loopback(nil))
  end)

  it("with no secret admits loopback peers only", function()
    assert.is_true(hs.peer_allowed("", "127.0.0.1:1"))
    assert.is_nil(hs.peer_allowed("", "10.1.2.3:1"))
    assert.is_nil(hs.peer_allowed(nil, "10.1.2.3:1"))
    assert.is_true(hs.peer_allowed("s3cret", "10.1.2.3:1"))
  end)

  it("accepts a client with the same secret", function()
    local s, c = run("s3cret", "s3cret")
    assert.same({ true }, s)
    assert.same({ true }, c)
  end)

  it("refuses a client with another secret, and says so to both", function()
    local s, c = run("s3cret", "guess")
    assert.same({ nil, "wrong cluster_secret" }, s)
    assert.is_nil(c[1])
    assert.matches("NOAUTH", c[2])
  end)

  it("with no secret: loopback clients without one pass, others are refused first", function()
    local s, c = run("", "")
    assert.same({ true }, s)
    assert.same({ true }, c)
    s, c = run("", "", "10.0.0.7:4000")
    assert.is_nil(s[1])
    assert.matches("loopback", s[2])
    assert.matches("NOAUTH", c[2])
  end)

  it("refuses a first command that is not AUTH, and a replayed mac", function()
    local s_io, _, _, b2a = pipe()
    b2a[1] = resp.encode("MIGRATE.START", "test", "1.2.3.4:1", "0")
    local ok, why = hs.server(s_io, "k", "127.0.0.1:1")
    assert.is_nil(ok)
    assert.matches("not AUTH", why)
    -- a mac for some earlier nonce does not answer a new one
    s_io, _, _, b2a = pipe()
    b2a[1] = resp.encode("AUTH", hs.mac("k", hs.nonce()))
    ok, why = hs.server(s_io, "k", "127.0.0.1:1")
    assert.is_nil(ok)
    assert.equal("wrong cluster_secret", why)
  end)

  it("a client facing a non-control server fails cleanly", function()
    local _, c_io, _, b2a = pipe()
    b2a[1] = resp.encode_reply(resp.status("PONG"))
    local ok, why = hs.client(c_io, "k")
    assert.is_nil(ok)
    assert.matches("no challenge", why)
  end)

  it("rate-limits the refusal log", function()
    local lines, t = {}, 0
    local log = hs.refusal_log(function(fmt, ...) lines[#lines + 1] = fmt:format(...) end,
      function() return t end, 1)
    for i = 1, 1000 do
      t = i * 0.01
      log("proxy port", "10.0.0.1:" .. i, "wrong cluster_secret")
    end
    assert.equal(10, #lines)
    assert.matches("10.0.0.1:1: wrong", lines[1])
    assert.matches("99 refusal%(s%) not logged", lines[2])
  end)
end)
