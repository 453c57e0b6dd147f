-- kvcs.buckets: each transition of a moving bucket on plain tables, its
-- retries (idempotent: the same table back), the abort path and the states
-- a transition refuses to leave from.
local buckets = require "kvcs.buckets"
local btable = require "kv.btable"
local codes = require "kv.codes"

local A, B, C, D = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375", "127.0.0.1:6377"

-- 256 buckets: even ones on A, odd ones on B
local function two() return assert(btable.init("test", 256, { A, B })) end

local function states(t, list)
  local out = {}
  for i, b in ipairs(list) do out[i] = buckets.state(t, b) end
  return out
end

-- a deep copy, to check that a transition leaves its input alone
local function snapshot(t) return btable.decode(btable.encode(t), t.namespace) end

describe("kvcs.buckets", function()
  describe("block", function()
    it("marks owned buckets migrating to dst and blocked, in one version", function()
      local t = two()
      local n = assert(buckets.block(t, C, { 4, 5 }))
      assert.equal(t.version + 1, n.version)
      assert.same({ "blocked", "blocked", "owned" }, states(n, { 4, 5, 6 }))
      assert.equal(C, n.migrating[4])
      assert.equal(A, n.owner[4]) -- still served by its owner's keys: nobody moves them yet
      assert.same({ "owned", "owned" }, states(t, { 4, 5 }))
    end)

    it("returns the same table for a retry (blocked or migrating to dst)", function()
      local n = assert(buckets.block(two(), C, { 4 }))
      assert.equal(n, buckets.block(n, C, { 4 }))
      local m = assert(buckets.migrate(n, { 4 }))
      assert.equal(m, buckets.block(m, C, { 4 }))
    end)

    it("blocks only the new buckets of a partly retried list", function()
      local n = assert(buckets.block(two(), C, { 4 }))
      local m = assert(buckets.block(n, C, { 4, 6 }))
      assert.equal(n.version + 1, m.version)
      assert.same({ "blocked", "blocked" }, states(m, { 4, 6 }))
    end)

    it("refuses what cannot start, naming the bucket", function()
      local n = assert(buckets.block(two(), C, { 4 }))
      local cases = {
        { n, D, { 4 }, codes.TABLE_CHANGE_FAILED, "bucket 4 is already migrating to 127.0.0.1:6375" },
        { n, A, { 6 }, codes.TABLE_CHANGE_FAILED, "bucket 6 is already owned by 127.0.0.1:6371" },
        { n, C, { 256 }, codes.BAD_PARAM, "bucket 256 is not 0..255" },
        { n, C, { -1 }, codes.BAD_PARAM, "bucket -1 is not 0..255" },
        { n, C, { 1.5 }, codes.BAD_PARAM, "bucket 1.5 is not 0..255" },
        { n, "nohost", { 6 }, codes.BAD_ADDR, "invalid destination nohost" },
      }
      for _, c in ipairs(cases) do
        local r, code, msg = buckets.block(c[1], c[2], c[3])
        assert.is_nil(r)
        assert.equal(c[4], code)
        assert.equal(c[5], msg)
      end
    end)
  end)

  describe("migrate", function()
    it("unblocks blocked buckets, once", function()
      local n = assert(buckets.block(two(), C, { 4, 5 }))
      local m = assert(buckets.migrate(n, { 4, 5 }))
      assert.equal(n.version + 1, m.version)
      assert.same({ "migrating", "migrating" }, states(m, { 4, 5 }))
      assert.equal(C, m.migrating[5])
      assert.equal(m, buckets.migrate(m, { 4, 5 }))
    end)

    it("refuses an owned bucket (a START aborted meanwhile)", function()
      local r, code, msg = buckets.migrate(two(), { 4 })
      assert.is_nil(r)
      assert.equal(codes.TABLE_CHANGE_FAILED, code)
      assert.equal("bucket 4 is not migrating", msg)
    end)
  end)

  describe("finish", function()
    it("makes dst the owner of migrating buckets; a retry changes nothing", function()
      local m = assert(buckets.migrate(assert(buckets.block(two(), C, { 4, 5 })), { 4, 5 }))
      local f = assert(buckets.finish(m, C, { 4, 5 }))
      assert.equal(m.version + 1, f.version)
      assert.equal(C, f.owner[4])
      assert.equal(C, f.owner[5])
      assert.same({ "owned", "owned" }, states(f, { 4, 5 }))
      assert.is_nil(next(f.migrating))
      assert.equal(f, buckets.finish(f, C, { 4, 5 }))
    end)

    it("refuses a blocked bucket (its keys have not moved) and a wrong destination", function()
      local n = assert(buckets.block(two(), C, { 4 }))
      local r, code, msg = buckets.finish(n, C, { 4 })
      assert.is_nil(r)
      assert.equal(codes.TABLE_CHANGE_FAILED, code)
      assert.equal("bucket 4 is blocked: its MIGRATE.START has not completed", msg)
      local m = assert(buckets.migrate(n, { 4 }))
      assert.same({ nil, codes.TABLE_CHANGE_FAILED, "bucket 4 is not migrating to 127.0.0.1:6377" },
        { buckets.finish(m, D, { 4 }) })
      assert.same({ nil, codes.TABLE_CHANGE_FAILED, "bucket 6 is not migrating to 127.0.0.1:6375" },
        { buckets.finish(m, C, { 6 }) })
    end)
  end)

  describe("abort", function()
    it("gives blocked buckets back to their owner, in a new version", function()
      local t = two()
      local n = assert(buckets.block(t, C, { 4, 5 }))
      local a = assert(buckets.abort(n, { 4, 5 }))
      assert.equal(n.version + 1, a.version)
      assert.same({ "owned", "owned" }, states(a, { 4, 5 }))
      assert.equal(A, a.owner[4])
      assert.equal(B, a.owner[5])
      assert.is_nil(next(a.migrating))
      assert.is_nil(next(a.blocked))
      assert.equal(a, buckets.abort(a, { 4, 5 })) -- a retry
      -- and the bucket can start again
      assert.same({ "blocked" }, states(assert(buckets.block(a, C, { 4 })), { 4 }))
    end)

    it("refuses a migrating bucket: its keys may be on the destination", function()
      local m = assert(buckets.migrate(assert(buckets.block(two(), C, { 4 })), { 4 }))
      local r, code, msg = buckets.abort(m, { 4 })
      assert.is_nil(r)
      assert.equal(codes.TABLE_CHANGE_FAILED, code)
      assert.truthy(msg:find("bucket 4 is migrating to 127.0.0.1:6375", 1, true), msg)
    end)

    it("leaves other moves alone", function()
      local n = assert(buckets.block(two(), C, { 4, 6 }))
      n = assert(buckets.migrate(n, { 6 }))
      local a = assert(buckets.abort(n, { 4 }))
      assert.same({ "owned", "migrating" }, states(a, { 4, 6 }))
    end)
  end)

  it("select picks the buckets of a list in one state", function()
    local n = assert(buckets.block(two(), C, { 4, 6 }))
    n = assert(buckets.migrate(n, { 6 }))
    assert.same({ 4 }, buckets.select(n, { 3, 4, 6 }, "blocked"))
    assert.same({ 6 }, buckets.select(n, { 3, 4, 6 }, "migrating"))
    assert.same({ 3 }, buckets.select(n, { 3, 4, 6 }, "owned"))
  end)

  it("never modifies its input, and the blocked mark survives the JSON form", function()
    local t = two()
    local steps = {
      function(x) return buckets.block(x, C, { 4, 5 }) end,
      function(x) return buckets.abort(x, { 5 }) end,
      function(x) return buckets.migrate(x, { 4 }) end,
      function(x) return buckets.finish(x, C, { 4 }) end,
    }
    for _, step in ipairs(steps) do
      local before = snapshot(t)
      local n = assert(step(t))
      assert.same(before, snapshot(t))
      assert.same(n, snapshot(n)) -- encode/decode keeps blocked marks
      t = n
    end
    assert.equal(C, t.owner[4])
    assert.equal(B, t.owner[5])
    assert.equal(5, t.version)
  end)
end)
