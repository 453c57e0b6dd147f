-- kv.policy: the policy compiler (issue 13 groundwork): every field, every
-- error, the sandbox, and what decides a key's bucket.
local policy = require "kv.policy"

local function src(body) return "return {\n" .. body .. "\n}\n" end

describe("kv.policy.compile", function()
  it("compiles the shipped lua/policy.lua to its defaults", function()
    local f = assert(io.open("lua/policy.lua"))
    local text = f:read("*a")
    f:close()
    local p = assert(policy.compile(text, "policy.lua"))
    assert.equal("murmur2_kvstore", p.hash)
    assert.is_true(p.hash_tags)
    assert.same({}, p.deny)
    assert.same({}, p.rules)
  end)

  it("reads every field of a rule", function()
    local p = assert(policy.compile(src([[
  hash = "crc16", hash_tags = false, deny = {"FLUSHALL"}, allow = {"sort"},
  rules = {
    { match = "config:*", read_only = true, deny = {"DEL"} },
    { match = "cache:*", replica_reads = "prefer", max_replica_lag_ms = 500, max_qps = 1000 },
    { match = "tenant:*", route = function(key, cmd) return key:match("^tenant:([^:]*)") end },
  },]]), "p"))
    assert.equal("crc16", p.hash)
    assert.is_false(p.hash_tags)
    assert.same({ "flushall" }, p.deny)
    assert.same({ "sort" }, p.allow)
    assert.equal(3, #p.rules)
    assert.is_true(p.rules[1].read_only)
    assert.same({ "del" }, p.rules[1].deny)
    assert.equal("never", p.rules[1].replica_reads)
    assert.equal("prefer", p.rules[2].replica_reads)
    assert.equal(500, p.rules[2].max_replica_lag_ms)
    assert.equal(1000, p.rules[2].max_qps)
    assert.equal("42", p.rules[3].route("tenant:42:orders", "get"))
  end)

  local errors = {
    { "hash = \"md5\"", "p:2: unknown hash 'md5'" },
    { "hash_tags = 1", "p:2: hash_tags must be true or false" },
    { "hashtags = true", "p:2: unknown policy field 'hashtags'" },
    { "deny = \"flushall\"", "p:2: deny must be a list of command names" },
    { "deny = { x = 1 }", "p:2: deny must be a list (no keys)" },
    { "allow = { 3 }", "p:2: allow[1] must be a command name" },
    { "rules = 5", "p:2: rules must be a list of rules" },
    { "rules = { 5 }", "rules[1] must be a table" },
    { "rules = {\n { match = \"a*\", readonly = true } }", "p:3: rules[1]: unknown field 'readonly'" },
    { "rules = { { read_only = true } }", "rules[1].match must be a non-empty glob" },
    { "rules = { { match = \"[abc\" } }", "rules[1].match has a '[' without its ']'" },
    { "rules = { { match = \"" .. string.rep("a", 300) .. "\" } }", "rules[1].match is longer than 256 bytes" },
    { "rules = { { match = \"a\", read_only = \"yes\" } }", "rules[1].read_only must be true or false" },
    { "rules = { { match = \"a\", max_qps = 0 } }", "rules[1].max_qps must be an integer from 1 to 100000000" },
    { "rules = { { match = \"a\", max_qps = 1.5 } }", "rules[1].max_qps must be an integer" },
    { "rules = { { match = \"a\", replica_reads = \"always\" } }", "rules[1].replica_reads must be \"never\", \"prefer\" or \"only\"" },
    { "rules = { { match = \"a\", max_replica_lag_ms = 10 } }", "rules[1].max_replica_lag_ms needs replica_reads" },
    { "rules = { { match = \"a\", route = \"tenant\" } }", "rules[1].route must be a function(key, cmd)" },
  }
  for _, case in ipairs(errors) do
    it("refuses " .. case[1]:gsub("\n", " "):sub(1, 60), function()
      local p, err = policy.compile(src(case[1]), "p")
      assert.is_nil(p)
      assert.truthy(err:find(case[2], 1, true), err)
    end)
  end

  it("refuses more than MAX_RULES rules", function()
    local rules = {}
    for i = 1, policy.MAX_RULES + 1 do rules[i] = ("{ match = \"k%d*\" }"):format(i) end
    local _, err = policy.compile(src("rules = {" .. table.concat(rules, ", ") .. "}"), "p")
    assert.truthy(err:find("at most 64 rules", 1, true), err)
  end)

  it("gives the line of a syntax error and of a runtime error", function()
    local _, err = policy.compile("return {\n hash = \"crc16\",\n deny = { \"a\" \n}", "policy.lua")
    assert.truthy(err:find("^policy.lua:%d+:"), err)
    _, err = policy.compile("local x = nil\nreturn x.y", "policy.lua")
    assert.truthy(err:find("^policy.lua:2:"), err)
    _, err = policy.compile("return 5", "policy.lua")
    assert.equal("policy.lua: the policy must return a table", err)
  end)

  it("runs in a sandbox: no io, os, require; the library read-only", function()
    for _, body in ipairs({ "io.open('/etc/passwd')", "os.exit(1)", "require('kv.core')",
                            "string.rep = nil", "loadstring('return 1')" }) do
      local p, err = policy.compile(body .. "\nreturn {}", "p")
      assert.is_nil(p, body)
      assert.is_string(err)
    end
    assert.is_table(policy.compile("local s = string.format('%d', 5)\nreturn { deny = { s } }", "p"))
  end)
end)

describe("kv.policy.routing", function()
  local function routing(body) return policy.routing(assert(policy.compile(src(body), "p"))) end

  it("changes with the hash, the tags, and a route function's source", function()
    local base = routing("hash = \"crc16\"")
    assert.not_equal(base, routing("hash = \"murmur2_kvstore\""))
    assert.not_equal(base, routing("hash = \"crc16\", hash_tags = false"))
    local r1 = routing("hash = \"crc16\", rules = {\n{ match = \"t:*\", route = function(k) return k end } }")
    local r2 = routing("hash = \"crc16\", rules = {\n{ match = \"t:*\", route = function(k) return k:sub(1, 4) end } }")
    assert.not_equal(base, r1)
    assert.not_equal(r1, r2)
  end)

  it("does not change with what only filters commands", function()
    assert.equal(routing("hash = \"crc16\""),
      routing("hash = \"crc16\", deny = {\"flushall\"}, rules = { { match = \"a*\", read_only = true, max_qps = 5 } }"))
  end)
end)

describe("kv.policy.load", function()
  it("compiles the file and names it in errors", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("return {\n  hash = 'md5',\n}\n")
    f:close()
    local p, err = policy.load(path)
    assert.is_nil(p)
    assert.truthy(err:find(path .. ":2:", 1, true), err)
    os.remove(path)
    assert.equal("murmur2_kvstore", assert(policy.load("lua/policy.lua")).hash)
  end)

  it("reports a missing file", function()
    local p, err = policy.load("/nonexistent/policy.lua")
    assert.is_nil(p)
    assert.truthy(err:find("cannot read policy", 1, true))
  end)

  it("refuses globs the proxy cannot match: CR/LF, more than 63 elements", function()
    local _, e1 = policy.compile("return { rules = { { match = 'a\\r\\nb*' } } }", "p")
    assert.truthy(e1:find("CR or LF", 1, true), e1)
    local _, e2 = policy.compile("return { rules = { { match = '" .. ("?"):rep(64) .. "' } } }", "p")
    assert.truthy(e2:find("63 elements", 1, true), e2)
  end)
end)
