-- kv.etcd: an etcd v3 client over kv.loop, speaking the JSON gateway
-- (HTTP/1.1, POST /v3/...) that every etcd member serves on its client port:
-- no gRPC needed. Control-plane code: every call yields on I/O, none blocks
-- the loop, any kv.loop task may call it (calls may run concurrently: each
-- takes its own kept-alive connection from a small idle pool).
--
--   etcd.new{ endpoints = {"127.0.0.1:2379", ...}, timeout = 2, user = "",
--             password = "", log = fn(fmt, ...) } -> client
--   client:get(key) -> kv, header | nil, header (absent) | nil, err (a string)
--   client:range(prefix) -> {kv...} sorted by key, header | nil, err
--   client:put(key, value, lease?) -> header | nil, err
--   client:delete(key, is_prefix?) -> deleted_count, header | nil, err
--   client:txn{ compare = {...}, success = {...}, failure = {...} }
--       -> succeeded, responses, header | nil, err        (see encode_txn)
--   client:grant(ttl) -> lease_id (string), ttl | nil, err
--   client:keepalive(lease_id) -> ttl (0: the lease is gone) | nil, err
--   client:revoke(lease_id) -> true | nil, err
--   client:watch(prefix, start_revision, on_events, opts?) -> watcher
--   client:compact(revision) -> true | nil, err
--   client:close()            closes idle connections (watchers keep theirs)
--   client.stats = { requests, errors, switches, endpoint, last_rtt, rtts (last 32, s),
--                    revision (newest store revision seen in a reply) }
--   kv = { key, value, create_revision, mod_revision, version, lease }
--   header = { revision, raft_term, member_id, cluster_id }
--
-- Numbers: etcd sends every int64 as a JSON string. Revisions, versions and
-- TTLs become Lua numbers (they stay far below 2^53); lease IDs are random
-- 63-bit numbers and stay strings, as the caller passes them back.
--
-- Failures. A request goes to the current endpoint; a connect failure, a
-- timeout (opts.timeout per attempt), a broken connection, a 5xx or a body
-- that is not etcd's JSON moves the client to the next endpoint (one log
-- line). Reads (get, range), keepalive, grant, revoke and authenticate are
-- then retried once there. A put/delete/txn that may have reached etcd is
-- not retried: it returns nil, "unknown outcome: <why>" and the caller must
-- re-read. A request whose connection could not even be opened was never
-- sent: it goes on to the next endpoint, each endpoint tried once for that
-- (so one live member of three is found). A call gives up after 2 * timeout
-- at most, with "etcd unreachable: <why per attempt>". A 4xx is etcd
-- refusing the request: its message is the error.
-- With user set the client authenticates first and again once on
-- "invalid auth token" (tokens expire; another member may not know one).
--
-- Watch: a task of its own reads the stream on its own connection and calls
-- on_events(events, header) per message: events = { {type = "PUT"|"DELETE",
-- kv = kv}, ... } ({} for a progress notification). When the stream breaks it
-- reconnects (next endpoint, backing off up to 1 s) from the last revision
-- seen + 1, so no event is lost or repeated. When that revision has been
-- compacted away it calls on_events(nil, "compacted", compact_revision): the
-- caller re-reads everything and returns the revision to go on from (its
-- read's header.revision + 1); returning nothing goes on from
-- compact_revision. The watch asks the member to end it when the member loses
-- its raft leader (gRPC metadata hasleader), so a member cut off from the
-- others does not feed a silent stream: the watcher moves on to another.
-- opts.idle (s, default none): after that long without a message the
-- watcher asks the stream's member a linearizable read; when it does not
-- answer within the timeout (a stalled process, a link that black-holes
-- packets: no close ever comes) the stream is dropped and opened elsewhere.
--   watcher:cancel()     watcher.revision: next revision expected
--   watcher.endpoint: the endpoint of the current stream ("h:p")
--   watcher.restarts: streams that ended and were opened again
--   watcher.header_revision: store revision of the last message (watch lag)
local loop = require "kv.loop"
local log = require "kv.log"
local httpc = require "kv.httpc"
local base64 = require "kv.base64"
local cjson = require("cjson.safe").new()

local M = {}

local MAX_BODY = 64 * 1024 * 1024
local MAX_IDLE = 4          -- kept-alive connections per client
local LOG_EVERY = 10        -- s between two lines of one error kind and endpoint
local RTT_KEEP = 32

-- Pure parts (tested by tests/lua/etcd_spec.lua) ------------------------

M.b64, M.unb64 = base64.encode, base64.decode

-- The range_end that makes [prefix, range_end) every key starting with
-- prefix: the prefix with its last byte below 0xff incremented and what
-- follows dropped; "\0" (every key) when there is no such byte.
function M.prefix_end(prefix)
  for i = #prefix, 1, -1 do
    local b = prefix:byte(i)
    if b < 255 then return prefix:sub(1, i - 1) .. string.char(b + 1) end
  end
  return "\0"
end

-- int64 JSON string (or number) -> Lua number; absent -> 0 (proto3 omits zeros)
local function num(v)
  if v == nil then return 0 end
  local n = tonumber(v)
  if not n then error("not a number: " .. tostring(v), 0) end
  return n
end

local function i64(n)
  if type(n) == "string" then
    if not n:find("^%-?%d+$") then error("bad integer " .. n, 0) end
    return n
  end
  if type(n) ~= "number" or n ~= math.floor(n) then error("bad integer " .. tostring(n), 0) end
  return string.format("%d", n)
end

local function bytes(v)
  if v == nil then return "" end
  local s, err = base64.decode(v)
  if not s then error(err, 0) end
  return s
end

local function decode_header(h)
  if type(h) ~= "table" then return { revision = 0, raft_term = 0 } end
  return { revision = num(h.revision), raft_term = num(h.raft_term),
           member_id = h.member_id, cluster_id = h.cluster_id }
end

local function decode_kv(j)
  if type(j) ~= "table" then error("kv is not an object", 0) end
  return {
    key = bytes(j.key), value = bytes(j.value),
    create_revision = num(j.create_revision), mod_revision = num(j.mod_revision),
    version = num(j.version), lease = j.lease and tostring(j.lease) or "0",
  }
end

local function decode_kvs(list)
  local out = {}
  if list == nil then return out end
  if type(list) ~= "table" then error("kvs is not a list", 0) end
  for i, j in ipairs(list) do out[i] = decode_kv(j) end
  return out
end

-- A range request over key (or every key under it when prefix is set).
local function range_req(key, prefix)
  local r = { key = base64.encode(key) }
  if prefix then r.range_end = base64.encode(M.prefix_end(key)) end
  return r
end

local TARGETS = { MOD = "mod_revision", CREATE = "create_revision", VERSION = "version",
                  VALUE = "value", LEASE = "lease" }
local RESULTS = { EQUAL = true, NOT_EQUAL = true, GREATER = true, LESS = true }

-- A txn's parts as callers write them:
--   compare: { key = k, target = "MOD"|"CREATE"|"VERSION"|"LEASE", result =
--              "EQUAL" (default)|"NOT_EQUAL"|"GREATER"|"LESS", value = n }
--            (n a number, or a string of digits for int64 such as a lease);
--            target "VALUE" compares bytes: value = "..."
--            CREATE == 0 / VERSION == 0: the key does not exist
--   op:      { put = { key, value, lease? } } (or put = { key =, value =, lease = })
--            { delete = { key, prefix = bool } }
--            { range = { key, prefix = bool } }
function M.encode_compare(c)
  local field = TARGETS[c.target]
  if not field then error("compare: bad target " .. tostring(c.target), 0) end
  local result = c.result or "EQUAL"
  if not RESULTS[result] then error("compare: bad result " .. tostring(result), 0) end
  if type(c.key) ~= "string" then error("compare: key must be a string", 0) end
  local e = { key = base64.encode(c.key), target = c.target, result = result }
  if c.target == "VALUE" then
    e.value = base64.encode(tostring(c.value))
  else
    e[field] = i64(c.value or 0)
  end
  return e
end

function M.encode_op(op)
  if op.put then
    local p = op.put
    local key, value = p.key or p[1], p.value or p[2]
    local lease = p.lease or p[3]
    if type(key) ~= "string" or type(value) ~= "string" then
      error("put: key and value must be strings", 0)
    end
    local r = { key = base64.encode(key), value = base64.encode(value) }
    if lease and lease ~= "0" and lease ~= 0 then r.lease = i64(lease) end
    return { request_put = r }
  elseif op.delete then
    local d = op.delete
    local key = d.key or d[1]
    if type(key) ~= "string" then error("delete: key must be a string", 0) end
    return { request_delete_range = range_req(key, d.prefix) }
  elseif op.range then
    local g = op.range
    local key = g.key or g[1]
    if type(key) ~= "string" then error("range: key must be a string", 0) end
    return { request_range = range_req(key, g.prefix) }
  end
  error("txn: an op is put, delete or range", 0)
end

-- The JSON body of a txn. Empty lists are left out (cjson would write {}).
function M.encode_txn(t)
  local body = {}
  for _, part in ipairs({ "compare", "success", "failure" }) do
    local list = t[part]
    if list and #list > 0 then
      local out = {}
      for i, x in ipairs(list) do
        out[i] = part == "compare" and M.encode_compare(x) or M.encode_op(x)
      end
      body[part] = out
    end
  end
  return cjson.encode(body)
end

-- A decoded txn reply -> succeeded, responses
-- responses[i] = { type = "range", kvs = {...}, count = n } | { type = "put" }
--              | { type = "delete", deleted = n }
function M.decode_txn(j)
  local out = {}
  local list = j.responses
  if list ~= nil and type(list) ~= "table" then error("responses is not a list", 0) end
  for i, r in ipairs(list or {}) do
    if type(r) ~= "table" then error("bad txn response", 0) end
    if r.response_range then
      local kvs = decode_kvs(r.response_range.kvs)
      out[i] = { type = "range", kvs = kvs, count = num(r.response_range.count) }
    elseif r.response_put then
      out[i] = { type = "put" }
    elseif r.response_delete_range then
      out[i] = { type = "delete", deleted = num(r.response_delete_range.deleted) }
    else
      out[i] = { type = "unknown" }
    end
  end
  return j.succeeded == true, out
end

function M.decode_events(list)
  local out = {}
  if list == nil then return out end
  if type(list) ~= "table" then error("events is not a list", 0) end
  for i, ev in ipairs(list) do
    if type(ev) ~= "table" then error("bad event", 0) end
    local t = ev.type or "PUT"      -- PUT is enum 0: omitted
    if t ~= "PUT" and t ~= "DELETE" then error("bad event type " .. tostring(t), 0) end
    out[i] = { type = t, kv = decode_kv(ev.kv) }
  end
  return out
end

-- A streamed body (watch, keepalive): one JSON object per line, lines cut
-- anywhere by chunks and reads. feed(bytes) -> { msg, ... } | nil, err
function M.new_stream(max_line)
  max_line = max_line or MAX_BODY
  local parts, held = {}, 0
  local s = {}
  function s.feed(data)
    local msgs = {}
    local start = 1
    while true do
      local nl = data:find("\n", start, true)
      if not nl then break end
      parts[#parts + 1] = data:sub(start, nl - 1)
      local line = table.concat(parts)
      parts, held = {}, 0
      start = nl + 1
      if line:find("%S") then
        local m, err = cjson.decode(line)
        if type(m) ~= "table" then return nil, "bad JSON in stream: " .. tostring(err or line:sub(1, 80)) end
        msgs[#msgs + 1] = m
      end
    end
    if start <= #data then
      held = held + #data - start + 1
      if held > max_line then return nil, "stream message over " .. max_line .. " bytes" end
      parts[#parts + 1] = data:sub(start)
    end
    return msgs
  end
  return s
end

-- Transport ---------------------------------------------------------------

local Client = {}
Client.__index = Client

function M.new(opts)
  local eps = opts.endpoints
  if type(eps) == "string" then
    local list = {}
    for a in eps:gmatch("[^,%s]+") do list[#list + 1] = a end
    eps = list
  end
  if type(eps) ~= "table" or #eps == 0 then error("etcd.new: no endpoints", 2) end
  for _, a in ipairs(eps) do
    local h = loop.split_addr(a)
    if not h then error("etcd.new: bad endpoint " .. tostring(a), 2) end
  end
  return setmetatable({
    endpoints = eps, cur = 1, timeout = opts.timeout or 2,
    user = opts.user or "", password = opts.password or "",
    log = opts.log or log.warn,
    token = nil, idle = {}, logged = {},
    stats = { requests = 0, errors = 0, switches = 0, endpoint = eps[1], last_rtt = 0, rtts = {},
              revision = 0 },
  }, Client)
end

-- One line per error kind and endpoint per LOG_EVERY seconds.
local function note(c, ep, kind, fmt, ...)
  c.stats.errors = c.stats.errors + 1
  local key = ep .. " " .. kind
  local now = loop.now()
  if c.logged[key] and now - c.logged[key] < LOG_EVERY then return end
  c.logged[key] = now
  c.log(fmt, ...)
end

-- Move on from endpoint index i (unless another failure already did).
local function switch(c, i, why)
  if c.cur ~= i then return end
  local from = c.endpoints[i]
  c.cur = i % #c.endpoints + 1
  c.stats.switches = c.stats.switches + 1
  c.stats.endpoint = c.endpoints[c.cur]
  for _, conn in ipairs(c.idle) do conn.sock:close() end
  c.idle = {}
  local key, now = from .. " switch", loop.now()
  if c.logged[key] and now - c.logged[key] < LOG_EVERY then return end
  c.logged[key] = now
  c.log("etcd: leaving endpoint %s (%s), now using %s", from, why, c.stats.endpoint)
end

local function any_bytes(buf, pos)
  if pos > #buf then return nil end
  return buf:sub(pos), #buf + 1
end

-- etcd's message in an error body: {"error": "..", "message": ".."} from a
-- unary call, {"error": {"message": ..}} from a stream
local function error_text(body)
  local j = cjson.decode(body)
  if type(j) ~= "table" then return body:sub(1, 200) end
  local e = j.message or j.error
  if type(e) == "table" then e = e.message end
  return tostring(e or body:sub(1, 200))
end

local function connect_error(ep, err)
  err = tostring(err)
  if err:find("^cannot connect") then return err end
  return "cannot connect to " .. ep .. ": " .. err
end

-- A connection to endpoint index i: an idle one or a new one.
local function get_conn(c, i, timeout)
  while #c.idle > 0 do
    local conn = table.remove(c.idle)
    if not conn.sock.closed and conn.ep == i then return conn end
    conn.sock:close()
  end
  local host, port = loop.split_addr(c.endpoints[i])
  local sock, err = loop.connect(host, port, timeout)
  if not sock then return nil, err end
  return { sock = sock, ep = i, reader = httpc.new_reader({ max_body = MAX_BODY }) }
end

local function put_conn(c, conn)
  if conn.ep == c.cur and #c.idle < MAX_IDLE and not conn.sock.closed then
    c.idle[#c.idle + 1] = conn
  else
    conn.sock:close()
  end
end

-- Reads one response: status, body | nil, err
local function read_response(conn, deadline)
  local r = conn.reader
  local resp, parts = nil, {}
  while true do
    local ev, v = r:next()
    if ev == "head" then
      resp = v
    elseif ev == "data" then
      parts[#parts + 1] = v
    elseif ev == "done" then
      return resp, table.concat(parts)
    elseif v then
      return nil, "bad HTTP response: " .. v
    else
      local left = deadline - loop.now()
      if left <= 0 then return nil, "timeout" end
      local bytes_in, err = conn.sock:receive_with(any_bytes, left)
      if not bytes_in then return nil, err end
      r:feed(bytes_in)
    end
  end
end

-- Error kinds: connect (not sent), transport (timeout, closed, bad bytes, 5xx:
-- the endpoint is unwell), auth (invalid token), refused (a 4xx, final).
local function attempt(c, path, body, i)
  local ep = c.endpoints[i]
  local t0 = loop.now()
  local deadline = t0 + c.timeout
  local conn, err = get_conn(c, i, c.timeout)
  if not conn then return nil, connect_error(ep, err), "connect" end
  local headers = { ["Grpc-Metadata-hasleader"] = "true" }
  if c.token and path ~= "/v3/auth/authenticate" then headers["Authorization"] = c.token end
  conn.sock:send(httpc.request("POST", ep, path, headers, body))
  local resp, data = read_response(conn, deadline)
  if not resp then
    conn.sock:close()
    return nil, ep .. ": " .. tostring(data), "transport"
  end
  local rtt = loop.now() - t0
  local st = c.stats
  st.requests = st.requests + 1
  st.last_rtt = rtt
  st.rtts[(st.requests - 1) % RTT_KEEP + 1] = rtt
  if (resp.headers["connection"] or ""):lower() == "close" then conn.sock:close() end
  put_conn(c, conn)
  local j = cjson.decode(data)
  if resp.status >= 500 then
    return nil, ep .. ": HTTP " .. resp.status .. ": " .. error_text(data), "transport"
  end
  if type(j) ~= "table" then
    return nil, ep .. ": HTTP " .. resp.status .. " body is not JSON", "transport"
  end
  if resp.status ~= 200 then
    local msg = error_text(data)
    if msg:find("invalid auth token", 1, true) then return nil, msg, "auth" end
    return nil, "etcd: " .. msg, "refused"
  end
  -- the newest store revision any reply showed (against a watcher's: its lag)
  local h = type(j.header) == "table" and j.header
    or type(j.result) == "table" and type(j.result.header) == "table" and j.result.header
  local rev = h and tonumber(h.revision)
  if rev and rev > st.revision then st.revision = rev end
  return j
end

local function authenticate(c)
  local body = cjson.encode({ name = c.user, password = c.password })
  local j, err = nil, nil
  for _ = 1, 2 do
    local i = c.cur
    local kind
    j, err, kind = attempt(c, "/v3/auth/authenticate", body, i)
    if j then break end
    if kind == "refused" then return nil, err end
    note(c, c.endpoints[i], kind, "etcd: %s", err)
    switch(c, i, err)
  end
  if not j then return nil, err end
  if type(j.token) ~= "string" then return nil, "etcd: authenticate: no token in reply" end
  c.token = j.token
  return true
end

-- idempotent: retried once on the next endpoint after a transport failure.
function Client:call(path, body_table, idempotent)
  local body = type(body_table) == "string" and body_table or cjson.encode(body_table)
  local reauth = false
  local tries, sent, errs, t0 = 0, 0, {}, loop.now()
  while true do
    if self.user ~= "" and not self.token then
      local ok, err = authenticate(self)
      if not ok then return nil, err end
    end
    local i = self.cur
    local token = self.token
    local j, err, kind = attempt(self, path, body, i)
    if j then return j end
    if kind == "refused" then return nil, err end
    if kind == "auth" then
      if reauth then return nil, "etcd: " .. err end
      reauth = true
      if self.token == token then self.token = nil end
    else
      note(self, self.endpoints[i], kind, "etcd: %s", err)
      switch(self, i, err)
      tries = tries + 1
      errs[tries] = err
      if kind ~= "connect" then
        if not idempotent then return nil, "unknown outcome: " .. table.concat(errs, "; ") end
        sent = sent + 1
      end
      -- a refused connection costs nothing: try every endpoint once for it;
      -- a request that reached a member and failed is tried once more
      if sent >= 2 or tries > #self.endpoints or loop.now() - t0 >= 2 * self.timeout then
        return nil, "etcd unreachable: " .. table.concat(errs, "; ")
      end
    end
  end
end

-- Runs fn(j) turning a shape error of etcd's reply into nil, err.
local function decoded(fn, j, err)
  if not j then return nil, err end
  local ok, a, b, c = pcall(fn, j)
  if not ok then return nil, "bad reply from etcd: " .. tostring(a) end
  return a, b, c
end

-- KV ----------------------------------------------------------------------

local function need_key(key)
  if type(key) ~= "string" then return "etcd: key must be a string, not " .. type(key) end
end

function Client:get(key)
  local bad = need_key(key)
  if bad then return nil, bad end
  local j, err = self:call("/v3/kv/range", range_req(key), true)
  return decoded(function(r)
    local kvs = decode_kvs(r.kvs)
    return kvs[1], decode_header(r.header)
  end, j, err)
end

function Client:range(prefix)
  local bad = need_key(prefix)
  if bad then return nil, bad end
  local j, err = self:call("/v3/kv/range", range_req(prefix, true), true)
  return decoded(function(r)
    return decode_kvs(r.kvs), decode_header(r.header)
  end, j, err)
end

function Client:put(key, value, lease)
  local ok, op = pcall(M.encode_op, { put = { key = key, value = value, lease = lease } })
  if not ok then return nil, op end
  local j, err = self:call("/v3/kv/put", op.request_put, false)
  return decoded(function(r) return decode_header(r.header) end, j, err)
end

function Client:delete(key, is_prefix)
  local bad = need_key(key)
  if bad then return nil, bad end
  local j, err = self:call("/v3/kv/deleterange", range_req(key, is_prefix), false)
  return decoded(function(r) return num(r.deleted), decode_header(r.header) end, j, err)
end

function Client:txn(t)
  local ok, body = pcall(M.encode_txn, t)
  if not ok then return nil, body end
  local j, err = self:call("/v3/kv/txn", body, false)
  return decoded(function(r)
    local succeeded, responses = M.decode_txn(r)
    return succeeded, responses, decode_header(r.header)
  end, j, err)
end

-- Leases ------------------------------------------------------------------

function Client:grant(ttl)
  local ok, t = pcall(i64, ttl)
  if not ok then return nil, "etcd: ttl: " .. t end
  local j, err = self:call("/v3/lease/grant", { TTL = t }, true)
  return decoded(function(r)
    if r.error and r.error ~= "" then error(r.error, 0) end
    if r.ID == nil then error("no lease ID", 0) end
    return tostring(r.ID), num(r.TTL)
  end, j, err)
end

function Client:keepalive(id)
  local ok, s = pcall(i64, id)
  if not ok then return nil, "etcd: lease id: " .. s end
  local j, err = self:call("/v3/lease/keepalive", '{"ID":"' .. s .. '"}', true)
  -- a streamed reply: {"result":{...}} (or {"error":{...}}) and the end
  return decoded(function(r)
    if type(r.error) == "table" then error(tostring(r.error.message), 0) end
    if type(r.result) ~= "table" then error("no result", 0) end
    return num(r.result.TTL)
  end, j, err)
end

function Client:revoke(id)
  local ok, s = pcall(i64, id)
  if not ok then return nil, "etcd: lease id: " .. s end
  local j, err = self:call("/v3/lease/revoke", '{"ID":"' .. s .. '"}', true)
  if not j then
    -- a lease already gone is revoked as far as the caller cares
    if err and err:find("requested lease not found", 1, true) then return true end
    return nil, err
  end
  return true
end

-- Watch -------------------------------------------------------------------

local Watcher = {}
Watcher.__index = Watcher

-- What a watcher does with one stream message: nil to go on, or a reason
-- to end this stream and reconnect.
local function on_message(w, m)
  if type(m.error) == "table" or type(m.error) == "string" then
    return "error in stream: " .. tostring(type(m.error) == "table" and m.error.message or m.error)
  end
  local res = m.result
  if type(res) ~= "table" then return "stream message without result" end
  local ok, header = pcall(decode_header, res.header)
  if not ok then return "bad header: " .. tostring(header) end
  if header.revision > 0 then w.header_revision = header.revision end
  if res.canceled then
    local compact = tonumber(res.compact_revision) or 0
    if compact > 0 then
      local ok2, from = xpcall(w.on_events, debug.traceback, nil, "compacted", compact)
      if not ok2 then log.error("etcd watch handler failed: %s", from) end
      w.revision = tonumber(ok2 and from) or compact
      w.compacted = true
      return "compacted at " .. compact
    end
    return "canceled by etcd: " .. tostring(res.cancel_reason or "?")
  end
  if res.created then
    -- "from now": events after the creation revision
    if w.revision == 0 then w.revision = header.revision + 1 end
    return nil
  end
  local ok3, events = pcall(M.decode_events, res.events)
  if not ok3 then return "bad events: " .. tostring(events) end
  if #events == 0 then
    -- a progress notification: nothing at or below its revision is pending
    if header.revision >= w.revision then w.revision = header.revision + 1 end
  else
    local last = events[#events].kv.mod_revision
    if last >= w.revision then w.revision = last + 1 end
  end
  local ok4, err = xpcall(w.on_events, debug.traceback, events, header)
  if not ok4 then log.error("etcd watch handler failed: %s", err) end
  return nil
end

-- A linearizable read of one key of the prefix on endpoint i (the watch's).
local function probe(w, i)
  local c = w.client
  local req = range_req(w.prefix, true)
  req.limit, req.keys_only = "1", true
  local j, err = attempt(c, "/v3/kv/range", cjson.encode(req), i)
  if j then return true end
  return false, "does not answer: " .. tostring(err)
end

-- One stream on endpoint index i, until it breaks: returns why.
local function watch_stream(w, i)
  local c = w.client
  local ep = c.endpoints[i]
  local host, port = loop.split_addr(ep)
  local sock, err = loop.connect(host, port, c.timeout)
  if not sock then return connect_error(ep, err) end
  if w.cancelled then sock:close() return "cancelled" end
  w.sock, w.endpoint = sock, ep
  local create = range_req(w.prefix, true)
  if w.revision > 0 then create.start_revision = i64(w.revision) end
  create.progress_notify = true
  local headers = { ["Grpc-Metadata-hasleader"] = "true" }
  if c.token then headers["Authorization"] = c.token end
  sock:send(httpc.request("POST", ep, "/v3/watch", headers,
    cjson.encode({ create_request = create })))
  -- a watch body never ends: no bound on the body, a bound per message
  local r = httpc.new_reader({ max_body = math.huge })
  local stream = M.new_stream()
  local refused = nil         -- body pieces of a non-200 reply
  local started = false       -- the created message arrived
  local deadline = loop.now() + c.timeout
  local function finish(why)
    sock:close()
    return w.cancelled and "cancelled" or ep .. ": " .. why
  end
  while not w.cancelled do
    local ev, v = r:next()
    if ev == "head" then
      if v.status ~= 200 then refused = {} end
    elseif ev == "data" and refused then
      refused[#refused + 1] = v
      if #refused > 64 then return finish("watch refused") end
    elseif ev == "data" then
      local msgs, serr = stream.feed(v)
      if not msgs then return finish(serr) end
      for _, m in ipairs(msgs) do
        local why = on_message(w, m)
        if why then return finish(why) end
        if w.cancelled then break end
        started = true
      end
    elseif ev == "done" then
      if refused then
        local msg = error_text(table.concat(refused))
        -- an expired token (401): authenticate again before the next stream
        if msg:find("invalid auth token", 1, true) then c.token = nil end
        return finish("watch refused: " .. msg)
      end
      return finish("watch stream ended")
    elseif v then
      return finish("bad HTTP: " .. v)
    else
      local left = w.idle
      if not started then
        left = deadline - loop.now()
        if left <= 0 then return finish("timeout") end
      end
      local data, rerr = sock:receive_with(any_bytes, left)
      if data then
        r:feed(data)
      elseif rerr == "timeout" and started then
        -- quiet for w.idle seconds: a quiet prefix, or a member that
        -- stopped answering without closing (stalled, cut off by a
        -- firewall)? Ask it something that needs its quorum.
        local ok, why = probe(w, i)
        if not ok then return finish("silent for " .. w.idle .. " s and " .. why) end
      else
        return finish(tostring(rerr))
      end
    end
  end
  return finish("cancelled")
end

function Watcher:run()
  local c = self.client
  local fails = 0
  while not self.cancelled do
    if c.user ~= "" and not c.token then authenticate(c) end
    local i = c.cur
    local t0 = loop.now()
    local why = watch_stream(self, i)
    self.sock = nil
    if self.cancelled then break end
    self.restarts = self.restarts + 1
    if self.compacted then
      self.compacted = false
      fails = 0    -- not the endpoint's fault: go on from the new revision
    else
      note(c, c.endpoints[i], "watch", "etcd watch: %s", why)
      switch(c, i, why)
      -- a stream that lived a while was a success; streams refused or ended
      -- at once on every endpoint in a row: back off (up to 1 s) between rounds
      fails = loop.now() - t0 >= 1 and 0 or fails + 1
      if fails >= #c.endpoints then
        loop.sleep(math.min(1, 0.1 * 2 ^ (fails - #c.endpoints)))
      end
    end
  end
end

function Client:watch(prefix, start_revision, on_events, opts)
  local w = setmetatable({
    client = self, prefix = prefix, on_events = on_events,
    idle = opts and opts.idle,
    revision = tonumber(start_revision) or 0, header_revision = 0, restarts = 0,
    cancelled = false, sock = nil,
  }, Watcher)
  loop.spawn(function() w:run() end)
  return w
end

function Watcher:cancel()
  self.cancelled = true
  if self.sock then self.sock:close() end
end

-- Drops history below revision (tests and maintenance: etcd keeps every
-- revision until compacted; a watch from before it gets "compacted").
function Client:compact(revision)
  local ok, r = pcall(i64, revision)
  if not ok then return nil, "etcd: revision: " .. r end
  local j, err = self:call("/v3/kv/compaction", { revision = r, physical = true }, true)
  if not j then return nil, err end
  return true
end

function Client:close()
  for _, conn in ipairs(self.idle) do conn.sock:close() end
  self.idle = {}
end

return M
