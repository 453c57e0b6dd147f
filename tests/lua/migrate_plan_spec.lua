local bt = require "kv.btable"
local mp = require "tools.migrate_plan"

local A, B, C, D = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375", "127.0.0.1:6377"

local function two()
  return assert(bt.init("test", 1023, { A, B }))
end

local function three()
  return assert(bt.init("test", 1023, { A, B, C }))
end

-- Runs a plan the way migration_tool does (START then DONE per round) and
-- returns the final table.
local function execute(t, p)
  for _, round in ipairs(p.rounds) do
    local seen = {}
    for _, mv in ipairs(round) do
      assert.is_nil(seen[mv.bucket], "bucket " .. mv.bucket .. " twice in a round")
      seen[mv.bucket] = true
      assert.equals(t.owner[mv.bucket], mv.src, "src of bucket " .. mv.bucket)
      if t.migrating[mv.bucket] ~= mv.dst then
        t = assert(bt.start_migration(t, mv.bucket, mv.dst))
      end
    end
    for _, mv in ipairs(round) do t = assert(bt.finish_migration(t, mv.bucket)) end
  end
  return t
end

local function assert_balanced(t)
  local counts = bt.counts(t)
  local n = #bt.servers(t)
  local lo = math.floor(t.bucket_count / n)
  for addr, c in pairs(counts) do
    assert(c == lo or c == lo + 1, addr .. " holds " .. c .. ", want " .. lo .. " or " .. (lo + 1))
  end
end

local function same_owners(a, b)
  for i = 0, a.bucket_count - 1 do
    if a.owner[i] ~= b.owner[i] then return false end
  end
  return true
end

describe("tools.migrate_plan", function()
  describe("add", function()
    it("2 -> 3 masters from 1023 buckets moves exactly 341 buckets, all to the new one", function()
      local t = two()
      local p = assert(mp.plan(t, "add", C, { parallel = 64 }))
      assert.equals(341, p.total)
      assert.equals(341, #p.moves)
      assert.equals(0, p.left)
      assert.same({}, p.finish)
      local from = {}
      for _, mv in ipairs(p.moves) do
        assert.equals(C, mv.dst)
        assert.equals(t.owner[mv.bucket], mv.src)
        from[mv.src] = (from[mv.src] or 0) + 1
      end
      -- the donors end even: 512 - 171 = 341, 511 - 170 = 341
      assert.same({ [A] = 171, [B] = 170 }, from)
      local final = execute(t, p)
      assert.same({ [A] = 341, [B] = 341, [C] = 341 }, bt.counts(final))
      assert.is_true(same_owners(final, p.target))
      assert.same({}, final.migrating)
    end)

    it("cuts the moves into rounds of --parallel buckets, sources taking turns", function()
      local p = assert(mp.plan(two(), "add", C, { parallel = 64 }))
      assert.equals(6, #p.rounds)  -- 5 x 64 + 21
      for i = 1, 5 do assert.equals(64, #p.rounds[i]) end
      assert.equals(21, #p.rounds[6])
      local prev = { [A] = -1, [B] = -1 }
      for i, r in ipairs(p.rounds) do
        local per = {}
        for _, mv in ipairs(r) do
          assert.is_true(mv.bucket > prev[mv.src])  -- each source in bucket order
          prev[mv.src] = mv.bucket
          per[mv.src] = (per[mv.src] or 0) + 1
        end
        if i < 6 then assert.same({ [A] = 32, [B] = 32 }, per) end
      end
      assert.equals(1, #assert(mp.plan(two(), "add", C, { parallel = 1000 })).rounds)
      assert.equals(341, #assert(mp.plan(two(), "add", C, { parallel = 1 })).rounds)
    end)

    it("adding a fourth master balances 4 ways", function()
      local t = execute(two(), assert(mp.plan(two(), "add", C, {})))
      local p = assert(mp.plan(t, "add", D, { parallel = 100 }))
      assert.equals(255, p.total)  -- floor(1023 / 4)
      local final = execute(t, p)
      assert_balanced(final)
      assert.equals(255, bt.counts(final)[D])
    end)

    it("has nothing to do once the new master holds its share", function()
      local t = execute(two(), assert(mp.plan(two(), "add", C, {})))
      local p = assert(mp.plan(t, "add", C, {}))
      assert.equals(0, p.total)
      assert.same({}, p.rounds)
    end)

    it("--count moves at most N buckets, and a rerun moves the rest", function()
      local t = two()
      local p = assert(mp.plan(t, "add", C, { count = 10, parallel = 4 }))
      assert.equals(10, p.total)
      assert.equals(331, p.left)
      assert.equals(3, #p.rounds)  -- 4 + 4 + 2
      local full = assert(mp.plan(t, "add", C, {}))
      for i = 1, 10 do assert.same(full.moves[i], p.moves[i]) end
      t = execute(t, p)
      assert.equals(10, bt.counts(t)[C])
      local rest = assert(mp.plan(t, "add", C, {}))
      assert.equals(331, rest.total)
      assert.same({ [A] = 341, [B] = 341, [C] = 341 }, bt.counts(execute(t, rest)))
    end)
  end)

  describe("del", function()
    it("spreads the removed master's buckets evenly over the others", function()
      local t = three()
      local p = assert(mp.plan(t, "del", C, { parallel = 64 }))
      assert.equals(341, p.total)
      local to = {}
      for _, mv in ipairs(p.moves) do
        assert.equals(C, mv.src)
        to[mv.dst] = (to[mv.dst] or 0) + 1
      end
      assert.is_true(math.abs(to[A] - to[B]) <= 1)
      local final = execute(t, p)
      assert.is_nil(bt.counts(final)[C])
      assert_balanced(final)
    end)

    it("undoes an add: 2 -> 3 -> 2 leaves the two old masters balanced", function()
      local t = execute(two(), assert(mp.plan(two(), "add", C, {})))
      local final = execute(t, assert(mp.plan(t, "del", C, { parallel = 7 })))
      assert.same({ [A] = 512, [B] = 511 }, bt.counts(final))
    end)

    it("spreads over three remaining masters", function()
      local t = assert(bt.init("test", 1024, { A, B, C, D }))
      local final = execute(t, assert(mp.plan(t, "del", B, {})))
      assert.same({ [A] = 342, [C] = 341, [D] = 341 }, bt.counts(final))
    end)

    it("has nothing to do for a master that owns nothing (a finished run)", function()
      local p = assert(mp.plan(two(), "del", C, {}))
      assert.equals(0, p.total)
    end)

    it("refuses to remove the last master", function()
      local t = assert(bt.init("test", 256, { A }))
      local p, err = mp.plan(t, "del", A, {})
      assert.is_nil(p)
      assert.matches("last server", err)
    end)

    it("--count limits a del too", function()
      local p = assert(mp.plan(three(), "del", C, { count = 5 }))
      assert.equals(5, p.total)
      assert.equals(336, p.left)
    end)
  end)

  describe("resuming a partly migrated table", function()
    -- an --add C killed after 100 buckets were done and 64 were in flight
    local function interrupted_add()
      local t = two()
      local full = assert(mp.plan(t, "add", C, { parallel = 64 }))
      for i = 1, 100 do t = assert(bt.start_migration(t, full.moves[i].bucket, C)) end
      for i = 1, 100 do t = assert(bt.finish_migration(t, full.moves[i].bucket)) end
      for i = 101, 164 do t = assert(bt.start_migration(t, full.moves[i].bucket, C)) end
      return t, full
    end

    it("finishes the migrating buckets first, then the rest, nothing twice", function()
      local t, full = interrupted_add()
      local p = assert(mp.plan(t, "add", C, { parallel = 64 }))
      assert.equals(64, #p.finish)
      assert.equals(241, p.total)
      assert.same(p.finish, p.rounds[1])
      for i = 1, 64 do
        assert.equals(C, p.rounds[1][i].dst)
        assert.equals(t.owner[p.rounds[1][i].bucket], p.rounds[1][i].src)
      end
      local seen = {}
      for _, mv in ipairs(p.moves) do
        assert.is_nil(seen[mv.bucket])
        seen[mv.bucket] = true
        assert.equals(C, mv.dst)
      end
      -- together with what was done, exactly the buckets of the full plan
      for i = 1, 100 do assert.is_nil(seen[full.moves[i].bucket]) end
      for i = 101, 341 do assert.is_true(seen[full.moves[i].bucket]) end
      assert.same({ [A] = 341, [B] = 341, [C] = 341 }, bt.counts(execute(t, p)))
    end)

    it("keeps finishing rounds apart from new ones", function()
      local t = two()
      for _, b in ipairs({ 1022, 1021, 1020 }) do t = assert(bt.start_migration(t, b, C)) end
      local p = assert(mp.plan(t, "add", C, { parallel = 64 }))
      assert.equals(3, #p.rounds[1])
      assert.equals(64, #p.rounds[2])
      assert.equals(341, p.total)
    end)

    it("finishes a move towards another master before planning an add", function()
      local t = three()
      t = assert(bt.start_migration(t, 5, A)) -- 5 is owned by C; a del C was interrupted
      local p = assert(mp.plan(t, "add", D, { parallel = 10 }))
      assert.same({ { bucket = 5, src = C, dst = A } }, p.finish)
      assert.equals(1, #p.rounds[1])
      local final = execute(t, p)
      assert_balanced(final)
      assert.equals(255, bt.counts(final)[D])
    end)

    it("a del interrupted mid-way resumes onto the same even spread", function()
      local t = execute(two(), assert(mp.plan(two(), "add", C, {})))
      local full = assert(mp.plan(t, "del", C, { parallel = 64 }))
      local part = t
      for i = 1, 150 do part = assert(bt.start_migration(part, full.moves[i].bucket, full.moves[i].dst)) end
      for i = 1, 120 do part = assert(bt.finish_migration(part, full.moves[i].bucket)) end
      local p = assert(mp.plan(part, "del", C, { parallel = 64 }))
      assert.equals(30, #p.finish)
      assert.equals(341 - 120, p.total)
      local final = execute(part, p)
      assert.is_nil(bt.counts(final)[C])
      assert.same({ [A] = 512, [B] = 511 }, bt.counts(final))
    end)

    it("a bucket migrating onto the master being removed is finished there, then moved away", function()
      local t = two()
      t = assert(bt.start_migration(t, 1022, C)) -- an --add C that stopped at once
      local p = assert(mp.plan(t, "del", C, { parallel = 64 }))
      assert.same({ { bucket = 1022, src = A, dst = C } }, p.rounds[1])
      assert.same({ { bucket = 1022, src = C, dst = A } }, p.rounds[2])
      local final = execute(t, p)
      assert.is_nil(bt.counts(final)[C])
      assert.same({}, final.migrating)
    end)

    it("--count counts the finishing moves", function()
      local t = interrupted_add()
      local p = assert(mp.plan(t, "add", C, { count = 10 }))
      assert.equals(10, p.total)
      assert.equals(10, #p.finish)
    end)
  end)

  describe("interleave", function()
    it("alternates sources, each in its own order, the rest at the end", function()
      local m = {
        { bucket = 1, src = B, dst = C }, { bucket = 2, src = B, dst = C }, { bucket = 3, src = B, dst = C },
        { bucket = 4, src = A, dst = C }, { bucket = 5, src = B, dst = C },
      }
      local got = {}
      for i, mv in ipairs(mp.interleave(m)) do got[i] = mv.bucket end
      assert.same({ 4, 1, 2, 3, 5 }, got)
    end)

    it("keeps every round two-sourced after a del and an add changed the layout", function()
      local t = execute(two(), assert(mp.plan(two(), "add", C, {})))
      t = execute(t, assert(mp.plan(t, "del", C, {})))
      local p = assert(mp.plan(t, "add", C, { parallel = 64 }))
      for i = 1, 5 do
        local per = {}
        for _, mv in ipairs(p.rounds[i]) do per[mv.src] = (per[mv.src] or 0) + 1 end
        assert.same({ [A] = 32, [B] = 32 }, per)
      end
    end)
  end)

  describe("grouping", function()
    it("by_dst lists each destination once with sorted buckets", function()
      local r = { { bucket = 9, src = C, dst = B }, { bucket = 3, src = C, dst = A }, { bucket = 1, src = C, dst = B } }
      assert.same({ { dst = A, buckets = { 3 } }, { dst = B, buckets = { 1, 9 } } }, mp.by_dst(r))
    end)

    it("by_src groups the moves per source", function()
      local r = { { bucket = 9, src = B, dst = C }, { bucket = 3, src = A, dst = C }, { bucket = 1, src = B, dst = C } }
      local g = mp.by_src(r)
      assert.equals(2, #g)
      assert.equals(A, g[1].src)
      assert.equals(1, #g[1].moves)
      assert.equals(B, g[2].src)
      assert.same({ 9, 1 }, { g[2].moves[1].bucket, g[2].moves[2].bucket })
    end)

    it("servers lists every source and destination", function()
      local p = assert(mp.plan(two(), "add", C, {}))
      assert.same({ A, B, C }, mp.servers(p))
    end)
  end)

  describe("rebalance", function()
    -- 1023 buckets on A, B, C; every bucket weighs w, those of `heavy`
    -- weigh w * factor
    local function loads(t, heavy, w, factor)
      local l = {}
      for b = 0, t.bucket_count - 1 do l[b] = t.owner[b] == heavy and w * factor or w end
      return l
    end
    local function totals(t, load)
      local tot = {}
      for b = 0, t.bucket_count - 1 do tot[t.owner[b]] = (tot[t.owner[b]] or 0) + (load[b] or 0) end
      return tot
    end
    local function max_min(tot)
      local hi, lo = -1, math.huge
      for _, v in pairs(tot) do hi = math.max(hi, v); lo = math.min(lo, v) end
      return hi, lo
    end

    it("evens an uneven cluster within the spread, and the plan runs", function()
      local t = three()
      local load = loads(t, A, 100, 3) -- A holds 3x what B or C hold
      local r = mp.rebalance(t, load, { spread = 10 })
      assert.is_true(r.within)
      assert.is_true(r.spread_before > 100)
      assert.is_true(r.spread_after <= 10)
      local p = assert(mp.plan(t, "rebalance", nil, { moves = r.moves, parallel = 64 }))
      assert.equals(#r.moves, p.total)
      local t2 = execute(t, p)
      local hi, lo = max_min(totals(t2, load))
      assert.is_true(hi <= lo * 1.1, hi .. " vs " .. lo)
      assert.same(r.after, totals(t2, load))
      for _, mv in ipairs(r.moves) do assert.equals(A, mv.src) end
    end)

    it("moves few buckets: the heaviest ones that fit", function()
      local t = three()
      local load = loads(t, A, 10, 1)
      -- A also holds three huge buckets: moving two of them is enough
      local own = {}
      for b = 0, t.bucket_count - 1 do if t.owner[b] == A then own[#own + 1] = b end end
      for i = 1, 3 do load[own[i]] = 3410 end
      local r = mp.rebalance(t, load, { spread = 10 })
      assert.is_true(r.within)
      assert.equals(2, #r.moves)
      assert.same({ own[1], own[2] }, { r.moves[1].bucket, r.moves[2].bucket })
      assert.are_not.equal(r.moves[1].dst, r.moves[2].dst)
    end)

    it("plans nothing for an even cluster", function()
      local t = three()
      local r = mp.rebalance(t, loads(t, A, 100, 1.05), { spread = 10 })
      assert.equals(0, #r.moves)
      assert.is_true(r.within)
      local p = assert(mp.plan(t, "rebalance", nil, { moves = r.moves }))
      assert.equals(0, p.total)
    end)

    it("never moves a bucket that overshoots; stops when no move helps", function()
      local t = assert(bt.init("test", 256, { A, B }))
      local load = {}
      local a_bucket
      for b = 0, 255 do if t.owner[b] == A then a_bucket = a_bucket or b end end
      load[a_bucket] = 1000 -- one bucket holds everything: nothing can even it
      local r = mp.rebalance(t, load, { spread = 10 })
      assert.equals(0, #r.moves)
      assert.is_false(r.within)
      assert.equals(math.huge, r.spread_after)
    end)

    it("is deterministic on ties", function()
      local t = three()
      local load = loads(t, A, 1, 2)
      local r1 = mp.rebalance(t, load, { spread = 5 })
      local r2 = mp.rebalance(t, load, { spread = 5 })
      assert.same(r1.moves, r2.moves)
      -- equal buckets: the lowest goes first, to the lowest-addressed light master
      assert.equals(B, r1.moves[1].dst)
      local first = math.huge
      for b = 0, t.bucket_count - 1 do if t.owner[b] == A then first = math.min(first, b) end end
      assert.equals(first, r1.moves[1].bucket)
    end)

    it("keys and bytes give different plans", function()
      local t = assert(bt.init("test", 256, { A, B }))
      local keys, bytes = {}, {}
      for b = 0, 255 do
        keys[b] = 10
        bytes[b] = 100
      end
      -- A's buckets hold the same number of keys, but ten of them big values
      local n = 0
      for b = 0, 255 do
        if t.owner[b] == A and n < 10 then bytes[b] = 2000; n = n + 1 end
      end
      assert.equals(0, #mp.rebalance(t, keys, { spread = 10 }).moves)
      local r = mp.rebalance(t, bytes, { spread = 10 })
      assert.is_true(r.within)
      assert.is_true(#r.moves > 0 and #r.moves <= 5, #r.moves .. " moves")
    end)

    it("max_moves caps the plan", function()
      local t = three()
      local r = mp.rebalance(t, loads(t, A, 1, 3), { spread = 0, max_moves = 4 })
      assert.equals(4, #r.moves)
    end)

    it("plan refuses moves that do not fit the table", function()
      local t = three()
      local b = 0
      local wrong = t.owner[b] == A and B or A
      assert.is_nil((mp.plan(t, "rebalance", nil, { moves = { { bucket = b, src = wrong, dst = C } } })))
    end)

    it("finishes buckets left migrating first, then the rebalance moves", function()
      local t = three()
      local b0 = 0
      local dst = t.owner[b0] == A and B or A
      t = assert(bt.start_migration(t, b0, dst))
      local finish, done = mp.finished(t)
      assert.equals(1, #finish)
      local r = mp.rebalance(done, loads(done, A, 100, 3), { spread = 10 })
      local p = assert(mp.plan(t, "rebalance", nil, { moves = r.moves }))
      assert.equals(#r.moves + 1, p.total)
      assert.same({ bucket = b0, src = t.owner[b0], dst = dst }, p.rounds[1][1])
      execute(t, p)
    end)
  end)
end)
