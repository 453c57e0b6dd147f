-- kvp.cslink: the proxy's link to the config server (DESIGN §3).
--
-- The proxy registers for its namespace, installs the table in the reply,
-- then installs every pushed table whose version is greater than the one it
-- holds (a stale config server can never roll it back). Heartbeats go both
-- ways: the proxy sends PING every second, the config server pushes a ping
-- every second; 5 s of silence closes the link. While no config server is
-- reachable the data path keeps its last table; the link retries in the
-- background, the master first, then the slave.
--
-- Wire (RESP): proxy -> cs commands
--   REGISTER <ns> <listen_addr> <proxy_id>  -> bulk: table JSON | -ERR ...
--   PING -> +PONG      ACK <ns> <version> -> +OK
-- cs -> proxy pushes: arrays whose first element is "push":
--   push table <json> | push ping | push del_namespace <ns>
local loop = require "kv.loop"
local resp = require "kv.resp"
local btable = require "kv.btable"
local log = require "kv.log"

local M = {}

local HEARTBEAT = 1
local DEAD_AFTER = 5

-- What the data path needs from a btable: servers and 1-based owners.
function M.flatten(t)
  local servers = btable.servers(t)
  local index = {}
  for i, a in ipairs(servers) do index[a] = i end
  local owners = {}
  for b = 0, t.bucket_count - 1 do owners[b + 1] = index[t.owner[b]] end
  return servers, owners
end

-- Install a table if newer. Returns true when installed.
function M.apply(state, json)
  local t, err = btable.decode(json, state.namespace)
  if not t then
    log.error("config server sent a bad table for %s: %s", state.namespace, err)
    return false
  end
  if state.table and t.version <= state.table.version then
    log.debug("ignoring table v%d of %s: holding v%d", t.version, state.namespace, state.table.version)
    return false
  end
  local servers, owners = M.flatten(t)
  local ok, serr = state.install(t.version, t.bucket_count, servers, owners)
  if not ok then
    log.error("cannot install table v%d: %s", t.version, serr)
    return false
  end
  local from = state.table and ("v" .. state.table.version) or "none"
  state.table = t
  log.info("table of %s: v%d installed (was %s): %d buckets on %s", state.namespace, t.version,
    from, t.bucket_count, table.concat(servers, ", "))
  if state.on_table then state.on_table(t) end
  return true
end

local function is_push(v)
  return type(v) == "table" and v.n and v.n >= 2 and v[1] == "push"
end

-- One session with one config server; returns the reason it ended.
local function session(state, addr)
  local host, port = loop.split_addr(addr)
  local sock, err = loop.connect(host, port, 3)
  if not sock then return err end
  state.sock = sock
  local reader = resp.new_reader()
  local function next_value()
    return sock:receive_with(function(buf, pos)
      if pos <= #buf then
        reader:feed(buf:sub(pos))
        sock.pos = #buf + 1
      end
      local v, e = reader:next()
      if v == nil then
        if e then return nil, e end
        return nil
      end
      return v, sock.pos
    end, DEAD_AFTER)
  end
  sock:send(resp.encode("REGISTER", state.namespace, state.listen, state.proxy_id))
  local registered = false
  local alive = true
  loop.spawn(function()
    while alive do
      loop.sleep(HEARTBEAT)
      if alive and registered then sock:send(resp.encode("PING")) end
    end
  end)
  local reason
  while true do
    local v, rerr = next_value()
    if v == nil then
      reason = rerr == "timeout" and ("no heartbeat for " .. DEAD_AFTER .. " s") or rerr
      break
    end
    if is_push(v) then
      local kind = v[2]
      if kind == "table" then
        M.apply(state, v[3])
      elseif kind == "del_namespace" and v[3] == state.namespace then
        state.on_deleted()
      end
    elseif not registered then
      if type(v) == "string" then
        registered = true
        state.connected_to = addr
        log.info("registered with config server %s as %s", addr, state.listen)
        M.apply(state, v)
      else
        local msg = type(v) == "table" and v.err or tostring(v)
        alive = false
        sock:close()
        if msg and msg:find("no such namespace", 1, true) then
          state.on_unknown_namespace(msg)
        end
        return "registration refused: " .. tostring(msg)
      end
    end
    -- other replies (+PONG, +OK) need no action
  end
  alive = false
  sock:close()
  state.sock = nil
  state.connected_to = nil
  return reason
end

-- state: { namespace, listen, proxy_id, servers = {master, slave?},
--          install(version, buckets, servers, owners) -> ok, err,
--          on_deleted(), on_unknown_namespace(msg), on_table(t)? }
function M.start(state)
  loop.spawn(function()
    local i, failures = 1, 0
    while true do
      local addr = state.servers[i]
      local reason = session(state, addr)
      failures = failures + 1
      if failures == 1 or failures % 30 == 0 then
        log.warn("config server %s: %s; %s", addr, tostring(reason),
          state.table and ("serving with table v" .. state.table.version) or "no table yet")
      end
      if #state.servers > 1 then i = i % #state.servers + 1 end
      loop.sleep(i == 1 and 1 or 0.2)
    end
  end)
end

function M.ack(state, version)
  if state.sock then state.sock:send(resp.encode("ACK", state.namespace, tostring(version))) end
end

return M
