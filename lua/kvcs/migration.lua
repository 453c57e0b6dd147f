-- kvcs.migration: the migration port (DESIGN §4, §5), used by migration_tool.
--
-- RESP commands, one connection per tool:
--   PING                                   -> +PONG
--   TABLE <ns>                             -> bulk: the table JSON
--   REDIS_PASSWORD                         -> bulk: the password the masters need ("" if none)
--   MIGRATE.START <ns> <dst> <b> [<b>...]  -> +OK once the table saying "b migrates to dst"
--                                             is persisted, pushed and acked by every
--                                             known proxy of ns
--   MIGRATE.DONE  <ns> <dst> <b> [<b>...]  -> +OK once dst owns b, persisted, pushed, acked
-- Errors: -ERR <code> <message> (codes of kv.codes). Both are idempotent, so
-- a tool that lost a reply (or was killed) just sends the same again: a
-- bucket already migrating to dst is accepted by START, a bucket already
-- owned by dst is accepted by DONE. A slave answers every change with 1008.
--
-- The acks are the "no write lost" guarantee: once every proxy runs with the
-- new table and nothing routed with an older one is in flight, no proxy can
-- still write a key of b to the source without migrating it first.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"
local names = require "kv.names"
local codes = require "kv.codes"
local log = require "kv.log"
local store = require "kvcs.store"

local M = {}

M.ACK_TIMEOUT = 10

-- Plain table planning (busted-tested). -> new table (or the same when
-- nothing changes) | nil, code, msg
function M.plan_start(cs, t, dst, buckets)
  if not names.valid_addr(dst) then return nil, codes.BAD_ADDR, "invalid destination " .. tostring(dst) end
  local user = store.owner_of(cs.store, dst)
  if user and user ~= t.namespace then
    return nil, codes.ADDR_IN_USE, ("%s is used by namespace '%s'"):format(dst, user)
  end
  local nt, changed = t, false
  for _, b in ipairs(buckets) do
    if not (b >= 0 and b < t.bucket_count and b % 1 == 0) then
      return nil, codes.BAD_PARAM, ("bucket %s is not 0..%d"):format(tostring(b), t.bucket_count - 1)
    end
    if t.migrating[b] == dst then
      -- resumed: already migrating there
    elseif t.owner[b] == dst then
      return nil, codes.TABLE_CHANGE_FAILED, ("bucket %d is already owned by %s"):format(b, dst)
    else
      local n, err = btable.start_migration(changed and nt or t, b, dst)
      if not n then return nil, codes.TABLE_CHANGE_FAILED, err end
      if changed then n.version = nt.version end -- one version bump per command
      nt, changed = n, true
    end
  end
  return nt, nil, changed
end

function M.plan_done(cs, t, dst, buckets)
  local nt, changed = t, false
  for _, b in ipairs(buckets) do
    if t.migrating[b] == dst then
      local n, err = btable.finish_migration(changed and nt or t, b)
      if not n then return nil, codes.TABLE_CHANGE_FAILED, err end
      if changed then n.version = nt.version end
      nt, changed = n, true
    elseif t.owner[b] == dst and not t.migrating[b] then
      -- already done (a resumed tool)
    else
      return nil, codes.TABLE_CHANGE_FAILED,
        ("bucket %s is not migrating to %s"):format(tostring(b), tostring(dst))
    end
  end
  return nt, nil, changed
end

local function err_reply(code, msg)
  return resp.error(("ERR %d %s"):format(code, msg))
end

-- Install (persist, push) a planned table and wait for every known proxy.
local function install(cs, nt, what)
  local ok, err = store.put(cs.store, nt)
  if not ok then return err_reply(codes.SAVE_FAILED, "could not save the table: " .. tostring(err)) end
  cs.publish(nt)
  log.info("%s: table %s v%d", what, nt.namespace, nt.version)
  return nil
end

local function wait(cs, nt)
  local ok, who = cs.wait_acks(nt.namespace, nt.version, M.ACK_TIMEOUT)
  if not ok then
    return err_reply(codes.TABLE_CHANGE_FAILED, ("proxy %s has not acked table v%d of %s; "
      .. "bucket moves wait for it (or remove it: /kvstore/cs/remove_proxy)"):format(who, nt.version, nt.namespace))
  end
  return nil
end

local function apply(cs, t, nt, changed, what, started)
  if changed then
    if started and #started > 0 then
      -- first the buckets are blocked everywhere (commands on them wait),
      -- then, once every proxy holds that table, they migrate: no proxy can
      -- write a key on the source after another one moved it
      local e = install(cs, nt, what .. " (blocked)") or wait(cs, nt)
      if e then return e end
      nt = btable.set_blocked(nt, started, false)
      what = what .. " (migrating)"
    end
    local e = install(cs, nt, what)
    if e then return e end
  end
  return wait(cs, nt) or resp.status("OK")
end

-- A table left with blocked buckets (the config server stopped between the
-- two tables of a START) is moved on to migrating at start.
function M.unblock_all(cs)
  for _, ns in ipairs(store.list(cs.store)) do
    local t = store.get(cs.store, ns)
    local bs = {}
    for b in pairs(t.blocked or {}) do bs[#bs + 1] = b end
    if #bs > 0 then
      local nt = btable.set_blocked(t, bs, false)
      local ok, err = store.put(cs.store, nt)
      if ok then log.warn("table %s: %d blocked bucket(s) left by a stop moved on to migrating (v%d)", ns, #bs, nt.version)
      else log.error("table %s: cannot unblock: %s", ns, tostring(err)) end
    end
  end
end

local function handle(cs, cmd)
  local name = type(cmd) == "table" and type(cmd[1]) == "string" and cmd[1]:upper() or ""
  if name == "PING" then return resp.status("PONG") end
  if name == "REDIS_PASSWORD" then return cs.cfg.redis_password end
  if name == "TABLE" and cmd.n == 2 then
    local t = store.get(cs.store, cmd[2])
    if not t then return err_reply(codes.NO_NAMESPACE, "no such namespace '" .. tostring(cmd[2]) .. "'") end
    return btable.encode(t)
  end
  if (name == "MIGRATE.START" or name == "MIGRATE.DONE") and cmd.n >= 4 then
    if not cs.is_master then return err_reply(codes.NOT_MASTER, "this config server is a slave") end
    if cs.cfg.cluster_type ~= "data_store" then
      return err_reply(codes.WRONG_CLUSTER_TYPE, "migration is for data_store clusters")
    end
    local t = store.get(cs.store, cmd[2])
    if not t then return err_reply(codes.NO_NAMESPACE, "no such namespace '" .. tostring(cmd[2]) .. "'") end
    local buckets = {}
    for i = 4, cmd.n do
      local b = tonumber(cmd[i])
      if not b then return err_reply(codes.BAD_PARAM, "bucket ids are integers") end
      buckets[#buckets + 1] = b
    end
    local plan = name == "MIGRATE.START" and M.plan_start or M.plan_done
    local nt, code, changed = plan(cs, t, cmd[3], buckets)
    if not nt then return err_reply(code, changed) end
    local started
    if name == "MIGRATE.START" then
      started = {}
      for _, b in ipairs(buckets) do
        if not t.migrating[b] then started[#started + 1] = b end
      end
      if #started > 0 then nt = btable.set_blocked(nt, started, true); nt.version = nt.version - 1 end
    end
    return apply(cs, t, nt, changed, ("%s %d bucket(s) -> %s"):format(name:lower(), #buckets, cmd[3]), started)
  end
  return resp.error("ERR unknown command '" .. name .. "'")
end

function M.serve(cs, sock)
  local reader = resp.new_reader()
  while true do
    local cmd = redis.read_value(sock, reader, 3600)
    if not cmd then break end
    local ok, r = xpcall(function() return handle(cs, cmd) end, debug.traceback)
    if not ok then
      log.error("migration command failed: %s", r)
      r = err_reply(codes.INTERNAL, "internal error")
    end
    sock:send(resp.encode_reply(r))
  end
  sock:close()
end

return M
