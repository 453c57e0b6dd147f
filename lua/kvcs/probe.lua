-- kvcs.probe: is an address a Redis this config server may put in a table?
-- (issue 11, item 3). Asked before init_table, replace_server,
-- scale_cache_cluster and MIGRATE.START change a table, so that a typo or a
-- forged request cannot route keys to something that is not a Redis (the
-- config server's own port: half the keys then answer "backend
-- unavailable") or to a Redis that holds other data.
--
--   probe.facts(addr, password [, timeout]) -> facts | nil, code, msg
--       connects, AUTH with password (when not ""), PING, INFO replication,
--       DBSIZE; facts = { role = "master"|"slave", master = "host:port" (a
--       replica's master) | nil, link = master_link_status, dbsize = n }.
--       Refusals: NOT_REDIS (no connection, no PONG, not RESP) or
--       REDIS_AUTH (the password is refused).
--   probe.judge_replace(old, new, facts) -> true | nil, code, msg   (pure)
--       new may replace old only as old's replica or as an empty master
--       (BAD_TARGET otherwise).
--   probe.judge_new(addr, facts) -> true | nil, code, msg            (pure)
--       a server that joins a table must be a master (BAD_TARGET for a
--       replica: writes routed there would fail).
--   probe.check_new(cs, addr) / probe.check_replace(cs, old, new)
--       -> true | nil, code, msg: facts + judge with cs.cfg.redis_password;
--       cs.probe (a function(addr, password) -> facts | nil, code, msg) is
--       used instead of probe.facts when set (specs).
local codes = require "kv.codes"

local M = {}

M.TIMEOUT = 2 -- seconds, for the connection and for each reply

local function text(r)
  if type(r) == "table" then return tostring(r.err or r.status or "an array") end
  return tostring(r)
end

local function parse_info(s)
  local f = {}
  for line in tostring(s or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([%w_]+):(.*)$")
    if k then f[k] = v end
  end
  return f
end

function M.facts(addr, password, timeout)
  local loop = require "kv.loop"
  local redis = require "kv.redis"
  timeout = timeout or M.TIMEOUT
  local host, port = loop.split_addr(addr)
  if not host then return nil, codes.BAD_ADDR, port end
  local c, err = redis.connect(host, port, { timeout = timeout, connect_timeout = timeout })
  if not c then
    return nil, codes.NOT_REDIS, ("%s does not answer as Redis: %s"):format(addr, tostring(err))
  end
  local function fail(code, msg) c:close() return nil, code, msg end
  if password and password ~= "" then
    local r, e = c:call("AUTH", password)
    if r == nil then
      return fail(codes.NOT_REDIS, ("%s does not answer as Redis: %s"):format(addr, tostring(e)))
    end
    if type(r) == "table" and r.err and not r.err:find("without any password configured", 1, true) then
      return fail(codes.REDIS_AUTH, ("%s refuses the configured redis_password: %s"):format(addr, r.err))
    end
  end
  local r, e = c:call("PING")
  if r == nil or type(r) ~= "table" or r.status ~= "PONG" then
    if type(r) == "table" and r.err and r.err:find("^NOAUTH") then
      return fail(codes.REDIS_AUTH, ("%s needs a password (set redis_password): %s"):format(addr, r.err))
    end
    return fail(codes.NOT_REDIS, ("%s does not answer PING as Redis: %s"):format(addr, r == nil and tostring(e) or text(r)))
  end
  local info, ie = c:call("INFO", "replication")
  if type(info) ~= "string" then
    return fail(codes.NOT_REDIS, ("%s: INFO replication: %s"):format(addr, info == nil and tostring(ie) or text(info)))
  end
  local n, de = c:call("DBSIZE")
  if type(n) ~= "number" then
    return fail(codes.NOT_REDIS, ("%s: DBSIZE: %s"):format(addr, n == nil and tostring(de) or text(n)))
  end
  c:close()
  local f = parse_info(info)
  local role = f.role == "slave" and "slave" or f.role
  if role ~= "master" and role ~= "slave" then
    return nil, codes.NOT_REDIS, ("%s: INFO replication has no role"):format(addr)
  end
  return { role = role, dbsize = n, link = f.master_link_status,
           master = role == "slave" and f.master_host and f.master_port
             and (f.master_host .. ":" .. f.master_port) or nil }
end

function M.judge_new(addr, facts)
  if facts.role ~= "master" then
    return nil, codes.BAD_TARGET, ("%s is a replica (of %s), not a master"):format(addr, tostring(facts.master))
  end
  return true
end

function M.judge_replace(old, new, facts)
  if facts.role == "slave" then
    if facts.master == old then return true end
    return nil, codes.BAD_TARGET, ("%s is a replica of %s, not of %s"):format(new, tostring(facts.master), old)
  end
  if facts.role == "master" and facts.dbsize == 0 then return true end
  return nil, codes.BAD_TARGET, ("%s is a master holding %s key(s); a replacement must be a replica of %s "
    .. "or an empty master"):format(new, tostring(facts.dbsize), old)
end

local function facts_of(cs, addr)
  local pw = cs.cfg and cs.cfg.redis_password or ""
  if cs.probe then return cs.probe(addr, pw) end
  return M.facts(addr, pw)
end

function M.check_new(cs, addr)
  local f, code, msg = facts_of(cs, addr)
  if not f then return nil, code, msg end
  return M.judge_new(addr, f)
end

function M.check_replace(cs, old, new)
  local f, code, msg = facts_of(cs, new)
  if not f then return nil, code, msg end
  return M.judge_replace(old, new, f)
end

return M
