-- kv.httpd: who may send a changing request (issue 11, item 2).

-- kv.core (C, only inside the runtime) is a stub so kv.httpd loads under busted
package.loaded["kv.core"] = package.loaded["kv.core"] or setmetatable(
  { now = os.clock, DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 },
  { __index = function() return function() end end })
local httpd = require "kv.httpd"
local cjson = require "cjson"

describe("httpd.loopback", function()
  it("takes 127.0.0.0/8 and ::ffff:127.x as loopback", function()
    assert.is_true(httpd.loopback("127.0.0.1:5000"))
    assert.is_true(httpd.loopback("127.1.2.3:1"))
    assert.is_true(httpd.loopback("[::1]:80"))
    assert.is_true(httpd.loopback("::ffff:127.0.0.1:80"))
    assert.is_true(httpd.loopback("127.0.0.1"))
  end)
  it("refuses everything else", function()
    for _, p in ipairs({ "10.0.0.1:5000", "192.168.1.127:80", "128.0.0.1:1", "?", "",
                         "0.0.0.0:1", "[::2]:80", "::ffff:10.0.0.1:80", "127.0.0.256:1",
                         "1270.0.0.1:1" }) do
      assert.is_false(httpd.loopback(p), p)
    end
    assert.is_false(httpd.loopback(nil))
  end)
end)

describe("httpd.respond on a changing route", function()
  local hits
  local routes = {
    ["/c"] = { fn = function() hits = hits + 1 return 1001, "OK" end, change = true },
    ["/r"] = { fn = function() hits = hits + 1 return 1001, "OK" end },
  }
  local function req(path, peer, auth)
    return { path = path, peer = peer, body = "", headers = { authorization = auth } }
  end
  local function call(path, peer, token, auth)
    hits = 0
    local st, body = httpd.respond(routes, req(path, peer, auth), { token = function() return token end })
    return st, cjson.decode(body).code, hits
  end

  it("without a token: loopback yes, others no", function()
    assert.same({ 200, 1001, 1 }, { call("/c", "127.0.0.1:4000", "") })
    assert.same({ 401, 1011, 0 }, { call("/c", "10.1.1.2:4000", "") })
    assert.same({ 401, 1011, 0 }, { call("/c", nil, "") })
  end)
  it("with a token: anyone presenting it, nobody without it", function()
    assert.same({ 200, 1001, 1 }, { call("/c", "10.1.1.2:4000", "s3cret", "Bearer s3cret") })
    assert.same({ 401, 1011, 0 }, { call("/c", "10.1.1.2:4000", "s3cret", "Bearer nope") })
    assert.same({ 401, 1011, 0 }, { call("/c", "127.0.0.1:4000", "s3cret") })
  end)
  it("reads stay open", function()
    assert.same({ 200, 1001, 1 }, { call("/r", "10.1.1.2:4000", "") })
  end)
end)
