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
end)
