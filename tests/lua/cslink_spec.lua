-- kvp.cslink without a server: which tables are installed (the spec the data
-- path gets is kvp.dptable's, dptable_spec), the ack once every worker drained, and requests
-- answered or timed out, on a fake event loop. (busted insulates each spec
-- file, so the stubbed modules do not leak into the others.)
local logged = {}
local function logger(level)
  return function(fmt, ...) logged[#logged + 1] = level .. " " .. string.format(fmt, ...) end
end
package.loaded["kv.log"] = { debug = logger("debug"), info = logger("info"), warn = logger("warn"),
                             error = logger("error") }
-- timers[id] = fn until fired or cancelled
local timers, next_timer = {}, 0
package.loaded["kv.loop"] = {
  timer = function(_, fn)
    next_timer = next_timer + 1
    timers[next_timer] = fn
    return next_timer
  end,
  cancel = function(id) timers[id] = nil end,
}
package.loaded["kv.redis"] = {}

local cslink = require "kvp.cslink"
local btable = require "kv.btable"

local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"

local function fire(id)
  local fn = timers[id]
  timers[id] = nil
  fn()
end

-- A proxy's link state with a data path that records what it installs and
-- a link that records what it sends.
local function new_state(workers)
  local state = { namespace = "test", workers = workers or 2, installed = {}, sent = {}, tables = {} }
  state.install = function(...)
    if state.refuse then return nil, state.refuse end
    state.installed[#state.installed + 1] = { ... }
    return true
  end
  state.send = function(waiter, ...)
    state.sent[#state.sent + 1] = { waiter = waiter, cmd = { ... } }
    return true
  end
  state.on_table = function(t) state.tables[#state.tables + 1] = t.version end
  return state
end

local function table_v(version)
  local t = assert(btable.init("test", 256, { A, B }, "c0ffee"))
  t.version = version
  return t
end

local function sent_cmds(state)
  local out = {}
  for i, s in ipairs(state.sent) do out[i] = table.concat(s.cmd, " ") end
  return out
end

describe("kvp.cslink", function()
  describe("apply", function()
    it("installs a first table and every newer one, with the data path's arguments", function()
      local state = new_state()
      local t = assert(btable.add_pattern(table_v(1), "user*"))
      assert.is_true(cslink.apply(state, btable.encode(t)))
      local spec = state.installed[1][1] -- kvp.dptable.spec of it (dptable_spec)
      assert.equal(2, spec.version)
      assert.equal(256, spec.bucket_count)
      assert.same({ A, B }, spec.servers)
      assert.equal(256, #spec.owner)
      assert.same({ "user*" }, spec.patterns)
      assert.same({}, spec.migrating)
      assert.same({}, spec.blocked)
      assert.equal(2, state.table.version)
      assert.same({ 2 }, state.tables)
    end)

    it("ignores a table not newer than the one held (a stale config server)", function()
      local state = new_state()
      assert.is_true(cslink.apply(state, btable.encode(table_v(5))))
      assert.is_false(cslink.apply(state, btable.encode(table_v(5))))
      assert.is_false(cslink.apply(state, btable.encode(table_v(4))))
      assert.equal(1, #state.installed)
      assert.equal(5, state.table.version)
    end)

    it("fences: every bucket blocked; the held version is taken again to route again", function()
      local state = new_state()
      assert.is_true(cslink.apply(state, btable.encode(table_v(5))))
      assert.is_true(cslink.fence(state, "test"))
      local spec = state.installed[2][1]
      assert.equal(5, spec.version)
      assert.equal(256, #spec.blocked)
      assert.is_false(cslink.fence(state, "again")) -- once
      assert.is_false(cslink.apply(state, btable.encode(table_v(4))))
      assert.is_true(cslink.apply(state, btable.encode(table_v(5))))
      assert.is_nil(next(state.installed[3][1].blocked))
      assert.is_false(state.fenced)
      assert.is_false(cslink.apply(state, btable.encode(table_v(5))))
    end)

    it("fences once no config server was heard for stale_table_limit seconds; never when 0", function()
      local state = new_state()
      assert.is_true(cslink.apply(state, btable.encode(table_v(1))))
      state.last_contact = 100
      assert.is_false(cslink.check_lease(state, 1000)) -- no limit
      state.stale_table_limit = 30
      assert.is_false(cslink.check_lease(state, 129))
      assert.is_true(cslink.check_lease(state, 130))
      assert.is_true(state.fenced)
      assert.truthy(logged[#logged]:find("no master config server heard for 30 s (stale_table_limit 30)", 1, true))
    end)

    it("keeps the table held when the new one is bad or the data path refuses it", function()
      local state = new_state()
      assert.is_true(cslink.apply(state, btable.encode(table_v(1))))
      assert.is_false(cslink.apply(state, "{not json"))
      assert.is_false(cslink.apply(state, btable.encode(assert(btable.init("other", 256, { A })))))
      state.refuse = "out of memory"
      assert.is_false(cslink.apply(state, btable.encode(table_v(2))))
      assert.equal(1, state.table.version)
      assert.same({ 1 }, state.tables)
      assert.truthy(logged[#logged]:find("cannot install table v2: out of memory", 1, true), logged[#logged])
    end)

    it("refuses a newer table of another lineage (issue 11), and says why", function()
      local state = new_state()
      assert.is_true(cslink.apply(state, btable.encode(table_v(3))))
      local forged = assert(btable.init("test", 256, { A }, "bad"))
      forged.version = 1e9
      assert.is_false(cslink.apply(state, btable.encode(forged)))
      assert.equal(3, state.table.version)
      assert.truthy(logged[#logged]:find("lineage bad", 1, true), logged[#logged])
      -- another namespace's table: refused, said once however often it comes
      local n = #logged
      for _ = 1, 5 do
        assert.is_false(cslink.apply(state, btable.encode(assert(btable.init("else", 256, { A }, "c0ffee")))))
      end
      assert.equal(n + 1, #logged)
      assert.truthy(logged[#logged]:find("namespace \"else\", expected \"test\"", 1, true), logged[#logged])
      assert.is_true(cslink.apply(state, btable.encode(table_v(4))))
    end)
  end)

  describe("config servers (issue 14)", function()
    local S1, S2, S3 = "127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"
    local function cluster_state(servers, id)
      local state = new_state()
      state.servers, state.cluster = servers, true
      state.proxy_id = "host/127.0.0.1:7400/" .. (id or "0123456789abcdef")
      return state
    end

    it("starts at a server drawn from the proxy id, so a fleet spreads; a pair starts at the master", function()
      local seen = {}
      for k = 0, 29 do
        local i = cslink.first(cluster_state({ S1, S2, S3 }, ("%016x"):format(k * 7919 + 12345)))
        assert.truthy(i >= 1 and i <= 3)
        seen[i] = (seen[i] or 0) + 1
      end
      assert.same({ 10, 10, 10 }, { seen[1], seen[2], seen[3] })
      assert.equal(1, cslink.first(cluster_state({ S1 }, "ffffffffffffffff")))
      local pair = new_state()
      pair.servers, pair.proxy_id = { S1, S2 }, "h/l/0000000000000001"
      assert.equal(1, cslink.first(pair))
    end)

    it("moves on to the next in turn, round after round, never back to a master", function()
      local state = cluster_state({ S1, S2, S3 })
      local i, delay = 2, nil
      local order = {}
      for _ = 1, 7 do
        i, delay = cslink.next_server(state, i, "unreachable")
        order[#order + 1] = i .. "/" .. delay
      end
      -- a pause of 1 s once a whole round found none
      assert.same({ "3/0.2", "1/0.2", "2/1", "3/0.2", "1/0.2", "2/1", "3/0.2" }, order)
      -- a server that registered the proxy, then went: the next one
      assert.same({ 1, 0.2, false }, { cslink.next_server(state, 3, "registered") })
      assert.same({ 2, 0.2, false }, { cslink.next_server(state, 1, "unreachable") })
      -- a pair keeps today's rule: master, slave, master... and back to the master when it answers
      local pair = new_state()
      pair.servers = { S1, S2 }
      assert.same({ 2, 0.2, false }, { cslink.next_server(pair, 1, "unreachable") })
      assert.same({ 1, 1, false }, { cslink.next_server(pair, 2, "registered") })
      assert.same({ 1, 0, false }, { cslink.next_server(pair, 2, "to_master") })
      assert.same({ 2, 0.2, false }, { cslink.next_server(pair, 1, "unknown_ns") }) -- session acted on it
    end)

    it("starts over on a new list (set_config)", function()
      local state = cluster_state({ S1, S2, S3 }, "0000000000000001")
      cslink.next_server(state, 1, "unreachable")
      state.servers, state.servers_changed = { S2, S3 }, true
      assert.same({ 2, 0, false }, { cslink.next_server(state, 3, "registered") })
      assert.is_nil(state.servers_changed)
      assert.same({ 1, 0.2, false }, { cslink.next_server(state, 2, "unreachable") })
    end)

    it("takes 'no such namespace' for good only when every server that answered in a round said so", function()
      local state = cluster_state({ S1, S2, S3 })
      local function round(a, b, c)
        cslink.next_server(state, 1, a)
        cslink.next_server(state, 2, b)
        return select(3, cslink.next_server(state, 3, c))
      end
      assert.is_false(round("unknown_ns", "refused", "unreachable")) -- one may not know it yet
      assert.is_false(round("unknown_ns", "unknown_ns", "registered"))
      assert.is_false(round("unreachable", "unreachable", "unreachable"))
      assert.is_true(round("unknown_ns", "unreachable", "unknown_ns"))
      assert.is_true(round("unknown_ns", "unknown_ns", "unknown_ns"))
      -- a registration mid-round starts the round again
      cslink.next_server(state, 1, "unknown_ns")
      cslink.next_server(state, 2, "registered")
      assert.is_false(round("unknown_ns", "unknown_ns", "refused"))
    end)

    it("counts contact with any of them for stale_table_limit; of a pair, the master's only", function()
      local state = cluster_state({ S1, S2, S3 })
      for _, a in ipairs({ S1, S2, S3 }) do assert.is_true(cslink.counts(state, a)) end
      local pair = new_state()
      pair.servers = { S1, S2 }
      assert.is_true(cslink.counts(pair, S1))
      assert.is_false(cslink.counts(pair, S2))
    end)

    it("fences after stale_table_limit without any of them, and says so", function()
      local state = cluster_state({ S1, S2 })
      assert.is_true(cslink.apply(state, btable.encode(table_v(1))))
      state.stale_table_limit, state.last_contact = 10, 100
      assert.is_false(cslink.check_lease(state, 109))
      assert.is_true(cslink.check_lease(state, 110))
      assert.truthy(logged[#logged]:find("no config server heard for 10 s (stale_table_limit 10)", 1, true),
        logged[#logged])
    end)
  end)

  describe("drained and ack", function()
    it("acks a version once every worker drained it, once", function()
      local state = new_state(2)
      cslink.apply(state, btable.encode(table_v(3)))
      cslink.drained(state, 0, 3)
      assert.same({}, sent_cmds(state))
      cslink.drained(state, 1, 3)
      assert.same({ "ACK test 3" }, sent_cmds(state))
      assert.equal(3, state.acked)
    end)

    it("does not ack a version older than the table held, nor mix versions", function()
      local state = new_state(2)
      cslink.apply(state, btable.encode(table_v(3)))
      cslink.drained(state, 0, 3)
      cslink.apply(state, btable.encode(table_v(4))) -- acks start again
      cslink.drained(state, 1, 3)
      cslink.drained(state, 1, 4)
      assert.same({}, sent_cmds(state))
      cslink.drained(state, 0, 4)
      assert.same({ "ACK test 4" }, sent_cmds(state))
    end)

    it("sends nothing while no config server is connected", function()
      local state = new_state(1)
      cslink.apply(state, btable.encode(table_v(3)))
      state.send = nil
      cslink.drained(state, 0, 3)
      assert.equal(3, state.acked) -- acked again on the next registration
    end)
  end)

  describe("request", function()
    local function in_task(state, ...)
      local args = { ... }
      local result
      local co = coroutine.create(function() result = { cslink.request(state, unpack(args)) } end)
      assert(coroutine.resume(co))
      return function() return result end
    end

    it("returns the reply to the command it sent", function()
      local state = new_state()
      local result = in_task(state, "PATTERN", "ADD", "test", "a*")
      assert.same({ "PATTERN ADD test a*" }, sent_cmds(state))
      assert.is_nil(result())
      state.sent[1].waiter({ status = "OK" })
      assert.is_nil(result()) -- resumed from the loop, not inside the reader
      for id in pairs(timers) do fire(id) end
      assert.same({ { status = "OK" } }, result())
      assert.is_nil(next(timers)) -- the time-out was cancelled
    end)

    it("gives up after its time-out, and a late reply is dropped", function()
      local state = new_state()
      local result = in_task(state, "PATTERN", "DEL", "test", "a*")
      for id in pairs(timers) do fire(id) end
      assert.same({ nil, "config server did not answer in 5 s" }, result())
      state.sent[1].waiter({ status = "OK" })
      assert.is_nil(next(timers))
    end)

    it("fails at once without a config server", function()
      local state = new_state()
      state.send = nil
      assert.same({ nil, "no config server reachable" }, { cslink.request(state, "PING") })
    end)
  end)

  describe("replicas push", function()
    it("gives the namespace's map to state.on_replicas", function()
      local state = new_state()
      local got = {}
      state.on_replicas = function(ns, map) got[#got + 1] = { ns, map } end
      assert.is_true(cslink.replicas(state, "test", '{"' .. A .. '":["127.0.0.1:7371"],"' .. B .. '":[]}'))
      assert.same({ { "test", { [A] = { "127.0.0.1:7371" }, [B] = {} } } }, got)
      assert.is_false(cslink.replicas(state, "other", '{}')) -- another namespace's
      assert.equal(1, #got)
    end)

    it("ignores a bad map, logged once until a good one comes", function()
      local state = new_state()
      local got = 0
      state.on_replicas = function() got = got + 1 end
      logged = {}
      for _, bad in ipairs({ "{not json", '["' .. A .. '"]', '{"' .. A .. '":"' .. B .. '"}',
                             '{"' .. A .. '":[1]}', '{"nohost":[]}', '{"' .. A .. '":{"x":"' .. B .. '"}}' }) do
        assert.is_false(cslink.replicas(state, "test", bad))
      end
      assert.equal(0, got)
      assert.equal(1, #logged)
      assert.matches("^warn config server sent a bad replicas map for test", logged[1])
      assert.is_true(cslink.replicas(state, "test", "{}"))
      assert.is_false(cslink.replicas(state, "test", "[[["))
      assert.equal(2, #logged)
      assert.equal(1, got)
    end)

    it("works without state.on_replicas", function()
      assert.is_true(cslink.replicas(new_state(), "test", "{}"))
    end)
  end)
end)
