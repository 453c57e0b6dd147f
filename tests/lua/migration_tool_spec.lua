-- The parts of tools.migration_tool that need no server: the command line,
-- bucket prefixes and the SCAN reply filter. kv.core (C, only inside the
-- runtime) is replaced by a stub so that the module loads under busted.
package.loaded["kv.core"] = setmetatable({ now = os.clock, DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 },
  { __index = function() return function() end end })
local mt = require "tools.migration_tool"

local function bulk(s) return "$" .. #s .. "\r\n" .. s .. "\r\n" end

describe("tools.migration_tool", function()
  describe("parse_args", function()
    local base = { "--cs", "127.0.0.1:7200", "--ns", "test" }
    local function args(...)
      local a = {}
      for i, v in ipairs(base) do a[i] = v end
      for _, v in ipairs({ ... }) do a[#a + 1] = v end
      return a
    end

    it("reads the SPEC's command with its defaults", function()
      local o = assert(mt.parse_args(args("--add", "127.0.0.1:6375")))
      assert.equals("127.0.0.1:7200", o.cs)
      assert.equals("test", o.ns)
      assert.equals("add", o.op)
      assert.equals("127.0.0.1:6375", o.addr)
      assert.equals(100, o.batch)
      assert.equals(512, o.parallel)
      assert.equals(0, o.wait_ms)
      assert.is_nil(o.count)
      assert.is_nil(o.password)
    end)

    it("reads --rebalance with its defaults and options", function()
      local o = assert(mt.parse_args(args("--rebalance")))
      assert.equals("rebalance", o.op)
      assert.is_nil(o.addr)
      assert.equals("memory", o.by)
      assert.equals(10, o.spread)
      assert.equals(mt.DEFAULT_SAMPLE, o.sample)
      assert.is_nil(o.dry_run)
      o = assert(mt.parse_args(args("--rebalance", "--by", "keys", "--spread=25", "--sample", "0", "--dry-run")))
      assert.same({ "keys", 25, 0, true }, { o.by, o.spread, o.sample, o.dry_run })
      o = assert(mt.parse_args(args("--add", "127.0.0.1:6375", "--dry_run")))
      assert.is_true(o.dry_run)
    end)

    it("refuses --rebalance with --add/--del, and its options without it", function()
      local function err(...)
        local o, e = mt.parse_args(args(...))
        assert.is_nil(o)
        return e
      end
      assert.matches("not with %-%-add or %-%-del", err("--rebalance", "--del", "127.0.0.1:6375"))
      assert.matches("memory or keys", err("--rebalance", "--by", "disk"))
      assert.matches("%-%-spread", err("--rebalance", "--spread", "-1"))
      assert.matches("goes with %-%-rebalance", err("--add", "127.0.0.1:6375", "--by", "keys"))
      assert.matches("given twice", err("--rebalance", "--rebalance"))
      assert.matches("unknown argument", err("--rebalance", "--dry-run=1"))
    end)

    it("takes every option, also as --name=value", function()
      local o = assert(mt.parse_args(args("--del", "127.0.0.1:6375", "--password", "pw", "--count=5",
        "--wait_ms", "100", "--batch", "50", "--parallel=8")))
      assert.same({ "del", "127.0.0.1:6375", "pw", 5, 100, 50, 8 },
        { o.op, o.addr, o.password, o.count, o.wait_ms, o.batch, o.parallel })
    end)

    it("takes --max-keys-per-sec (dashes or underscores), a positive integer", function()
      assert.equal(5000, assert(mt.parse_args(args("--add", "127.0.0.1:6375", "--max-keys-per-sec", "5000"))).max_keys_per_sec)
      assert.equal(7, assert(mt.parse_args(args("--add", "127.0.0.1:6375", "--max_keys_per_sec=7"))).max_keys_per_sec)
      assert.is_nil(mt.parse_args(args("--add", "127.0.0.1:6375", "--max-keys-per-sec", "0")))
      assert.is_nil(mt.parse_args(args("--add", "127.0.0.1:6375", "--max-keys-per-sec", "fast")))
    end)

    it("takes the secret and the password from the flag, then the environment, then the config file", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write('cluster_secret = "file-secret"\nredis_password = "file-pw"\n')
      f:close()
      local env = {}
      local function getenv(k) return env[k] end
      local o = assert(mt.parse_args(args("--add", "127.0.0.1:6375", "--config", path)))
      assert.same({ "file-secret", "file-pw" }, { mt.credentials(o, getenv) })
      env = { KV_CLUSTER_SECRET = "env-secret", KV_REDIS_PASSWORD = "env-pw" }
      assert.same({ "env-secret", "env-pw" }, { mt.credentials(o, getenv) })
      o = assert(mt.parse_args(args("--add", "127.0.0.1:6375", "--config", path, "--secret", "s", "--password", "p")))
      assert.same({ "s", "p" }, { mt.credentials(o, getenv) })
      os.remove(path)
    end)

    it("returns nil without an error for -h and --help", function()
      local o, err = mt.parse_args({ "-h" })
      assert.is_nil(o)
      assert.is_nil(err)
      o, err = mt.parse_args(args("--add", "127.0.0.1:6375", "--help"))
      assert.is_nil(o)
      assert.is_nil(err)
    end)

    it("names what is wrong", function()
      local cases = {
        { {}, "--cs HOST:PORT[,HOST:PORT...] is required" },
        { { "--cs", "127.0.0.1:7200,", "--ns", "t", "--add", "127.0.0.1:1" }, "--cs: address list" },
        { { "--cs", "127.0.0.1:7200,127.0.0.1:7200", "--ns", "t", "--add", "127.0.0.1:1" },
          "--cs: address \"127.0.0.1:7200\" is listed twice" },
        { { "--cs", "127.0.0.1:7200,nohost:1", "--ns", "t", "--add", "127.0.0.1:1" }, "--cs: address \"nohost:1\"" },
        { { "--cs", "127.0.0.1:7200" }, "--ns NAMESPACE is required" },
        { args(), "--add ADDR or --del ADDR is required" },
        { args("--add", "127.0.0.1:6375", "--del", "127.0.0.1:6371"), "not both" },
        { args("--add"), "--add needs a value" },
        { args("--add", "localhost:6375"), "--add: " },
        { args("--add", "127.0.0.1:6375", "--count", "0"), "--count must be an integer" },
        { args("--add", "127.0.0.1:6375", "--batch", "x"), "--batch must be an integer" },
        { args("--add", "127.0.0.1:6375", "--parallel", "-1"), "--parallel must be an integer" },
        { args("--add", "127.0.0.1:6375", "--bogus", "1"), "unknown argument '--bogus'" },
        { args("--add", "127.0.0.1:6375", "-x"), "unknown argument '-x'" },
        { args("--add", "127.0.0.1:6375", "--ns", "b"), "--ns is given twice" },
        { { "--cs", "nohost", "--ns", "t", "--add", "127.0.0.1:1" }, "--cs: " },
        { { "--cs", "127.0.0.1:1", "--ns", "a/b", "--add", "127.0.0.1:1" }, "--ns: " },
      }
      for _, c in ipairs(cases) do
        local o, err = mt.parse_args(c[1])
        assert.is_nil(o)
        assert.is_truthy(err and err:find(c[2], 1, true), "want '" .. c[2] .. "', got " .. tostring(err))
      end
    end)
  end)

  describe("key_bucket", function()
    local function kb(s) return mt.key_bucket(s, 1, #s) end
    it("reads the decimal bucket before the first _", function()
      assert.equals(682, kb("682_foo"))
      assert.equals(0, kb("0_x"))
      assert.equals(16383, kb("16383_"))
      assert.equals(7, kb("7_a_b"))
    end)
    it("rejects what the proxy never writes", function()
      for _, s in ipairs({ "", "_", "682", "x682_foo", "0682_foo", "00_x", "123456_x", "-1_x", "68a_x" }) do
        assert.equals(-1, kb(s), s)
      end
    end)
    it("looks only inside the key", function()
      assert.equals(-1, mt.key_bucket("12_", 1, 2))  -- "12" then the key ends
      assert.equals(2, mt.key_bucket("xx2_y", 3, 3))
    end)
  end)

  describe("scan_hits", function()
    local want = { [682] = true, [0] = true }
    local keys = { "682_a", "6820_b", "1_c", "0_\0bin\r\n", "682_" .. string.rep("k", 300), "x" }
    local function reply(cursor, ks)
      return { n = 2, cursor, { n = #ks, unpack(ks) } }
    end

    it("keeps only keys of wanted buckets, in their RESP form", function()
      local v = mt._scan_hits(reply("1234", keys), want)
      assert.equals("1234", v.cursor)
      assert.equals(6, v.count)
      assert.equals(6, v.nhits)
      assert.same({ 682, bulk("682_a"), 0, bulk("0_\0bin\r\n"), 682, bulk(keys[5]) }, v.hits)
    end)

    it("takes an empty page", function()
      assert.same({ cursor = "0", hits = {}, nhits = 0, count = 0 }, mt._scan_hits(reply("0", {}), want))
    end)

    it("returns an error reply as { err }", function()
      assert.same({ err = "NOAUTH Authentication required." },
        mt._scan_hits({ err = "NOAUTH Authentication required." }, want))
    end)

    it("refuses a reply that is not a SCAN reply", function()
      for _, r in ipairs({ 1, "x", { status = "OK" }, { n = 1, "0" }, { n = 2, "0", "k" },
          { n = 2, 0, { n = 0 } }, { n = 2, "0", { n = 1, { n = 0 } } } }) do
        local v, err = mt._scan_hits(r, want)
        assert.is_nil(v)
        assert.matches("unexpected reply to SCAN", err)
      end
    end)
  end)
end)

describe("tools.migration_tool policy checks (issue 13)", function()
  local btable = require "kv.btable"
  local function t0() return assert(btable.init("test", 256, { "127.0.0.1:6371" })) end
  local function failed(fn)
    local ok, e = pcall(fn)
    assert.is_false(ok)
    return type(e) == "table" and e.msg or tostring(e)
  end

  it("watches the version and routing the run starts with (0: none published)", function()
    local w = mt.policy_watch(t0())
    assert.same({ version = 0, routing = "hash=murmur2_kvstore;tags=true" }, w)
    w = mt.policy_watch(assert(btable.with_policy(t0(), 'return { hash = "crc16" }')))
    assert.same({ version = 1, routing = "hash=crc16;tags=true" }, w)
  end)

  it("goes on when the policy is the same, or a new version keeps the routing", function()
    local t = t0()
    local w = mt.policy_watch(t)
    assert.is_nil(mt.policy_check(w, btable.copy(t)))
    local t2 = assert(btable.with_policy(t, 'return { deny = { "keys" } }'))
    assert.matches("now v1 %(was v0%); its routing is unchanged", mt.policy_check(w, t2))
    assert.equal(1, w.version)
    assert.is_nil(mt.policy_check(w, t2))
  end)

  it("stops with a clear error when the routing changes", function()
    local t = t0()
    local w = mt.policy_watch(t)
    local msg = failed(function()
      mt.policy_check(w, assert(btable.with_policy(t, 'return { hash_tags = false }')))
    end)
    assert.matches("routing policy of test changed from v0 to v1 while buckets moved", msg, 1, true)
    assert.matches("tags=false", msg, 1, true)
  end)
end)

-- --cs with several config servers (issue 14): which one the tool talks to,
-- and what it does when one fails or is not the leader. The servers are
-- scripted clients behind a fake dial.
describe("tools.migration_tool config servers", function()
  local A, B, C, L = "127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203", "127.0.0.1:7299"

  it("takes several --cs addresses, the first first", function()
    local o = assert(mt.parse_args({ "--cs", A .. ", " .. B .. "," .. C, "--ns", "t", "--add", "127.0.0.1:1" }))
    assert.same({ A, B, C }, o.cs_list)
    assert.same({ A }, assert(mt.parse_args({ "--cs", A, "--ns", "t", "--add", "127.0.0.1:1" })).cs_list)
  end)

  it("reads NOTLEADER replies (and a slave's 1008 when there are others to try)", function()
    assert.equals(L, mt.not_leader({ err = "ERR NOTLEADER " .. L }))
    assert.equals("?", mt.not_leader({ err = "ERR NOTLEADER ?" }))
    assert.equals("?", mt.not_leader({ err = "ERR NOTLEADER nohost:1" })) -- not an address: the next one
    assert.equals("?", mt.not_leader({ err = "ERR NOTLEADER 127.0.0.1:0" }))
    assert.is_nil(mt.not_leader({ err = "ERR NOTLEADER" }))
    assert.is_nil(mt.not_leader({ err = "ERR 1005 no such namespace 't'" }))
    assert.is_nil(mt.not_leader({ status = "OK" }))
    assert.is_nil(mt.not_leader("table json"))
    assert.is_nil(mt.not_leader(nil))
    assert.is_nil(mt.not_leader({ err = "ERR 1008 this config server is a slave" }))
    assert.equals("?", mt.not_leader({ err = "ERR 1008 this config server is a slave" }, true))
  end)

  -- servers[addr] = list of replies, one per command it gets (a function
  -- reply: called with the command); "down": it cannot be reached; nil
  -- (end of the list): the link breaks
  local function fake(servers)
    local log, sleeps, notes = {}, {}, {}
    local function dial(addr)
      if servers[addr] == "down" or servers[addr] == nil then
        log[#log + 1] = addr .. " refused"
        return nil, "connection refused"
      end
      local c = { open = true }
      function c.call(_, ...)
        local cmd = table.concat({ ... }, " ")
        local r = table.remove(servers[addr], 1)
        log[#log + 1] = addr .. " " .. cmd .. " -> " .. (type(r) == "table" and (r.err or r.status) or tostring(r))
        if r == nil then return nil, "connection reset" end
        return r
      end
      function c.close() c.open = false end
      return c
    end
    local opts = { dial = dial, sleep = function(s) sleeps[#sleeps + 1] = s end,
                   note = function(line) notes[#notes + 1] = line end }
    return opts, log, sleeps, notes
  end
  local OK = { status = "OK" }
  local function failed(fn)
    local ok, e = pcall(fn)
    assert.is_false(ok)
    return type(e) == "table" and e.msg or tostring(e)
  end

  it("uses the first that answers and stays with it", function()
    local opts, log = fake({ [A] = "down", [B] = { "tbl", OK }, [C] = {} })
    local cs = mt.new_cs({ A, B, C }, "s", opts)
    assert.equals("tbl", cs:call("TABLE", "t"))
    assert.same(OK, cs:call("MIGRATE.START", "t", L, "1"))
    assert.same({ A .. " refused", B .. " TABLE t -> tbl", B .. " MIGRATE.START t " .. L .. " 1 -> OK" }, log)
  end)

  it("resends a command whose server went to the next one", function()
    local opts, log, sleeps, notes = fake({ [A] = { "tbl" }, [B] = { OK } })
    local cs = mt.new_cs({ A, B }, "s", opts)
    assert.equals("tbl", cs:call("TABLE", "t"))
    assert.same(OK, cs:call("MIGRATE.DONE", "t", L, "1")) -- A's link breaks: B gets it again
    assert.same({ A .. " TABLE t -> tbl", A .. " MIGRATE.DONE t " .. L .. " 1 -> nil",
                  B .. " MIGRATE.DONE t " .. L .. " 1 -> OK" }, log)
    assert.same({}, sleeps)
    assert.same({ "config server " .. A .. ": connection reset; going on with " .. B }, notes)
  end)

  it("follows NOTLEADER <addr> to the leader (in the list or not) and resends there", function()
    local opts, log = fake({ [A] = { "tbl", { err = "ERR NOTLEADER " .. L } }, [L] = { OK, OK } })
    local cs = mt.new_cs({ A, B }, "s", opts)
    assert.equals("tbl", cs:call("TABLE", "t"))
    assert.same(OK, cs:call("MIGRATE.START", "t", C, "5"))
    assert.same(OK, cs:call("MIGRATE.DONE", "t", C, "5")) -- stays with the leader
    assert.same({ A .. " TABLE t -> tbl", A .. " MIGRATE.START t " .. C .. " 5 -> ERR NOTLEADER " .. L,
                  L .. " MIGRATE.START t " .. C .. " 5 -> OK", L .. " MIGRATE.DONE t " .. C .. " 5 -> OK" }, log)
  end)

  it("goes on with the next on NOTLEADER ? (an election) and waits a little after a round", function()
    local nl = { err = "ERR NOTLEADER ?" }
    local opts, log, sleeps = fake({ [A] = { nl, nl, OK }, [B] = { nl, { err = "ERR NOTLEADER " .. A } } })
    local cs = mt.new_cs({ A, B }, "s", opts)
    assert.same(OK, cs:call("MIGRATE.START", "t", C, "5"))
    local cmd = " MIGRATE.START t " .. C .. " 5 -> "
    assert.same({ A .. cmd .. "ERR NOTLEADER ?", B .. cmd .. "ERR NOTLEADER ?", -- round 1, then 1 s
                  A .. cmd .. "ERR NOTLEADER ?", B .. cmd .. "ERR NOTLEADER " .. A, -- round 2, then 2 s
                  A .. cmd .. "OK" }, log)
    assert.same({ 1, 2 }, sleeps)
  end)

  it("after following a leader in the list, goes on from the one after it", function()
    local opts, log = fake({ [A] = { { err = "ERR NOTLEADER " .. B } }, [B] = {}, [C] = { OK } })
    local cs = mt.new_cs({ A, B, C }, "s", opts)
    assert.same(OK, cs:call("MIGRATE.DONE", "t", L, "1")) -- B's link breaks at once: C
    assert.same({ A .. " MIGRATE.DONE t " .. L .. " 1 -> ERR NOTLEADER " .. B,
                  B .. " MIGRATE.DONE t " .. L .. " 1 -> nil", C .. " MIGRATE.DONE t " .. L .. " 1 -> OK" }, log)
  end)

  it("a slave's 1008 sends the command to the next (a master/slave pair in --cs)", function()
    local opts, log = fake({ [A] = { "tbl", { err = "ERR 1008 this config server is a slave" } }, [B] = { OK } })
    local cs = mt.new_cs({ A, B }, "s", opts)
    assert.equals("tbl", cs:call("TABLE", "t"))
    assert.same(OK, cs:call("MIGRATE.START", "t", C, "5"))
    assert.equals(B .. " MIGRATE.START t " .. C .. " 5 -> OK", log[#log])
    -- with one address the refusal is the answer, at once
    opts, log = fake({ [A] = { { err = "ERR 1008 this config server is a slave" } } })
    cs = mt.new_cs({ A }, "s", opts)
    assert.same({ err = "ERR 1008 this config server is a slave" }, cs:call("MIGRATE.START", "t", C, "5"))
  end)

  it("returns other error replies as they are", function()
    local opts = fake({ [A] = { { err = "ERR 1005 no such namespace 't'" } }, [B] = {} })
    local cs = mt.new_cs({ A, B }, "s", opts)
    assert.same({ err = "ERR 1005 no such namespace 't'" }, cs:call("TABLE", "t"))
  end)

  it("gives up after M.CS_RETRIES + 1 rounds, naming every server and what it said", function()
    local opts, _, sleeps = fake({ [A] = "down", [B] = "down" })
    local cs = mt.new_cs({ A, B }, "s", opts)
    local msg = failed(function() cs:call("TABLE", "t") end)
    assert.equals("no config server of " .. A .. "," .. B .. " took TABLE (8 tries): " .. A
      .. ": connection refused; " .. B .. ": connection refused", msg)
    assert.same({ 1, 2, 3 }, sleeps)
    -- one address: today's message
    opts, _, sleeps = fake({ [A] = "down" })
    cs = mt.new_cs({ A }, "s", opts)
    assert.equals("config server " .. A .. ": connection refused", failed(function() cs:call("TABLE", "t") end))
    assert.same({ 1, 2, 3 }, sleeps)
  end)

  it("servers naming each other as the leader do not loop: the rounds bound it", function()
    local nlb, nla = { err = "ERR NOTLEADER " .. B }, { err = "ERR NOTLEADER " .. A }
    local opts, log, sleeps = fake({ [A] = { nlb, nlb, nlb, nlb }, [B] = { nla, nla, nla, nla } })
    local cs = mt.new_cs({ A, B }, "s", opts)
    local msg = failed(function() cs:call("MIGRATE.DONE", "t", C, "1") end)
    assert.matches("took MIGRATE.DONE (8 tries): " .. A .. ": not the leader: ERR NOTLEADER " .. B, msg, 1, true)
    assert.equals(8, #log)
    assert.same({ 1, 2, 3 }, sleeps)
  end)
end)
