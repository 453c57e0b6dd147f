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
-- bucket already migrating to dst is accepted by START (one still blocked is
-- taken on to migrating), a bucket already owned by dst is accepted by DONE.
-- A slave answers every change with 1008.
--
-- START publishes the buckets blocked first (proxies park commands on them)
-- and migrating once every known proxy acked that. If a proxy does not ack
-- the blocked table in ACK_TIMEOUT, START aborts: the buckets go back to
-- their owner in a new table (parked commands run there; no key has moved)
-- and the error names the proxy. No command waits longer than one
-- ACK_TIMEOUT, and a later START begins afresh.
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

-- -> nil once every known proxy acked nt | the message naming one that did not
local function unacked(cs, nt)
  local ok, who = cs.wait_acks(nt.namespace, nt.version, M.ACK_TIMEOUT)
  if ok then return nil end
  return ("proxy %s has not acked table v%d of %s; bucket moves wait for it (or remove it: "
    .. "/kvstore/cs/remove_proxy)"):format(who, nt.version, nt.namespace)
end

local function wait(cs, nt)
  local msg = unacked(cs, nt)
  return msg and err_reply(codes.TABLE_CHANGE_FAILED, msg)
end

-- MIGRATE.START after planning: nt is t with the new buckets migrating
-- (changed) or t itself (a retry). The buckets of the command that are new,
-- or still blocked from an earlier START, go through the blocked phase:
-- published blocked, acked by every known proxy, then published migrating.
-- When those acks time out, nothing has moved a key of those buckets yet,
-- so they are rolled back to their owner (a new version: proxies release
-- the commands they parked) and the error tells to START again.
local function start(cs, t, nt, changed, what, buckets)
  local ns = t.namespace
  local blocked = {}
  for _, b in ipairs(buckets) do
    if not t.migrating[b] or t.blocked[b] then blocked[#blocked + 1] = b end
  end
  if #blocked == 0 then
    local e = changed and install(cs, nt, what)
    return e or wait(cs, nt) or resp.status("OK")
  end
  if changed then
    local version = nt.version
    nt = btable.set_blocked(nt, blocked, true)
    nt.version = version
    local e = install(cs, nt, what .. " (blocked)")
    if e then return e end
  end
  local lagging = unacked(cs, nt)
  local cur = store.get(cs.store, ns)
  if not cur then return err_reply(codes.NO_NAMESPACE, "namespace '" .. ns .. "' was deleted") end
  if lagging then
    local back = btable.cancel_blocked(cur, blocked)
    if back.version > cur.version then
      local e = install(cs, back, what .. " (aborted: blocked buckets back to their owner)")
      if e then return e end
    end
    return err_reply(codes.TABLE_CHANGE_FAILED, lagging .. "; the buckets stay with their owner: MIGRATE.START again")
  end
  nt = btable.set_blocked(cur, blocked, false)
  local e = install(cs, nt, what .. " (migrating)")
  return e or wait(cs, nt) or resp.status("OK")
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
    local what = ("%s %d bucket(s) -> %s"):format(name:lower(), #buckets, cmd[3])
    if name == "MIGRATE.START" then return start(cs, t, nt, changed, what, buckets) end
    if changed then
      local e = install(cs, nt, what)
      if e then return e end
    end
    return wait(cs, nt) or resp.status("OK")
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
