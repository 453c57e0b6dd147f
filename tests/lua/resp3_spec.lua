-- tools.resp3: the RESP3 reader test_all's resp3 group reads the proxy with.
local resp3 = require "tools.resp3"

describe("tools.resp3", function()
  it("reads every RESP3 type", function()
    local buf = "%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*3\r\n_\r\n#t\r\n,1.5\r\n"
    local v, nxt = resp3.decode(buf, 1)
    assert.equal(#buf + 1, nxt)
    assert.equal("%", v.kind)
    assert.equal(1, v.map.a)
    assert.equal(resp3.null, v.map.b[1])
    assert.is_true(v.map.b[2].bool)
    assert.equal("1.5", v.map.b[3].double)
    v = resp3.decode("=8\r\ntxt:abcd\r\n", 1)
    assert.equal("abcd", v.verbatim)
    v = resp3.decode(">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", 1)
    assert.equal(">", v.kind)
    assert.equal("m", v[3])
    assert.equal("x", resp3.decode("!1\r\nx\r\n", 1).err)
  end)

  it("wants more bytes at every cut of a reply", function()
    local buf = "*2\r\n%1\r\n$1\r\nk\r\n~1\r\n(123\r\n$3\r\nabc\r\n"
    for cut = 1, #buf - 1 do
      assert.is_nil(resp3.decode(buf:sub(1, cut), 1))
    end
    assert.is_not_nil(resp3.decode(buf, 1))
  end)

  it("refuses an unknown type", function()
    local v, err = resp3.decode("&1\r\n", 1)
    assert.is_nil(v)
    assert.matches("protocol error", err)
  end)
end)
