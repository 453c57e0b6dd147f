-- kvcs.ha: the fail-over decisions without servers (SPEC §6, DESIGN §6).
local ha = require "kvcs.ha"
local btable = require "kv.btable"

local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"
local RA1, RA2 = "127.0.0.1:6372", "127.0.0.1:6382"

local function input(over)
  local t = btable.init("test", 1023, over.servers or { A, B })
  local i = {
    votes = {}, proxies = { p1 = true }, table = t,
    replicas = { [A] = { { addr = RA1, up = true, role = "slave", offset = 100 } } },
    support_ha = true, cluster_type = "data_store",
  }
  for k, v in pairs(over) do
    if k ~= "servers" then i[k] = v end
  end
  return i
end

local function texts(notes)
  local out = {}
  for i, n in ipairs(notes) do out[i] = (n.addr or "-") .. ": " .. n.text end
  return table.concat(out, "\n")
end

describe("kvcs.ha.decide (data_store)", function()
  it("does nothing without votes", function()
    local actions, notes = ha.decide(input({}))
    assert.same({}, actions)
    assert.same({}, notes)
  end)

  it("one connected proxy: its vote is enough", function()
    local actions = ha.decide(input({ votes = { [A] = { p1 = true } } }))
    assert.equal(1, #actions)
    assert.equal("promote", actions[1].kind)
    assert.equal(A, actions[1].old)
    assert.equal(RA1, actions[1].new)
    assert.truthy(actions[1].why:find("all 1 connected proxies", 1, true))
  end)

  it("all proxies agree: promotes", function()
    local actions = ha.decide(input({
      proxies = { p1 = true, p2 = true, p3 = true },
      votes = { [A] = { p1 = true, p2 = true, p3 = true } },
    }))
    assert.equal(1, #actions)
    assert.same({ "promote", A, RA1 }, { actions[1].kind, actions[1].old, actions[1].new })
  end)

  it("one proxy disagrees: nothing, and the note says how many", function()
    local actions, notes = ha.decide(input({
      proxies = { p1 = true, p2 = true, p3 = true },
      votes = { [A] = { p1 = true, p3 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("2 of 3 connected proxies", 1, true), texts(notes))
  end)

  it("a voter that disconnected does not count (its vote dropped)", function()
    -- p2 voted, then disconnected: the caller dropped it from proxies and votes
    local actions = ha.decide(input({
      proxies = { p1 = true, p3 = true },
      votes = { [A] = { p1 = true } },
    }))
    assert.same({}, actions)
    -- and a vote of a proxy that is not connected never counts, even if left behind
    actions = ha.decide(input({
      proxies = { p1 = true, p3 = true },
      votes = { [A] = { p1 = true, p2 = true } },
    }))
    assert.same({}, actions)
  end)

  it("a voter that said UP no longer counts (its vote dropped)", function()
    -- partition scenario 2: p1 voted, healed (UP), then p2 votes
    local actions, notes = ha.decide(input({
      proxies = { p1 = true, p2 = true },
      votes = { [A] = { p2 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("1 of 2", 1, true))
  end)

  it("no proxy connected: nothing", function()
    local actions, notes = ha.decide(input({ proxies = {}, votes = { [A] = { p1 = true } } }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("no proxy", 1, true))
  end)

  it("support_ha off: nothing", function()
    local actions, notes = ha.decide(input({ support_ha = false, votes = { [A] = { p1 = true } } }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("support_ha is off", 1, true))
  end)

  it("no replica known: nothing", function()
    local actions, notes = ha.decide(input({ replicas = {}, votes = { [A] = { p1 = true } } }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("no replica of it is known", 1, true), texts(notes))
    actions = ha.decide(input({ replicas = { [A] = {} }, votes = { [A] = { p1 = true } } }))
    assert.same({}, actions)
  end)

  it("replica down too: nothing", function()
    local actions, notes = ha.decide(input({
      replicas = { [A] = { { addr = RA1, up = false } } },
      votes = { [A] = { p1 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("no replica of it answers", 1, true), texts(notes))
  end)

  it("picks the live replica with the greatest offset", function()
    local R3 = "127.0.0.1:6392"
    local actions = ha.decide(input({
      replicas = { [A] = {
        { addr = RA1, up = true, offset = 500 },
        { addr = RA2, up = true, offset = 900 },
        { addr = R3, up = false, offset = 5000 },  -- last known offset, but it does not answer
      } },
      votes = { [A] = { p1 = true } },
    }))
    assert.equal(1, #actions)
    assert.equal(RA2, actions[1].new)
    assert.equal(900, actions[1].offset)
    assert.truthy(actions[1].why:find(R3 .. " down", 1, true), actions[1].why)
  end)

  it("passes over a stale replica for a fresh one, whatever their offsets", function()
    local actions = ha.decide(input({
      replicas = { [A] = {
        { addr = RA1, up = true, offset = 100, link_down_s = 40 },   -- went down with the master
        { addr = RA2, up = true, offset = 900, link_down_s = 4000 }, -- down an hour before it
      } },
      votes = { [A] = { p1 = true } },
      down_for = { [A] = 30 },
    }))
    assert.equal(1, #actions)
    assert.equal(RA1, actions[1].new)
  end)

  it("only stale replicas (or one that never synced): nothing, and the note says why", function()
    local actions, notes = ha.decide(input({
      replicas = { [A] = {
        { addr = RA1, up = true, offset = 0, link_down_s = -1 },
        { addr = RA2, up = true, offset = 900, link_down_s = 4000 },
      } },
      votes = { [A] = { p1 = true } },
      down_for = { [A] = 30 },
    }))
    assert.same({}, actions)
    local t = texts(notes)
    assert.truthy(t:find(RA1 .. " never finished a sync with it", 1, true), t)
    assert.truthy(t:find(RA2 .. " its link broke over 300 s before the first down report for the master",
      1, true), t)
    assert.truthy(t:find("promote one by hand", 1, true), t)
  end)

  it("a link down since the master died (within the grace) is fresh", function()
    local actions = ha.decide(input({
      replicas = { [A] = { { addr = RA1, up = true, offset = 5, link_down_s = 70 + ha.STALE_GRACE } } },
      votes = { [A] = { p1 = true } },
      down_for = { [A] = 70 },
    }))
    assert.equal(RA1, actions[1].new)
    -- without down_for (no report time known) the grace alone applies
    actions = ha.decide(input({
      replicas = { [A] = { { addr = RA1, up = true, offset = 5, link_down_s = ha.STALE_GRACE + 1 } } },
      votes = { [A] = { p1 = true } },
    }))
    assert.same({}, actions)
    -- replica_stale_after of kvcs.conf replaces the default
    local over = { replicas = { [A] = { { addr = RA1, up = true, link_down_s = 20 } } },
                   votes = { [A] = { p1 = true } }, down_for = { [A] = 5 } }
    assert.equal(1, #ha.decide(input(over)))
    over.stale_after = 10
    assert.same({}, (ha.decide(input(over))))
  end)

  it("equal offsets: the lowest address, so the choice is stable", function()
    local actions = ha.decide(input({
      replicas = { [A] = { { addr = RA2, up = true, offset = 7 }, { addr = RA1, up = true, offset = 7 } } },
      votes = { [A] = { p1 = true } },
    }))
    assert.equal(RA1, actions[1].new)
  end)

  it("never picks a replica another table uses", function()
    local actions, notes = ha.decide(input({
      in_use = { [RA1] = "other" },
      votes = { [A] = { p1 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("already used by a table", 1, true), texts(notes))
  end)

  it("a vote for an address no longer in the table is stale", function()
    local actions, notes = ha.decide(input({ votes = { [C] = { p1 = true } } }))
    assert.same({}, actions)
    assert.is_true(notes[1].stale)
    assert.equal(C, notes[1].addr)
  end)

  it("two masters down: each gets its own replica", function()
    local RB = "127.0.0.1:6374"
    local actions = ha.decide(input({
      replicas = { [A] = { { addr = RA1, up = true, offset = 1 } }, [B] = { { addr = RB, up = true, offset = 2 } } },
      votes = { [A] = { p1 = true }, [B] = { p1 = true } },
    }))
    assert.equal(2, #actions)
    assert.same({ A, RA1, B, RB }, { actions[1].old, actions[1].new, actions[2].old, actions[2].new })
  end)

  it("a migration destination that dies is a master too", function()
    local t = btable.start_migration(btable.init("test", 256, { A }), 3, B)
    local actions = ha.decide(input({
      table = t, replicas = { [B] = { { addr = RA2, up = true, offset = 0 } } },
      votes = { [B] = { p1 = true } },
    }))
    assert.equal(1, #actions)
    assert.same({ B, RA2 }, { actions[1].old, actions[1].new })
  end)
end)

describe("kvcs.ha.decide (cache)", function()
  it("removes the master every proxy reports down", function()
    local actions = ha.decide(input({
      cluster_type = "cache", servers = { A, B, C },
      proxies = { p1 = true, p2 = true },
      votes = { [C] = { p1 = true, p2 = true } },
    }))
    assert.equal(1, #actions)
    assert.same({ "remove", C }, { actions[1].kind, actions[1].addr })
  end)

  it("needs every proxy there too", function()
    local actions = ha.decide(input({
      cluster_type = "cache", servers = { A, B, C },
      proxies = { p1 = true, p2 = true },
      votes = { [C] = { p1 = true } },
    }))
    assert.same({}, actions)
  end)

  it("with one master left does nothing", function()
    local actions, notes = ha.decide(input({
      cluster_type = "cache", servers = { A },
      votes = { [A] = { p1 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("last server", 1, true))
  end)

  it("does not empty the table when every server is reported down", function()
    local actions, notes = ha.decide(input({
      cluster_type = "cache", servers = { A, B },
      votes = { [A] = { p1 = true }, [B] = { p1 = true } },
    }))
    assert.same({}, actions)
    assert.truthy(texts(notes):find("every server", 1, true))
  end)

  it("support_ha off: nothing", function()
    local actions = ha.decide(input({
      cluster_type = "cache", servers = { A, B, C }, support_ha = false,
      votes = { [C] = { p1 = true } },
    }))
    assert.same({}, actions)
  end)
end)

describe("kvcs.ha helpers", function()
  it("parse_info reads a master's replicas", function()
    local info = ha.parse_info(table.concat({
      "# Replication", "role:master", "connected_slaves:2",
      "slave0:ip=127.0.0.1,port=6372,state=online,offset=1234,lag=0",
      "slave1:ip=127.0.0.1,port=6382,state=wait_bgsave,offset=0,lag=1",
      "master_replid:abc", "master_repl_offset:1234", "",
    }, "\r\n"))
    assert.equal("master", info.role)
    assert.equal(1234, info.offset)
    assert.same({ { addr = RA1, state = "online", offset = 1234 }, { addr = RA2, state = "wait_bgsave", offset = 0 } },
      info.slaves)
  end)

  it("parse_info reads a replica's own offset", function()
    local info = ha.parse_info("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6371\r\n"
      .. "master_link_status:down\r\nslave_repl_offset:777\r\nmaster_link_down_since_seconds:12\r\n"
      .. "master_repl_offset:777\r\n")
    assert.same({ "slave", "127.0.0.1", 6371, "down", 777, 12 },
      { info.role, info.master_host, info.master_port, info.master_link_status, info.offset, info.link_down_s })
  end)

  it("follow walks a chain of fail-overs and stops on a cycle", function()
    assert.equal(C, ha.follow({ [A] = B, [B] = C }, A))
    assert.equal(A, ha.follow({}, A))
    assert.equal(B, ha.follow({ [A] = B, [B] = A }, A))
  end)

  it("tally counts only connected proxies", function()
    assert.same({ false, 1, 2 }, { ha.tally({ p1 = true, gone = true }, { p1 = true, p2 = true }) })
    assert.same({ true, 2, 2 }, { ha.tally({ p1 = true, p2 = true }, { p1 = true, p2 = true }) })
    assert.same({ false, 0, 0 }, { ha.tally({ p1 = true }, {}) })
  end)
end)
