-- kvp.cslink without a server: the flat form the data path gets, which
-- tables are installed, the ack once every worker drained, and requests
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
  local t = assert(btable.init("test", 256, { A, B }))
  t.version = version
  return t
end

local function sent_cmds(state)
  local out = {}
  for i, s in ipairs(state.sent) do out[i] = table.concat(s.cmd, " ") end
  return out
end

describe("kvp.cslink", function()
  describe("flatten", function()
    it("numbers every address from 1, owners per bucket + 1, migrating and blocked by bucket + 1", function()
      local t = assert(btable.start_migration(table_v(1), 5, C))
      t = assert(btable.start_migration(t, 6, C))
      t.blocked[6] = true
      local servers, owners, migrating, blocked = cslink.flatten(t)
      assert.same({ A, B, C }, servers)
      assert.equal(256, #owners)
      assert.equal(1, owners[1]) -- bucket 0 on A
      assert.equal(2, owners[2]) -- bucket 1 on B
      assert.equal(2, owners[6]) -- bucket 5 still on B while it migrates
      assert.same({ [6] = 3, [7] = 3 }, migrating)
      assert.same({ [7] = true }, blocked)
    end)

    it("gives empty sets for a table with no move", function()
      local servers, _, migrating, blocked = cslink.flatten(table_v(1))
      assert.same({ A, B }, servers)
      assert.same({}, migrating)
      assert.same({}, blocked)
    end)
  end)

  describe("apply", function()
    it("installs a first table and every newer one, with the data path's arguments", function()
      local state = new_state()
      local t = assert(btable.add_pattern(table_v(1), "user*"))
      assert.is_true(cslink.apply(state, btable.encode(t)))
      local args = state.installed[1]
      assert.equal(2, args[1])        -- version
      assert.equal(256, args[2])      -- bucket count
      assert.same({ A, B }, args[3])  -- servers
      assert.equal(256, #args[4])     -- owners
      assert.same({ "user*" }, args[5])
      assert.same({}, args[6])
      assert.same({}, args[7])
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
end)
