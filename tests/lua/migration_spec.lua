-- kvcs.migration without a server: the migration port's commands run through
-- M.serve on a fake socket (kv.redis.read_value hands it the commands), with
-- a fake config server whose proxies ack, or do not, as each spec says.
-- (busted insulates each spec file, so the stubbed modules do not leak.)
package.loaded["kv.log"] = {
  debug = function() end, info = function() end, warn = function() end, error = function() end,
}
package.loaded["kv.loop"] = {
  now = function() return 0 end,
  sleep = function() end,
}
package.loaded["kv.redis"] = {
  read_value = function(sock)
    local cmd = table.remove(sock.inbox, 1)
    if cmd == nil then return nil, "closed" end
    return cmd
  end,
}

local migration = require "kvcs.migration"
local store = require "kvcs.store"
local btable = require "kv.btable"
local resp = require "kv.resp"

local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"

local function memfs()
  local files = {}
  return {
    files = files,
    write = function(path, data) files[path] = data return true end,
    read = function(path) return files[path] end,
    list = function() return {} end,
    remove = function(path) files[path] = nil return true end,
    mkdir = function() return true end,
  }
end

-- A master config server of one data_store namespace "test" (A, B). Its
-- proxies ack every table unless cs.lagging names one that does not.
local function new_cs()
  local cs = {
    cfg = { cluster_type = "data_store", redis_password = "pw" },
    store = store.new("/t", memfs()),
    is_master = true,
    published = {},
    waited = {},
  }
  assert(store.put(cs.store, assert(btable.init("test", 256, { A, B }))))
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  cs.wait_acks = function(ns, version)
    cs.waited[#cs.waited + 1] = version
    if cs.lagging then return false, cs.lagging end
    return true
  end
  return cs
end

-- Runs commands (arrays of strings) on one migration connection; -> the
-- decoded replies.
local function run(cs, ...)
  local sock = { inbox = {}, sent = {} }
  for _, c in ipairs({ ... }) do
    local cmd = { n = #c }
    for i, v in ipairs(c) do cmd[i] = v end
    sock.inbox[#sock.inbox + 1] = cmd
  end
  function sock.send(_, bytes) sock.sent[#sock.sent + 1] = bytes return true end
  function sock.close() sock.closed = true end
  migration.serve(cs, sock)
  local out = {}
  for i, bytes in ipairs(sock.sent) do out[i] = assert(resp.decode(bytes)) end
  return out
end

local function tbl(cs) return store.get(cs.store, "test") end

describe("kvcs.migration MIGRATE.START", function()
  it("blocks, waits for the acks, then publishes the buckets migrating", function()
    local cs = new_cs()
    local r = run(cs, { "MIGRATE.START", "test", C, "5", "7" })
    assert.same({ { status = "OK" } }, r)
    local t = tbl(cs)
    assert.equal(C, t.migrating[5])
    assert.equal(C, t.migrating[7])
    assert.is_nil(t.blocked[5])
    assert.is_nil(t.blocked[7])
    assert.equal(2, #cs.published)
    assert.is_true(cs.published[1].blocked[5] and cs.published[1].blocked[7])
    assert.equal(2, cs.published[1].version)
    assert.equal(3, cs.published[2].version)
    assert.same({ 2, 3 }, cs.waited)
  end)

  it("whose first acks time out leaves no bucket blocked; a retry finishes the move", function()
    local cs = new_cs()
    cs.lagging = "127.0.0.1:7400 (id p1, not connected, acked v1)"
    local r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.truthy(r[1].err and r[1].err:find("127.0.0.1:7400", 1, true), r[1].err)
    -- clients must not wait for the proxy that is away: bucket 5 is served again
    assert.is_nil(tbl(cs).blocked[5])
    assert.is_true(tbl(cs).version > cs.published[1].version)
    assert.equal(tbl(cs), cs.published[#cs.published])

    cs.lagging = nil
    r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.same({ { status = "OK" } }, r)
    assert.equal(C, tbl(cs).migrating[5])
    assert.is_nil(tbl(cs).blocked[5])
    assert.equal(tbl(cs), cs.published[#cs.published])
  end)

  it("retried on a table left with blocked buckets publishes them migrating", function()
    local cs = new_cs()
    -- the config server stopped between the two tables of a START
    local t = assert(btable.start_migration(tbl(cs), 5, C))
    t.blocked[5] = true
    assert(store.put(cs.store, t))
    local r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.same({ { status = "OK" } }, r)
    assert.equal(C, tbl(cs).migrating[5])
    assert.is_nil(tbl(cs).blocked[5])
    assert.equal(t.version, cs.waited[1]) -- the blocked table acked first
    assert.equal(tbl(cs), cs.published[#cs.published])
  end)
end)
