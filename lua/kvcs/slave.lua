-- kvcs.slave: a slave config server's copy of the master (DESIGN §7).
-- Connects to the master's cs_listen, proves cluster_secret (kv.handshake), asks for a snapshot (SYNC), installs
-- every table newer than its own, deletes namespaces the master no longer
-- has, then applies pushes. Retries forever while the master is away; a
-- slave never changes a table by itself.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"
local log = require "kv.log"
local store = require "kvcs.store"
local handshake = require "kv.handshake"

local M = {}

local function install(cs, json)
  local t, err = btable.decode(json)
  if not t then
    log.error("master sent a bad table: %s", err)
    return
  end
  local mine = store.get(cs.store, t.namespace)
  if mine and mine.version >= t.version then return t.namespace end
  local ok, perr = store.put(cs.store, t)
  if not ok then
    log.error("cannot save table %s v%d: %s", t.namespace, t.version, perr)
    return t.namespace
  end
  cs.publish(t)
  log.info("table %s v%d copied from the master", t.namespace, t.version)
  return t.namespace
end

local function drop(cs, ns)
  if store.get(cs.store, ns) then
    local ok, err = store.delete(cs.store, ns)
    if ok then
      cs.publish_delete(ns)
      log.info("namespace %s deleted (gone on the master)", ns)
    else
      log.error("cannot delete table %s: %s", ns, err)
    end
  end
end

local function session(cs, host, port)
  local sock, err = loop.connect(host, port, 3)
  if not sock then return err end
  local reader = resp.new_reader()
  local function next_value()
    return redis.read_value(sock, reader, 5)
  end
  local ok, herr = handshake.client({
    send = function(b) sock:send(b) end,
    read = next_value,
  }, cs.cfg.cluster_secret)
  if not ok then
    sock:close()
    return "handshake: " .. tostring(herr)
  end
  sock:send(resp.encode("SYNC", cs.cfg.cs_listen))
  local alive = true
  loop.spawn(function()
    while alive do
      loop.sleep(1)
      if alive then sock:send(resp.encode("PING")) end
    end
  end)
  local reason
  while true do
    local v, rerr = next_value()
    if v == nil then reason = rerr break end
    if type(v) == "table" and v[1] == "snapshot" then
      local seen = {}
      for i = 2, v.n do
        local ns = install(cs, v[i])
        if ns then seen[ns] = true end
      end
      for _, ns in ipairs(store.list(cs.store)) do
        if not seen[ns] then drop(cs, ns) end
      end
      log.info("in sync with master %s:%d (%d namespaces)", host, port, v.n - 1)
    elseif type(v) == "table" and v[1] == "push" then
      if v[2] == "table" then install(cs, v[3])
      elseif v[2] == "del_namespace" then drop(cs, v[3]) end
    elseif type(v) == "table" and v.err then
      reason = "master refused: " .. v.err
      break
    end
  end
  alive = false
  sock:close()
  return reason
end

function M.start(cs)
  local host, port = loop.split_addr(cs.cfg.master_cs)
  loop.spawn(function()
    local failures = 0
    while true do
      local reason = session(cs, host, port)
      failures = failures + 1
      if failures == 1 or failures % 60 == 0 then
        log.warn("master config server %s: %s; retrying", cs.cfg.master_cs, tostring(reason))
      end
      loop.sleep(1)
    end
  end)
end

return M
