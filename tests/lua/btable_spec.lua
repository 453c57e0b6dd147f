local bt = require "kv.btable"
local cjson = require "cjson"

local A, B, C, D = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375", "127.0.0.1:6377"

local function two()
  return assert(bt.init("test", 1023, { A, B }, "1ea9e"))
end

local function snapshot(t)
  return bt.encode(t) .. t.version
end

-- every server holds floor or ceil of bucket_count / servers
local function assert_balanced(t)
  local counts = bt.counts(t)
  local n = #bt.servers(t)
  local lo = math.floor(t.bucket_count / n)
  for addr, c in pairs(counts) do
    assert(c == lo or c == lo + 1, addr .. " holds " .. c .. ", want " .. lo .. " or " .. (lo + 1))
  end
end

describe("kv.btable", function()
  describe("init", function()
    it("deals buckets round robin in list order", function()
      local t = two()
      assert.equals("test", t.namespace)
      assert.equals(1023, t.bucket_count)
      assert.equals(1, t.version)
      assert.same({}, t.migrating)
      assert.same({}, t.patterns)
      assert.same({ [A] = 512, [B] = 511 }, bt.counts(t))
      for b = 0, 1022 do
        assert.equals(b % 2 == 0 and A or B, t.owner[b])
      end
      local r = assert(bt.init("x", 256, { B, A, C }))
      assert.equals(B, r.owner[0])
      assert.equals(A, r.owner[1])
      assert.equals(C, r.owner[2])
      assert.equals(B, r.owner[255])
      assert.equals(16384, assert(bt.init("x", 16384, { A })).bucket_count)
    end)

    local many = {}
    for i = 1, 257 do many[i] = "10.0." .. math.floor(i / 256) .. "." .. (i % 256) .. ":6379" end
    local bad = {
      { { "a/b", 1023, { A } }, "may only contain" },
      { { "test", 255, { A } }, "bucket_count must be an integer from 256 to 16384, got 255" },
      { { "test", 16385, { A } }, "got 16385" },
      { { "test", 1023.5, { A } }, "bucket_count" },
      { { "test", "1023", { A } }, "bucket_count" },
      { { "test", nil, { A } }, "bucket_count" },
      { { "test", 1023, {} }, "address_list must be a non-empty array" },
      { { "test", 1023, A }, "address_list must be a non-empty array" },
      { { "test", 1023, { x = A } }, "address_list must be a non-empty array" },
      { { "test", 1023, { A, "127.0.0.1:0" } }, "port must be" },
      { { "test", 1023, { A, "localhost:6379" } }, "host must be" },
      { { "test", 1023, { A, 6379 } }, "must be a string" },
      { { "test", 1023, { A, B, A } }, "server address 127.0.0.1:6371 is listed twice" },
      { { "test", 256, many }, "more servers (257) than buckets (256)" },
    }
    for i, c in ipairs(bad) do
      it("rejects bad input " .. i .. " (" .. c[2] .. ")", function()
        local t, err = bt.init(c[1][1], c[1][2], c[1][3])
        assert.is_nil(t)
        assert.matches(c[2], err, 1, true)
      end)
    end
  end)

  describe("queries", function()
    it("lists servers, counts and addresses", function()
      local t = assert(bt.start_migration(two(), 5, C))
      assert.same({ A, B }, bt.servers(t))
      assert.same({ A, B, C }, bt.addresses(t))
      assert.same({ [A] = 512, [B] = 511 }, bt.counts(t))
    end)
  end)

  describe("JSON", function()
    it("to_json has the SPEC §5 shape", function()
      local j = bt.to_json(two())
      assert.equals("test", j.namespace)
      assert.equals(1023, j.bucket_count)
      assert.equals(1, j.version)
      assert.equals(65535, j.migrating_bucket_id)
      assert.equals("", j.migrating_server_addr)
      assert.same({}, j.migrating)
      assert.same({}, j.patterns)
      assert.equals(bt.array_mt, getmetatable(j.patterns))
      assert.equals(bt.array_mt, getmetatable(j.migrating))
      assert.equals(512, #j.table[A])
      assert.equals(0, j.table[A][1])
      assert.equals(1022, j.table[A][512])
      assert.equals(1021, j.table[B][511])
    end)

    it("encodes compact JSON with sorted keys and a newline", function()
      local t = assert(bt.init("ns", 256, { B, A }, "00ff"))
      local s = bt.encode(t)
      local odd, even = {}, {}
      for b = 0, 255 do
        if b % 2 == 0 then even[#even + 1] = b else odd[#odd + 1] = b end
      end
      assert.equals('{"bucket_count":256,"lineage":"00ff","migrating":[],"migrating_bucket_id":65535,'
        .. '"migrating_server_addr":"","namespace":"ns","patterns":[],"table":{"'
        .. A .. '":[' .. table.concat(odd, ",") .. '],"' .. B .. '":['
        .. table.concat(even, ",") .. ']},"version":1}\n', s)
      assert.is_table(cjson.decode(s))
    end)

    it("lists every migrating bucket and repeats the lowest", function()
      local t = assert(bt.start_migration(two(), 9, C))
      t = assert(bt.start_migration(t, 4, C))
      local j = bt.to_json(t)
      assert.equals(4, j.migrating_bucket_id)
      assert.equals(C, j.migrating_server_addr)
      assert.same({ { bucket = 4, dst = C }, { bucket = 9, dst = C } }, j.migrating)
      assert.matches('"migrating":%[{"bucket":4,"dst":"127.0.0.1:6375"},{"bucket":9,', bt.encode(t))
      -- a migrating bucket stays under its owner
      assert.equals(4, j.table[A][3])
    end)

    it("round-trips encode -> decode", function()
      local t = assert(bt.start_migration(two(), 9, C))
      t = assert(bt.add_pattern(t, 'a"b\\c\n/*'))
      t = assert(bt.add_pattern(t, "x?"))
      local s = bt.encode(t)
      local r = assert(bt.decode(s, "test"))
      assert.same(t, r)
      assert.equals(s, bt.encode(r))
      assert.same(two(), assert(bt.decode(bt.encode(two()))))
    end)

    it("loads the old single-bucket format (no namespace, bucket_count, patterns)", function()
      local t = two()
      local j = bt.to_json(t)
      local old = cjson.encode({
        migrating_bucket_id = 682, migrating_server_addr = C, table = j.table, version = 12,
      })
      local r = assert(bt.decode(old, "test"))
      assert.equals(1023, r.bucket_count)
      assert.equals("test", r.namespace)
      assert.equals(12, r.version)
      assert.same({ [682] = C }, r.migrating)
      assert.same({}, r.patterns)
      old = cjson.encode({
        migrating_bucket_id = 65535, migrating_server_addr = "", table = j.table, version = 1,
      })
      r = assert(bt.decode(old, "test"))
      assert.same({}, r.migrating)
      -- patterns written by cjson as {} (empty object) also load
      r = assert(bt.decode('{"patterns":{},"version":1,"table":' .. cjson.encode(j.table) .. "}", "t"))
      assert.same({}, r.patterns)
    end)

    -- corrupt variants: each is the good table with one thing broken
    local function good()
      local j = bt.to_json(assert(bt.start_migration(two(), 6, C)))
      j.patterns = { "aa*" }
      return j
    end
    local corrupt = {
      { "not an object", function() return 5 end, "must be a JSON object" },
      { "no namespace", function(j) j.namespace = nil end, "namespace is missing", true },
      { "bad namespace", function(j) j.namespace = "../x" end, "may only contain" },
      { "other namespace", function(j) j.namespace = "other" end, 'table is for namespace "other", expected "test"' },
      { "no version", function(j) j.version = nil end, "version must be a positive integer" },
      { "version 0", function(j) j.version = 0 end, "version must be a positive integer, got 0" },
      { "version 1.5", function(j) j.version = 1.5 end, "version must be a positive integer" },
      { "version string", function(j) j.version = "1" end, "version must be a positive integer" },
      { "version null", function(j) j.version = cjson.null end, "got null" },
      { "no table", function(j) j.table = nil end, "table must be an object" },
      { "table array", function(j) j.table = { { [A] = { 0 } } } end, "not an array" },
      { "table empty", function(j) j.table = {} end, "table is empty" },
      { "table number key", function(j) j.table[2] = { 1 } end, "table has a non-address key 2" },
      { "bad server", function(j) j.table["127.0.0.1:99999"] = j.table[B]; j.table[B] = nil end, "bad server in table" },
      { "ids not array", function(j) j.table[B] = { x = 1 } end, "the buckets of 127.0.0.1:6373 must be an array" },
      { "id not integer", function(j) j.table[B][1] = 1.5 end, "bucket id 1.5 under 127.0.0.1:6373 is not an integer" },
      { "id string", function(j) j.table[B][1] = "1" end, 'bucket id "1" under' },
      { "id out of range", function(j) j.table[B][511] = 1023 end, "bucket 1023 under 127.0.0.1:6373 is out of range 0..1022" },
      { "id negative", function(j) j.table[B][1] = -1 end, "bucket -1 under 127.0.0.1:6373 is out of range" },
      { "owned twice", function(j) j.table[B][9] = 16 end, "bucket 16 owned twice (127.0.0.1:6371, 127.0.0.1:6373)" },
      { "listed twice", function(j) j.table[B][9] = 15 end, "bucket 15 listed twice under 127.0.0.1:6373" },
      { "one gap", function(j) table.remove(j.table[B], 9) end, "bucket 17 has no owner" },
      { "gaps", function(j) table.remove(j.table[B], 9); table.remove(j.table[B], 1) end, "2 buckets have no owner (the first is 1)" },
      { "bucket_count small", function(j) j.bucket_count = 100 end, "bucket_count must be an integer from 256 to 16384" },
      { "bucket_count big", function(j) j.bucket_count = 65535 end, "bucket_count must be" },
      { "bucket_count bigger than table", function(j) j.bucket_count = 1024 end, "bucket 1023 has no owner" },
      { "bucket_count missing, too few", function(j)
          j.bucket_count = nil; j.table = { [A] = { 0, 1, 2 } }; j.migrating = nil
          j.migrating_bucket_id = nil; j.migrating_server_addr = nil
        end, "bucket_count is missing and the table lists 3 buckets" },
      { "migrating not array", function(j) j.migrating = { x = 1 } end, "migrating must be an array" },
      { "migrating entry not object", function(j) j.migrating = { 5 } end, "migrating entry 1 must be an object" },
      { "migrating bad bucket", function(j) j.migrating[1].bucket = 1023; j.migrating_bucket_id = 1023 end, "migrating entry 1: bucket 1023 is not a bucket id 0..1022" },
      { "migrating bad dst", function(j) j.migrating[1].dst = "x"; j.migrating_server_addr = "x" end, "migrating entry 1: bad destination" },
      { "migrating to owner", function(j) j.migrating[1].dst = A; j.migrating_server_addr = A end, "bucket 6 migrates to its own owner 127.0.0.1:6371" },
      { "migrating twice", function(j) j.migrating[2] = { bucket = 6, dst = D } end, "bucket 6 listed twice in migrating" },
      { "only migrating_bucket_id", function(j) j.migrating_server_addr = nil end, "must be given together" },
      { "only migrating_server_addr", function(j) j.migrating_bucket_id = nil end, "must be given together" },
      { "id not integer", function(j) j.migrating_bucket_id = "6" end, "migrating_bucket_id must be an integer" },
      { "addr not string", function(j) j.migrating_server_addr = 5 end, "migrating_server_addr must be a string" },
      { "id mismatch", function(j) j.migrating_bucket_id = 7 end, "do not match migrating (6, \"127.0.0.1:6375\")" },
      { "addr mismatch", function(j) j.migrating_server_addr = D end, "do not match migrating" },
      { "none but listed", function(j) j.migrating_bucket_id = 65535; j.migrating_server_addr = "" end, "do not match migrating" },
      { "old: none with addr", function(j) j.migrating = nil; j.migrating_bucket_id = 65535 end, "migrating_server_addr is set but migrating_bucket_id is 65535" },
      { "old: id == bucket_count", function(j) j.migrating = nil; j.migrating_bucket_id = 1023 end, "migrating_bucket_id: bucket 1023 is not a bucket id" },
      { "old: bad addr", function(j) j.migrating = nil; j.migrating_server_addr = "1.2.3:4" end, "migrating_bucket_id: bad destination" },
      { "old: to owner", function(j) j.migrating = nil; j.migrating_server_addr = A end, "migrates to its own owner" },
      { "patterns not array", function(j) j.patterns = { x = "a" } end, "patterns must be an array of strings" },
      { "pattern not string", function(j) j.patterns = { "a", 5 } end, "pattern 2 must be a non-empty string, got 5" },
      { "pattern empty", function(j) j.patterns = { "" } end, "pattern 1 must be a non-empty string" },
      { "pattern twice", function(j) j.patterns = { "a", "a" } end, 'pattern "a" is listed twice' },
    }
    for _, c in ipairs(corrupt) do
      it("rejects a corrupt table: " .. c[1], function()
        local j = good()
        j = c[2](j) or j
        local t, err = bt.from_json(j, not c[4] and "test" or nil)
        assert.is_nil(t)
        assert.matches(c[3], err, 1, true)
        -- through text too, when it is encodable
        local ok, text = pcall(cjson.encode, j)
        if ok then
          t, err = bt.decode(text, not c[4] and "test" or nil)
          assert.is_nil(t)
          assert.is_string(err)
        end
      end)
    end

    it("rejects text that is not JSON", function()
      for _, s in ipairs({ "", "{", "{\"version\":1,", "nul", "\0" }) do
        local t, err = bt.decode(s, "test")
        assert.is_nil(t)
        assert.matches("invalid JSON", err, 1, true)
      end
      assert.matches("must be a string", select(2, bt.decode(nil)), 1, true)
      assert.matches("must be a JSON object", select(2, bt.decode("[1]", "t")), 1, true)
      assert.matches("must be a JSON object", select(2, bt.decode('"x"', "t")), 1, true)
    end)
  end)

  describe("replace_server", function()
    it("moves every bucket of old to new, renames migration targets", function()
      local t = assert(bt.start_migration(two(), 3, C))
      local before = snapshot(t)
      local r = assert(bt.replace_server(t, A, D))
      assert.equals(before, snapshot(t))
      assert.equals(t.version + 1, r.version)
      assert.same({ [D] = 512, [B] = 511 }, bt.counts(r))
      for b = 0, 1022 do
        assert.equals(t.owner[b] == A and D or t.owner[b], r.owner[b])
      end
      assert.same({ [3] = C }, r.migrating)
      -- a destination only (new master died mid scale-up)
      local r2 = assert(bt.replace_server(t, C, D))
      assert.same({ [3] = D }, r2.migrating)
      assert.same(bt.counts(t), bt.counts(r2))
    end)

    it("refuses bad requests", function()
      local t = assert(bt.start_migration(two(), 3, C))
      local bad = {
        { "127.0.0.1:1", D, "server 127.0.0.1:1 is not in the table" },
        { A, B, "server 127.0.0.1:6373 is already in the table" },
        { A, C, "server 127.0.0.1:6375 is already in the table" },
        { A, A, "already in the table" },
        { "x", D, "old address" },
        { A, "1.2.3.4:0", "new address" },
      }
      for _, c in ipairs(bad) do
        local r, err = bt.replace_server(t, c[1], c[2])
        assert.is_nil(r)
        assert.matches(c[3], err, 1, true)
      end
    end)
  end)

  describe("scale_up", function()
    it("2 -> 3 with 1023 buckets moves exactly 341, all to the new server", function()
      local t = two()
      local before = snapshot(t)
      local u = assert(bt.scale_up(t, C))
      assert.equals(before, snapshot(t))
      assert.equals(2, u.version)
      assert.same({ [A] = 341, [B] = 341, [C] = 341 }, bt.counts(u))
      local moves = bt.moves(t, u)
      assert.equals(341, #moves)
      local from = {}
      for i, m in ipairs(moves) do
        assert.equals(C, m.dst)
        from[m.src] = (from[m.src] or 0) + 1
        if i > 1 then assert.is_true(moves[i - 1].bucket < m.bucket) end
      end
      assert.same({ [A] = 171, [B] = 170 }, from)
      -- the highest ids move, as the old system did: 682..1022
      assert.equals(682, moves[1].bucket)
      assert.equals(1022, moves[341].bucket)
    end)

    it("is deterministic", function()
      assert.equals(bt.encode(assert(bt.scale_up(two(), C))), bt.encode(assert(bt.scale_up(two(), C))))
    end)

    it("ends with floor/ceil and moves floor(B/N) from balanced tables", function()
      for _, bc in ipairs({ 256, 1000, 1023, 1024, 4099, 16384 }) do
        local list = { A }
        local t = assert(bt.init("t", bc, list))
        for n, addr in ipairs({ B, C, D, "127.0.0.1:6379", "10.0.0.1:1" }) do
          local u = assert(bt.scale_up(t, addr))
          assert_balanced(u)
          assert.equals(math.floor(bc / (n + 1)), #bt.moves(t, u))
          for _, m in ipairs(bt.moves(t, u)) do assert.equals(addr, m.dst) end
          t = u
        end
      end
    end)

    it("counts migrating buckets at their owner and moves those going to the new server first", function()
      local t = assert(bt.start_migration(two(), 10, C))
      t = assert(bt.start_migration(t, 11, C))
      local u = assert(bt.scale_up(t, C))
      assert.same({ [A] = 341, [B] = 341, [C] = 341 }, bt.counts(u))
      assert.equals(C, u.owner[10])
      assert.equals(C, u.owner[11])
      assert.same({}, u.migrating) -- the moves supersede the marks
      -- a migration elsewhere is kept when its bucket does not move
      local t2 = assert(bt.start_migration(two(), 0, D))
      local u2 = assert(bt.scale_up(t2, C))
      assert.equals(A, u2.owner[0])
      assert.same({ [0] = D }, u2.migrating)
    end)

    it("plans only the rest of an interrupted run", function()
      local t = two()
      local target = assert(bt.scale_up(t, C))
      local moves = bt.moves(t, target)
      -- 100 buckets done, one in flight
      local cur = t
      for i = 1, 100 do
        cur = assert(bt.start_migration(cur, moves[i].bucket, C))
        cur = assert(bt.finish_migration(cur, moves[i].bucket))
      end
      cur = assert(bt.start_migration(cur, moves[101].bucket, C))
      local again = assert(bt.scale_up(cur, C))
      assert_balanced(again)
      local rest = bt.moves(cur, again)
      assert.equals(241, #rest)
      assert.equals(moves[101].bucket, rest[1].bucket)
      -- the finished table needs no more moves
      local done = assert(bt.scale_up(again, C))
      assert.equals(0, #bt.moves(again, done))
    end)

    it("only moves towards the new server from unbalanced tables", function()
      local a, b = {}, {}
      for i = 0, 255 do
        if i < 200 then a[#a + 1] = i else b[#b + 1] = i end
      end
      local t = assert(bt.from_json({ namespace = "t", version = 1, table = { [A] = a, [B] = b } }))
      local u = assert(bt.scale_up(t, C))
      -- the best that moving only to C allows: A gives until it is level with C
      assert.same({ [A] = 100, [B] = 56, [C] = 100 }, bt.counts(u))
      for _, m in ipairs(bt.moves(t, u)) do
        assert.equals(A, m.src)
        assert.equals(C, m.dst)
      end
    end)

    it("refuses bad addresses", function()
      local u, err = bt.scale_up(two(), "127.0.0.1")
      assert.is_nil(u)
      assert.matches("not of the form", err, 1, true)
    end)
  end)

  describe("scale_down", function()
    it("3 -> 2 spreads only the removed server's buckets, evenly", function()
      local t = assert(bt.scale_up(two(), C))
      local before = snapshot(t)
      local d = assert(bt.scale_down(t, C))
      assert.equals(before, snapshot(t))
      assert.equals(t.version + 1, d.version)
      assert.same({ [A] = 512, [B] = 511 }, bt.counts(d))
      local moves = bt.moves(t, d)
      assert.equals(341, #moves)
      for _, m in ipairs(moves) do assert.equals(C, m.src) end
      -- removing a server of the original pair
      local d2 = assert(bt.scale_down(t, A))
      assert.same({ [B] = 512, [C] = 511 }, bt.counts(d2))
      for _, m in ipairs(bt.moves(t, d2)) do assert.equals(A, m.src) end
    end)

    it("ends with floor/ceil for many sizes", function()
      for _, bc in ipairs({ 256, 1023, 1024, 16384 }) do
        local t = assert(bt.init("t", bc, { A, B, C, D, "127.0.0.1:6379" }))
        for _, addr in ipairs({ C, A, "127.0.0.1:6379", D }) do
          local d = assert(bt.scale_down(t, addr))
          assert_balanced(d)
          for _, m in ipairs(bt.moves(t, d)) do assert.equals(addr, m.src) end
          assert.is_nil(bt.counts(d)[addr])
          t = d
        end
        assert.same({ [B] = bc }, bt.counts(t))
      end
    end)

    it("sends a bucket migrating to a remaining server there; drops migrations to the removed one", function()
      local t = assert(bt.init("t", 300, { A, B, C }))
      t = assert(bt.start_migration(t, 2, B))   -- C -> B
      t = assert(bt.start_migration(t, 0, C))   -- A -> C
      t = assert(bt.start_migration(t, 1, A))   -- B -> A (kept)
      local d = assert(bt.scale_down(t, C))
      assert.equals(B, d.owner[2])
      assert.equals(A, d.owner[0])
      assert.same({ [1] = A }, d.migrating)
      assert.same({ [A] = 150, [B] = 150 }, bt.counts(d))
    end)

    it("refuses to remove the last server or an unknown one", function()
      local one = assert(bt.init("t", 256, { A }))
      local d, err = bt.scale_down(one, A)
      assert.is_nil(d)
      assert.matches("it is the last server", err, 1, true)
      d, err = bt.scale_down(two(), C)
      assert.is_nil(d)
      assert.matches("server 127.0.0.1:6375 owns no bucket", err, 1, true)
      d, err = bt.scale_down(two(), "nope")
      assert.is_nil(d)
      assert.matches("not of the form", err, 1, true)
    end)
  end)

  describe("moves", function()
    it("lists changed buckets by bucket id", function()
      local t = two()
      assert.same({}, bt.moves(t, t))
      local r = assert(bt.replace_server(t, B, C))
      local m = bt.moves(t, r)
      assert.equals(511, #m)
      assert.same({ bucket = 1, src = B, dst = C }, m[1])
      assert.has_error(function() bt.moves(t, assert(bt.init("t", 256, { A }))) end)
    end)
  end)

  describe("migration marks and patterns", function()
    it("starts and finishes a migration", function()
      local t = two()
      local s = assert(bt.start_migration(t, 5, C))
      assert.same({}, t.migrating)
      assert.same({ [5] = C }, s.migrating)
      assert.equals(2, s.version)
      local again = assert(bt.start_migration(s, 5, C))
      assert.equals(3, again.version)
      local f = assert(bt.finish_migration(s, 5))
      assert.equals(C, f.owner[5])
      assert.same({}, f.migrating)
      assert.equals(3, f.version)
    end)

    it("refuses bad migrations", function()
      local s = assert(bt.start_migration(two(), 5, C))
      local cases = {
        { function() return bt.start_migration(s, 1023, C) end, "bucket 1023 is not a bucket id 0..1022" },
        { function() return bt.start_migration(s, -1, C) end, "not a bucket id" },
        { function() return bt.start_migration(s, 4, "x") end, "not of the form" },
        { function() return bt.start_migration(s, 4, A) end, "bucket 4 is already owned by 127.0.0.1:6371" },
        { function() return bt.start_migration(s, 5, D) end, "bucket 5 is already migrating to 127.0.0.1:6375" },
        { function() return bt.finish_migration(s, 6) end, "bucket 6 is not migrating" },
        { function() return bt.finish_migration(s, "5") end, "bucket must be an integer" },
      }
      for _, c in ipairs(cases) do
        local r, err = c[1]()
        assert.is_nil(r)
        assert.matches(c[2], err, 1, true)
      end
    end)

    it("adds and deletes patterns", function()
      local t = two()
      local p = assert(bt.add_pattern(t, "aa*"))
      assert.same({}, t.patterns)
      assert.same({ "aa*" }, p.patterns)
      assert.matches("already exists", select(2, bt.add_pattern(p, "aa*")), 1, true)
      assert.matches("non-empty string", select(2, bt.add_pattern(p, "")), 1, true)
      assert.matches("non-empty string", select(2, bt.add_pattern(p, 5)), 1, true)
      assert.matches("non-empty string", select(2, bt.add_pattern(p, ("x"):rep(1025))), 1, true)
      local d = assert(bt.del_pattern(p, "aa*"))
      assert.same({}, d.patterns)
      assert.matches('no such pattern "bb"', select(2, bt.del_pattern(p, "bb")), 1, true)
    end)

    it("raises on a non-table (misuse)", function()
      assert.has_error(function() bt.counts({}) end)
      assert.has_error(function() bt.to_json(nil) end)
      assert.has_error(function() bt.scale_up("x", A) end)
    end)
  end)
end)

describe("kv.btable lineage (issue 11)", function()
  it("init makes a random one, every change keeps it", function()
    local t1, t2 = assert(bt.init("test", 256, { A })), assert(bt.init("test", 256, { A }))
    assert.matches("^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$", t1.lineage)
    assert.not_equals(t1.lineage, t2.lineage)
    local n = assert(bt.replace_server(t1, A, B))
    n = assert(bt.add_pattern(n, "x*"))
    n = assert(bt.scale_up(n, C))
    assert.equals(t1.lineage, n.lineage)
    assert.equals(t1.lineage, assert(bt.decode(bt.encode(n))).lineage)
  end)
  it("is not in the HTTP form (to_json)", function()
    assert.is_nil(bt.to_json(two()).lineage)
  end)
  it("old files have none; a bad one is refused", function()
    local j = bt.to_json(two())
    assert.is_nil(assert(bt.decode(cjson.encode(j))).lineage)
    for _, bad in ipairs({ "", "xyz", 7, string.rep("a", 65) }) do
      j.lineage = bad
      local t, err = bt.decode(cjson.encode(j))
      assert.is_nil(t)
      assert.matches("lineage", err)
    end
  end)
  it("with_lineage: a new one, version + 1", function()
    local t = two()
    local n = bt.with_lineage(t)
    assert.equals(t.version + 1, n.version)
    assert.not_equals(t.lineage, n.lineage)
  end)
end)

describe("kv.btable policy (issue 13)", function()
  local SRC = 'return {\n  hash = "crc16", -- "quoted"\\\n}\n'
  it("with_policy: version + 1, policy version + 1, source kept byte for byte", function()
    local t = two()
    assert.is_nil(t.policy)
    local p1 = assert(bt.with_policy(t, SRC))
    assert.equals(t.version + 1, p1.version)
    assert.same({ version = 1, source = SRC }, p1.policy)
    local p2 = assert(bt.with_policy(p1, "return {}"))
    assert.same({ version = 2, source = "return {}" }, p2.policy)
    assert.is_nil(bt.with_policy(t, 5))
  end)
  it("encode/decode carry it (file and control connections)", function()
    local t = assert(bt.with_policy(two(), SRC))
    local text = bt.encode(t)
    assert.matches('"policy":{"source":', text, 1, true)
    local back = assert(bt.decode(text))
    assert.same(t.policy, back.policy)
    assert.equals(text, bt.encode(back))
    -- keys stay sorted: patterns < policy < table
    local obj = cjson.decode(text)
    assert.equals(SRC, obj.policy.source)
    assert.equals(1, obj.policy.version)
    assert.truthy(text:find('"patterns"', 1, true) < text:find('"policy"', 1, true))
    assert.truthy(text:find('"policy"', 1, true) < text:find('"table"', 1, true))
  end)
  it("to_json carries only policy_version (0 when none)", function()
    assert.equals(0, bt.to_json(two()).policy_version)
    local j = bt.to_json(assert(bt.with_policy(two(), SRC)))
    assert.equals(1, j.policy_version)
    assert.is_nil(j.policy)
    -- the HTTP form decodes without a policy
    assert.is_nil(assert(bt.decode(cjson.encode(j))).policy)
  end)
  it("old files without it load; a bad one is refused", function()
    local text = bt.encode(two())
    assert.not_matches('"policy"', text)
    assert.is_nil(assert(bt.decode(text)).policy)
    for _, bad in ipairs({ 5, "x", {}, { source = "return {}" }, { source = "s", version = 0 },
                           { source = 7, version = 1 }, { source = "s", version = 1.5 } }) do
      local j = cjson.decode(text)
      j.policy = bad
      local t, err = bt.decode(cjson.encode(j))
      assert.is_nil(t)
      assert.matches("policy", err)
    end
  end)
  it("every transform keeps it", function()
    local t = assert(bt.with_policy(two(), SRC))
    local function kept(n) assert.same(t.policy, assert(n).policy) end
    kept(bt.copy(t))
    kept(bt.with_lineage(t))
    kept(bt.replace_server(t, A, C))
    kept(bt.scale_up(t, C))
    kept(bt.scale_down(t, B))
    local m = assert(bt.start_migration(t, 0, B))
    kept(m)
    kept(bt.finish_migration(m, 0))
    local p = assert(bt.add_pattern(t, "x*"))
    kept(p)
    kept(bt.del_pattern(p, "x*"))
  end)
end)
