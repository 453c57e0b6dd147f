-- kvp.policy: the routing policy file is data; bad policies are refused with
-- a message naming the fault, before the proxy serves anything.
local policy = require "kvp.policy"

local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("kvp.policy", function()
  it("loads the shipped lua/policy.lua", function()
    local p = assert(policy.load("lua/policy.lua"))
    assert.equal("murmur2_kvstore", p.hash)
    assert.is_true(p.hash_tags)
    assert.same({}, p.deny)
    assert.same({}, p.allow)
  end)

  it("fills defaults and lower-cases command names", function()
    local p = assert(policy.check({ deny = { "FLUSHALL" }, allow = { "Sort" }, hash_tags = false }))
    assert.equal("murmur2_kvstore", p.hash)
    assert.is_false(p.hash_tags)
    assert.same({ "flushall" }, p.deny)
    assert.same({ "sort" }, p.allow)
  end)

  it("accepts crc16", function()
    assert.equal("crc16", assert(policy.check({ hash = "crc16" })).hash)
  end)

  local bad = {
    { "unknown hash", { hash = "md5" }, "unknown hash 'md5'" },
    { "unknown field", { hahs = "crc16" }, "unknown policy field 'hahs'" },
    { "hash_tags not boolean", { hash_tags = "yes" }, "hash_tags must be true or false" },
    { "deny not a list", { deny = "flushall" }, "deny must be a list" },
    { "deny with a non-string", { deny = { 1 } }, "deny[1] must be a command name" },
    { "allow with keys", { allow = { x = "sort" } }, "allow must be a list" },
    { "not a table", "policy", "must return a table" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1], function()
      local p, err = policy.check(case[2])
      assert.is_nil(p)
      assert.truthy(err:find(case[3], 1, true), err)
    end)
  end

  it("names the file on a syntax error", function()
    local path = write("return { hash = ")
    local p, err = policy.load(path)
    assert.is_nil(p)
    assert.truthy(err:find(path, 1, true))
    os.remove(path)
  end)

  it("runs the file without globals", function()
    local path = write("os.exit(3) return {}")
    local p, err = policy.load(path)
    assert.is_nil(p)
    assert.truthy(err:find("os", 1, true), err)
    os.remove(path)
  end)

  it("reports a missing file", function()
    local p, err = policy.load("/nonexistent/policy.lua")
    assert.is_nil(p)
    assert.truthy(err:find("cannot read policy", 1, true))
  end)
end)
