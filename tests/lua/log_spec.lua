-- kv.log's limiter: a flood of one format is held back, other formats are not,
-- the held count is reported, and run-time formats cannot grow it without bound.
package.loaded["kv.core"] = package.loaded["kv.core"] or setmetatable(
  { now = os.clock, DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 },
  { __index = function() return function() end end })
local log = require "kv.log"

describe("kv.log limiter", function()
  it("lets burst lines of a format through per window and holds the rest", function()
    local lim = log.limiter(3, 1)
    local out = 0
    for _ = 1, 1000 do
      if log.allow(lim, "refused %s", 10.0) then out = out + 1 end
    end
    assert.equal(3, out)
  end)

  it("reports how many were held back with the next line let through", function()
    local lim = log.limiter(2, 1)
    for _ = 1, 10 do log.allow(lim, "bad peer %s", 5.0) end
    local ok, held = log.allow(lim, "bad peer %s", 6.0)
    assert.is_true(ok)
    assert.equal(8, held)
    ok, held = log.allow(lim, "bad peer %s", 6.0)
    assert.is_true(ok)
    assert.equal(0, held)
  end)

  it("never holds back one format for another", function()
    local lim = log.limiter(1, 1)
    assert.is_true((log.allow(lim, "a %s", 1.0)))
    assert.is_false((log.allow(lim, "a %s", 1.0)))
    assert.is_true((log.allow(lim, "b %s", 1.0)))
  end)

  it("forgets keys rather than grow past max_keys", function()
    local lim = log.limiter(1, 1, 100)
    for i = 1, 10000 do log.allow(lim, "dynamic " .. i, 1.0) end
    assert.is_true(lim.nkeys <= 100)
  end)
end)
