-- kvp.lineage: a proxy takes no table of another cluster's history (issue 11).
package.loaded["kv.core"] = package.loaded["kv.core"] or setmetatable(
  { now = os.clock, DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 },
  { __index = function() return function() end end })
local lineage = require "kvp.lineage"
local log = require "kv.log"

local function t(v, l) return { namespace = "test", version = v, lineage = l } end

describe("kvp.lineage.check", function()
  it("takes any table when none is held, or the held one has no lineage", function()
    assert.is_true(lineage.check(nil, t(1e9, "bad")))
    assert.is_true(lineage.check(t(3, nil), t(4, "aa")))
    assert.is_true(lineage.check(t(3, nil), t(4, nil)))
  end)
  it("takes the same lineage only", function()
    assert.is_true(lineage.check(t(3, "aa"), t(4, "aa")))
    local ok, why = lineage.check(t(3, "aa"), t(1e9, "bb"))
    assert.is_false(ok)
    assert.matches("lineage bb", why)
    assert.matches("aa", why)
    assert.is_false((lineage.check(t(3, "aa"), t(1e9, nil))))
  end)
end)

describe("kvp.lineage.refuse", function()
  it("logs one line per key per interval and counts the rest", function()
    local lines = {}
    local warn = log.warn
    log.warn = function(fmt, ...) lines[#lines + 1] = fmt:format(...) end
    assert.is_true(lineage.refuse("forged", "k1", 100))
    for i = 1, 50 do assert.is_false(lineage.refuse("forged", "k1", 100 + i % 5)) end
    assert.is_true(lineage.refuse("other", "k2", 101))
    assert.is_true(lineage.refuse("forged", "k1", 100 + lineage.INTERVAL))
    log.warn = warn
    assert.equals(3, #lines)
    assert.matches("50 more", lines[3])
  end)
end)

describe("kvp.lineage.refuse past MAX_KEYS", function()
  it("shares one key, so distinct reasons cannot flood", function()
    local lines = {}
    local warn = log.warn
    log.warn = function(fmt, ...) lines[#lines + 1] = fmt:format(...) end
    for i = 1, lineage.MAX_KEYS + 100 do lineage.refuse("reason " .. i, "many" .. i, 1000) end
    log.warn = warn
    assert.is_true(#lines <= lineage.MAX_KEYS + 1, #lines)
  end)
end)
