-- kvcs.migration: the migration port (DESIGN §4, §5), used by migration_tool.
--
-- RESP commands, one connection per tool, after the handshake every
-- control port opens with (kv.handshake, kvcs.peers.authenticate):
--   PING                                   -> +PONG
--   TABLE <ns>                             -> bulk: the table JSON
-- (There is no command that gives out the masters' password: the tool
-- has its own, from --password or KV_REDIS_PASSWORD.)
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
-- The commands are the handler table M.commands (kvcs.dispatch); START and
-- DONE sequence kvcs.buckets' transitions: install, wait for the acks, next.
--
-- The acks are the "no write lost" guarantee: once every proxy runs with the
-- new table and nothing routed with an older one is in flight, no proxy can
-- still write a key of b to the source without migrating it first.
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"
local names = require "kv.names"
local codes = require "kv.codes"
local log = require "kv.log"
local store = require "kvcs.store"
local buckets = require "kvcs.buckets"
local probe = require "kvcs.probe"
local dispatch = require "kvcs.dispatch"
local peers = require "kvcs.peers"

local M = {}

M.ACK_TIMEOUT = 10

local function err_reply(code, msg)
  return resp.error(("ERR %d %s"):format(code, msg))
end

local function no_namespace(ns)
  return err_reply(codes.NO_NAMESPACE, "no such namespace '" .. tostring(ns) .. "'")
end

-- Persist and push a table a transition made; nothing when it made none
-- (nt == t). -> nil | an error reply
local function install(cs, t, nt, what)
  if nt == t then return nil end
  local ok, err = store.put(cs.store, nt)
  if not ok then return err_reply(codes.SAVE_FAILED, "could not save the table: " .. tostring(err)) end
  cs.publish(nt)
  log.info("%s: table %s v%d", what, nt.namespace, nt.version)
  return nil
end

-- -> nil once every known proxy acked t | the message naming one that did not
local function unacked(cs, t)
  local ok, who = cs.wait_acks(t.namespace, t.version, M.ACK_TIMEOUT)
  if ok then return nil end
  return ("proxy %s has not acked table v%d of %s; bucket moves wait for it (or remove it: "
    .. "/kvstore/cs/remove_proxy)"):format(who, t.version, t.namespace)
end

-- The last step of both commands: every known proxy holds t. -> the reply
local function acked_ok(cs, t)
  local msg = unacked(cs, t)
  if msg then return err_reply(codes.TABLE_CHANGE_FAILED, msg) end
  return resp.status("OK")
end

-- MIGRATE.START: block the buckets that are owned, wait until every known
-- proxy holds that table, then migrate every bucket of the list still
-- blocked (new, or left blocked by an earlier START) and wait again. When
-- the first acks time out, the still-blocked buckets are aborted (back to
-- their owner, a new version) and the reply names the proxy. -> the reply
function M.start(cs, ns, dst, list)
  local t = store.get(cs.store, ns)
  if not t then return no_namespace(ns) end
  if not names.valid_addr(dst) then return err_reply(codes.BAD_ADDR, "invalid destination " .. tostring(dst)) end
  local user = store.owner_of(cs.store, dst)
  if user and user ~= ns then
    return err_reply(codes.ADDR_IN_USE, ("%s is used by namespace '%s'"):format(dst, user))
  end
  local pok, pc, pm = probe.check_new(cs, dst) -- a Redis master, our password
  if not pok then return err_reply(pc, pm) end
  local what = ("migrate.start %d bucket(s) -> %s"):format(#list, dst)
  local nt, code, msg = buckets.block(t, dst, list)
  if not nt then return err_reply(code, msg) end
  local e = install(cs, t, nt, what .. " (blocked)")
  if e then return e end
  local blocked = buckets.select(nt, list, "blocked")
  if #blocked == 0 then return acked_ok(cs, nt) end -- a retry after the migrating table

  local lagging = unacked(cs, nt)
  -- other commands may have changed the table meanwhile: go on from the current one
  t = store.get(cs.store, ns)
  if not t then return no_namespace(ns) end
  if lagging then
    nt = assert(buckets.abort(t, buckets.select(t, blocked, "blocked")))
    e = install(cs, t, nt, what .. " (aborted: back to the owner)")
    return e or err_reply(codes.TABLE_CHANGE_FAILED,
      lagging .. "; the buckets stay with their owner: MIGRATE.START again")
  end
  nt, code, msg = buckets.migrate(t, blocked)
  if not nt then return err_reply(code, msg) end
  return install(cs, t, nt, what .. " (migrating)") or acked_ok(cs, nt)
end

-- MIGRATE.DONE: the destination owns the buckets once every known proxy
-- holds that table. -> the reply
function M.done(cs, ns, dst, list)
  local t = store.get(cs.store, ns)
  if not t then return no_namespace(ns) end
  local nt, code, msg = buckets.finish(t, dst, list)
  if not nt then return err_reply(code, msg) end
  return install(cs, t, nt, ("migrate.done %d bucket(s) -> %s"):format(#list, dst)) or acked_ok(cs, nt)
end

-- At start (master only): a bucket still blocked was left by a config
-- server that stopped in the middle of a START. Nobody has moved its keys,
-- but which proxies hold that table is unknown, so the START is aborted:
-- the bucket stays with its owner (a new version, pushed as proxies
-- register); the tool's next START begins afresh.
function M.abort_blocked(cs)
  for _, ns in ipairs(store.list(cs.store)) do
    local t = store.get(cs.store, ns)
    local all = {}
    for b = 0, t.bucket_count - 1 do all[#all + 1] = b end
    local blocked = buckets.select(t, all, "blocked")
    if #blocked > 0 then
      local nt = assert(buckets.abort(t, blocked))
      local ok, err = store.put(cs.store, nt)
      if ok then
        log.warn("table %s: %d bucket(s) left blocked by a stop stay with their owner (v%d); "
          .. "run the migration again", ns, #blocked, nt.version)
      else
        log.error("table %s: cannot unblock: %s", ns, tostring(err))
      end
    end
  end
end

--------------------------------------------------------------------------------
-- Commands: commands[NAME] = { arity, run(cs, cmd) -> reply } (kvcs.dispatch)
--------------------------------------------------------------------------------

local commands = {}
M.commands = commands

commands.PING = { arity = -1 }
function commands.PING.run()
  return resp.status("PONG")
end

commands.TABLE = { arity = 2 }
function commands.TABLE.run(cs, cmd)
  local t = store.get(cs.store, cmd[2])
  if not t then return no_namespace(cmd[2]) end
  return btable.encode(t)
end

-- MIGRATE.START|DONE ns dst b...: checks, then step(cs, ns, dst, buckets)
local function migrate(step)
  return function(cs, cmd)
    if not cs.is_master then
      if cs.leader then -- the tool goes to the leader (or the next address while none leads)
        local cur = cs.leader_info and cs.leader_info()
        return resp.error("ERR NOTLEADER " .. (cur and cur.migration or "?"))
      end
      return err_reply(codes.NOT_MASTER, "this config server is a slave")
    end
    if cs.cfg.cluster_type ~= "data_store" then
      return err_reply(codes.WRONG_CLUSTER_TYPE, "migration is for data_store clusters")
    end
    if not store.get(cs.store, cmd[2]) then return no_namespace(cmd[2]) end
    local list = {}
    for i = 4, cmd.n do
      local b = tonumber(cmd[i])
      if not b then return err_reply(codes.BAD_PARAM, "bucket ids are integers") end
      list[#list + 1] = b
    end
    return step(cs, cmd[2], cmd[3], list)
  end
end
commands["MIGRATE.START"] = { arity = -4, run = migrate(M.start) }
commands["MIGRATE.DONE"] = { arity = -4, run = migrate(M.done) }

-- One command of a migration connection. -> reply
function M.command(cs, cmd)
  local c, name = dispatch.find(commands, cmd)
  if not c then return resp.error("ERR unknown command '" .. name .. "'") end
  return c.run(cs, cmd)
end

function M.serve(cs, sock)
  local reader = resp.new_reader()
  if not peers.authenticate(cs, sock, reader, "migration port") then
    sock:close(true)
    return
  end
  while true do
    local cmd = redis.read_value(sock, reader, 3600)
    if not cmd then break end
    local ok, r = xpcall(function() return M.command(cs, cmd) end, debug.traceback)
    if not ok then
      log.error("migration command failed: %s", r)
      r = err_reply(codes.INTERNAL, "internal error")
    end
    sock:send(resp.encode_reply(r))
  end
  sock:close()
end

return M
