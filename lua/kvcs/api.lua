-- kvcs.api: the config server's HTTP handlers (SPEC §5), plain functions
-- of (cs, body) -> code, msg, data, so specs call them with a fake cs.
--
-- cs = { cfg, store (kvcs.store), is_master, support_ha,
--        publish(t), publish_delete(ns), proxy_list(ns), save_config(changes) }
-- Codes: see kv.codes (one per cause; README lists them).
local btable = require "kv.btable"
local names = require "kv.names"
local codes = require "kv.codes"
local store = require "kvcs.store"
local conf = require "kvcs.conf"
local settings = require "kv.settings"
local probe = require "kvcs.probe"
local policy = require "kvcs.policy"

local M = {}

local function array(t) return setmetatable(t, btable.array_mt) end

-- Changes are made by the master (file store) or the leader (etcd):
-- nil, or code, msg, data for a refusal (NOT_LEADER names the leader).
local function need_master(cs)
  if cs.is_master then return nil end
  if cs.leader then
    local cur = cs.leader_info and cs.leader_info()
    local msg = cur and ("this config server is not the leader; the leader is %s (http %s)"):format(
      tostring(cur.name), tostring(cur.http))
      or "this config server is not the leader and no config server leads now: retry in a few seconds"
    return codes.NOT_LEADER, msg, { leader = cur or require("cjson").null }
  end
  return codes.NOT_MASTER, "this config server is a slave (read-only); send changes to the master"
end
M.need_master = need_master

local function need_namespace(cs, body)
  local ns = body.namespace
  if type(ns) ~= "string" then return nil, codes.BAD_PARAM, "namespace (a string) is required" end
  local t = store.get(cs.store, ns)
  if not t then return nil, codes.NO_NAMESPACE, ("no such namespace '%s'"):format(ns) end
  return t
end

-- Persist, then tell proxies and slaves.
local function commit(cs, t)
  local ok, err = store.put(cs.store, t)
  if not ok then return codes.SAVE_FAILED, "could not save the table: " .. tostring(err) end
  cs.publish(t)
  return codes.OK, "OK"
end

function M.init_table(cs, body)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  local ns, count, list = body.namespace, body.bucket_count, body.address_list
  if type(ns) ~= "string" then return codes.BAD_PARAM, "namespace (a string) is required" end
  local okn, nerr = names.valid_namespace(ns)
  if not okn then return codes.BAD_NAMESPACE, nerr end
  if store.get(cs.store, ns) then
    return codes.NAMESPACE_EXISTS, ("namespace '%s' already exists"):format(ns)
  end
  if type(count) ~= "number" or count % 1 ~= 0 or count < 256 or count > 16384 then
    return codes.BAD_BUCKET_COUNT, "bucket_count must be an integer from 256 to 16384"
  end
  if type(list) ~= "table" or #list == 0 then
    return codes.BAD_PARAM, "address_list (a non-empty list of \"ip:port\") is required"
  end
  for _, a in ipairs(list) do
    if type(a) ~= "string" or not names.valid_addr(a) then
      return codes.BAD_ADDR, ("invalid redis address '%s' (want a.b.c.d:port)"):format(tostring(a))
    end
    local user = store.owner_of(cs.store, a)
    if user then
      return codes.ADDR_IN_USE, ("%s is already used by namespace '%s'"):format(a, user)
    end
  end
  for _, a in ipairs(list) do -- each must answer as a Redis master (kvcs.probe)
    local ok, pc, pm = probe.check_new(cs, a)
    if not ok then return pc, pm end
  end
  local t, err = btable.init(ns, count, list)
  if not t then return codes.BAD_PARAM, err end
  return commit(cs, t)
end

function M.del_namespace(cs, body)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  local ok, err = store.delete(cs.store, t.namespace)
  if not ok then return codes.SAVE_FAILED, "could not delete the table file: " .. tostring(err) end
  cs.publish_delete(t.namespace)
  return codes.OK, "OK"
end

function M.namespace_list(cs)
  return codes.OK, "OK", { namespace_list = array(store.list(cs.store)) }
end

function M.bucket_table(cs, body)
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  return codes.OK, "OK", btable.to_json(t)
end

function M.proxy_info(cs, body)
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  return codes.OK, "OK", { proxy_info = array(cs.proxy_list(t.namespace)) }
end

function M.replace_server(cs, body)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  local old, new = body.old_addr, body.new_addr
  for i = 1, 2 do -- not ipairs: it would stop at a missing one
    local a = new
    if i == 1 then a = old end
    if type(a) ~= "string" or not names.valid_addr(a) then
      return codes.BAD_ADDR, ("invalid redis address '%s' (want a.b.c.d:port)"):format(tostring(a))
    end
  end
  local present = {}
  for _, a in ipairs(btable.addresses(t)) do present[a] = true end
  if not present[old] then
    return codes.ADDR_NOT_IN_TABLE, ("%s is not in the table of '%s'"):format(old, t.namespace)
  end
  local user = store.owner_of(cs.store, new)
  if user then return codes.ADDR_IN_USE, ("%s is already used by namespace '%s'"):format(new, user) end
  -- new must answer as Redis and be old's replica or an empty master
  local ok, pc, pm = probe.check_replace(cs, old, new)
  if not ok then return pc, pm end
  local nt, err = btable.replace_server(t, old, new)
  if not nt then return codes.TABLE_CHANGE_FAILED, err end
  return commit(cs, nt)
end

-- Cache clusters grow and shrink by rebuilding the table (SPEC §5): add
-- moves floor(B / (N + 1)) buckets to addr and nothing else; del moves only
-- addr's buckets, spread over the rest. Keys on moved buckets are lost (the
-- new owner starts empty, the old one keeps stale copies until they expire
-- or are evicted): cache mode only, no data is copied and no acks awaited.
function M.scale_cache_cluster(cs, body)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  if cs.cfg.cluster_type ~= "cache" then
    return codes.WRONG_CLUSTER_TYPE, ("scale_cache_cluster is for cache clusters; this one is %s "
      .. "(data_store clusters scale with migration_tool)"):format(tostring(cs.cfg.cluster_type))
  end
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  local action, addr = body.action, body.addr
  if action ~= "add" and action ~= "del" then
    return codes.BAD_PARAM, 'action must be "add" or "del"'
  end
  if type(addr) ~= "string" or not names.valid_addr(addr) then
    return codes.BAD_ADDR, ("invalid redis address '%s' (want a.b.c.d:port)"):format(tostring(addr))
  end
  local nt, err
  if action == "add" then
    local user = store.owner_of(cs.store, addr)
    if user then return codes.ADDR_IN_USE, ("%s is already used by namespace '%s'"):format(addr, user) end
    local ok, pc, pm = probe.check_new(cs, addr)
    if not ok then return pc, pm end
    nt, err = btable.scale_up(t, addr)
  else
    local counts = btable.counts(t)
    if not counts[addr] then
      return codes.ADDR_NOT_IN_TABLE, ("%s is not in the table of '%s'"):format(addr, t.namespace)
    end
    if #btable.servers(t) == 1 then
      return codes.TABLE_CHANGE_FAILED, ("%s is the last server of '%s'; it cannot be removed"):format(addr, t.namespace)
    end
    nt, err = btable.scale_down(t, addr)
  end
  if not nt then return codes.TABLE_CHANGE_FAILED, err end
  return commit(cs, nt)
end

-- Key-rewrite patterns belong to the namespace's table (SPEC §4): a change
-- bumps the version, is persisted and pushed like any table change. Called
-- by proxies over the control link (PATTERN ADD|DEL ns pattern).
function M.change_pattern(cs, ns, op, pattern)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  local t, code, msg = need_namespace(cs, { namespace = ns })
  if not t then return code, msg end
  if type(pattern) ~= "string" or pattern == "" then
    return codes.BAD_PARAM, "pattern (a non-empty string) is required"
  end
  local nt, err
  if op == "ADD" then
    for _, p in ipairs(t.patterns) do
      if p == pattern then return codes.PATTERN_EXISTS, ("pattern '%s' already exists"):format(pattern) end
    end
    nt, err = btable.add_pattern(t, pattern)
  elseif op == "DEL" then
    local found = false
    for _, p in ipairs(t.patterns) do found = found or p == pattern end
    if not found then return codes.NO_PATTERN, ("no such pattern '%s'"):format(pattern) end
    nt, err = btable.del_pattern(t, pattern)
  else
    return codes.BAD_PARAM, "pattern operation must be ADD or DEL"
  end
  if not nt then return codes.BAD_PARAM, err end
  return commit(cs, nt)
end

-- Forget a proxy that is gone for good (DESIGN §4: known proxies that are
-- unreachable block bucket moves until they return or are removed).
function M.remove_proxy(cs, body)
  local c, m, d = need_master(cs)
  if c then return c, m, d end
  local t, code, msg = need_namespace(cs, body)
  if not t then return code, msg end
  local who = body.proxy
  if type(who) ~= "string" or who == "" then
    return codes.BAD_PARAM, "proxy (its id or listen address, as proxy_info shows) is required"
  end
  local ok, err = cs.forget_proxy(t.namespace, who)
  if not ok then
    if err == "connected" then
      return codes.TABLE_CHANGE_FAILED, ("proxy '%s' is connected; stop it first"):format(who)
    end
    return codes.NO_PROXY, ("no known proxy '%s' in '%s'"):format(who, t.namespace)
  end
  return codes.OK, "OK"
end

function M.get_config(cs)
  return codes.OK, "OK", { data = { support_ha = cs.support_ha, is_master = cs.is_master,
                                    cluster_type = cs.cfg.cluster_type } }
end

-- Takes the keys kvcs.conf declares live (support_ha), all or nothing.
function M.set_config(cs, body)
  local changes, code, msg = settings.changes(conf.decl, cs.cfg, body)
  if not changes then return code, msg end
  local ok, err = cs.save_config(changes)
  if not ok then return codes.SAVE_FAILED, "could not write the config file: " .. tostring(err) end
  if changes.support_ha ~= nil then cs.support_ha = changes.support_ha end
  return codes.OK, "OK"
end

-- The namespace's routing policy (kvcs.policy; issue 13).
function M.set_policy(cs, body)
  return policy.set(cs, body.namespace, body.source, body.force)
end

-- "a%20b" -> "a b"; "+" is a space (form encoding)
local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The query string's fields (?namespace=x&key=y), for GET requests
local function query_fields(req)
  local out = {}
  for k, v in tostring(req and req.query or ""):gmatch("([^&=]+)=([^&]*)") do
    out[unescape(k)] = unescape(v)
  end
  return out
end

-- Body fields, else the query string's (GET /kvstore/cs/policy?namespace=x)
local function fields(body, req)
  if next(body) ~= nil then return body end
  return query_fields(req)
end

function M.get_policy(cs, body, req)
  body = fields(body, req)
  return policy.get(cs, body.namespace)
end

function M.locate(cs, body, req)
  body = fields(body, req)
  return policy.locate(cs, body.namespace, body.key, body.command)
end

-- Who leads. With etcd: the leader, this config server, and every member
-- holding a lease; with the file store: the master.
function M.leader(cs)
  local cjson = require "cjson"
  local cfg = cs.cfg
  local me = { name = cfg.node_name ~= "" and cfg.node_name or cfg.http_listen, http = cfg.http_listen,
               proxy = cfg.proxy_listen, migration = cfg.migration_listen }
  if not cs.leader then
    return codes.OK, "OK", { store = "file", is_leader = cs.is_master, me = me,
      leader = cs.is_master and me or { cs_sync = cfg.master_cs } }
  end
  local members = array({})
  local kvs = cs.etcd:range(cfg.etcd_prefix .. "/_members/")
  for _, kv in ipairs(kvs or {}) do
    local ok, m = pcall(cjson.decode, kv.value)
    if ok and type(m) == "table" then members[#members + 1] = m end
  end
  local cur = cs.leader_info()
  return codes.OK, "OK", { store = "etcd", is_leader = cs.is_master, me = me, leader = cur or cjson.null,
    members = members, elections = cs.leader.elections }
end

-- path -> route for kv.httpd
function M.routes(cs)
  local function h(fn) return function(body, req) return fn(cs, body, req) end end
  return {
    ["/kvstore/cs/init_table"] = { fn = h(M.init_table), change = true },
    ["/kvstore/cs/del_namespace"] = { fn = h(M.del_namespace), change = true },
    ["/kvstore/cs/namespace_list"] = { fn = h(M.namespace_list) },
    ["/kvstore/cs/bucket_table"] = { fn = h(M.bucket_table) },
    ["/kvstore/cs/proxy_info"] = { fn = h(M.proxy_info) },
    ["/kvstore/cs/replace_server"] = { fn = h(M.replace_server), change = true },
    ["/kvstore/cs/scale_cache_cluster"] = { fn = h(M.scale_cache_cluster), change = true },
    ["/kvstore/cs/get_config"] = { fn = h(M.get_config) },
    ["/kvstore/cs/remove_proxy"] = { fn = h(M.remove_proxy), change = true },
    ["/kvstore/cs/set_config"] = { fn = h(M.set_config), change = true },
    ["/kvstore/cs/leader"] = { fn = h(M.leader) },
    ["/kvstore/cs/set_policy"] = { fn = h(M.set_policy), change = true },
    ["/kvstore/cs/policy"] = { fn = h(M.get_policy) },
    ["/kvstore/cs/locate"] = { fn = h(M.locate) },
  }
end

return M
