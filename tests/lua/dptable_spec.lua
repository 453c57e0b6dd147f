-- kvp.dptable: the one table dp.set_table takes, built from a bucket table.
local btable = require "kv.btable"
local dptable = require "kvp.dptable"

describe("kvp.dptable.spec", function()
  local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"

  it("names every field; owners are 1-based indexes into sorted servers", function()
    local t = assert(btable.init("test", 256, { B, A }))
    local s = dptable.spec(t)
    assert.same({ "blocked", "bucket_count", "migrating", "owner", "patterns", "servers", "version" },
      (function() local k = {} for n in pairs(s) do k[#k + 1] = n end table.sort(k) return k end)())
    assert.equal(1, s.version)
    assert.equal(256, s.bucket_count)
    assert.same({ A, B }, s.servers)
    assert.equal(256, #s.owner)
    assert.equal(2, s.owner[1]) -- bucket 0 -> B, index 2
    assert.equal(1, s.owner[2]) -- bucket 1 -> A
    assert.equal(1, s.owner[256])
    assert.same({}, s.migrating)
    assert.same({}, s.blocked)
    assert.same({}, s.patterns)
  end)

  it("lists migration destinations among the servers, and blocked buckets", function()
    local t = assert(btable.init("test", 256, { A, B }))
    t = assert(btable.start_migration(t, 5, C))
    t = assert(btable.start_migration(t, 255, C))
    t.blocked[5] = true -- kvcs.buckets.block's result
    t = assert(btable.add_pattern(t, "aa*"))
    local s = dptable.spec(t)
    assert.same({ A, B, C }, s.servers)
    assert.same({ [6] = 3, [256] = 3 }, s.migrating)
    assert.same({ [6] = true }, s.blocked)
    assert.equal(2, s.owner[6]) -- still owned by B while it migrates
    assert.same({ "aa*" }, s.patterns)
    assert.equal(t.version, s.version)
  end)

  it("carries the namespace's policy compiled, with its version; a bad one is refused", function()
    local t = assert(btable.init("test", 256, { A }))
    assert.is_nil(dptable.spec(t).policy) -- none published: the local file routes
    t = assert(btable.with_policy(t, "return { hash = 'crc16', rules = { { match = 'a*', read_only = true } } }"))
    local s = assert(dptable.spec(t))
    assert.equal(t.policy.version, s.policy.version)
    assert.equal("crc16", s.policy.hash)
    assert.is_true(s.policy.rules[1].read_only)
    assert.equal(t.policy.source, s.policy.source)
    local t2 = assert(btable.with_policy(t, "return { hash = 'md5' }"))
    local none, err = dptable.spec(t2)
    assert.is_nil(none)
    assert.truthy(err:find("does not compile", 1, true), err)
  end)
end)
