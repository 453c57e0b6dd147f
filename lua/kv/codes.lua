-- kv.codes: the result codes of the HTTP admin APIs (kvcs and kvp), and the
-- one wrapper that turns a handler's result into the HTTP status and JSON.
--
-- Every reply body is a JSON object {"code": n, "msg": "...", ...}. 1001 is
-- success (HTTP 200); every other code has a 4xx/5xx status. The list below
-- is the only place codes are defined; README lists it.
--
--   M.list            array of {code=, name=, status=, msg=} in code order
--   M.by_code[n]      the entry for code n;   M[name] = code (M.OK == 1001)
--   M.reply(code, msg, data) -> http_status, json_text
--       body = {code = code, msg = msg or the default message} plus every
--       field of data (a table; its keys must not be code or msg).
--   M.handle(handler, req, logger) -> http_status, json_text
--       Decodes req.body as JSON (empty -> {}, invalid or not an object ->
--       1002), calls handler(body, req) under xpcall; the handler returns
--       code, msg, data (as reply). A Lua error or a bad return is 1019,
--       with the traceback passed to logger(text) when a logger is given.
--   M.encode_json(v)  -> compact JSON text (object keys sorted, so replies
--       are deterministic; a table with metatable {__jsontype = "array"},
--       e.g. kv.btable.array_mt, is an array even when empty; cjson.null is
--       null). json_text from reply/handle ends with "\n".

local cjson = require "cjson"

local M = {}

M.list = {
  { code = 1001, name = "OK",                 status = 200, msg = "OK" },
  { code = 1002, name = "BAD_JSON",           status = 400, msg = "invalid JSON body" },
  { code = 1003, name = "BAD_PARAM",          status = 400, msg = "invalid or missing parameter" },
  { code = 1004, name = "NO_NAMESPACE",       status = 404, msg = "no such namespace" },
  { code = 1005, name = "NAMESPACE_EXISTS",   status = 409, msg = "namespace already exists" },
  { code = 1006, name = "BAD_ADDR",           status = 400, msg = "invalid server address" },
  { code = 1007, name = "ADDR_IN_USE",        status = 409, msg = "address already in use by a table" },
  { code = 1008, name = "NOT_MASTER",         status = 403, msg = "not the master config server" },
  { code = 1009, name = "WRONG_CLUSTER_TYPE", status = 409, msg = "wrong cluster type for this request" },
  { code = 1010, name = "SAVE_FAILED",        status = 500, msg = "could not save the table" },
  { code = 1011, name = "UNAUTHORIZED",       status = 401, msg = "unauthorized: admin token required" },
  { code = 1012, name = "NO_PATH",            status = 404, msg = "no such path" },
  { code = 1013, name = "BAD_BUCKET_COUNT",   status = 400, msg = "invalid bucket_count" },
  { code = 1014, name = "BAD_NAMESPACE",      status = 400, msg = "invalid namespace name" },
  { code = 1015, name = "ADDR_NOT_IN_TABLE",  status = 404, msg = "address not in the table" },
  { code = 1016, name = "UNKNOWN_CONFIG_KEY", status = 400, msg = "unknown config key" },
  { code = 1017, name = "BAD_CONFIG_VALUE",   status = 400, msg = "invalid config value" },
  { code = 1018, name = "TABLE_CHANGE_FAILED", status = 409, msg = "table change not possible" },
  { code = 1019, name = "INTERNAL",           status = 500, msg = "internal error" },
  { code = 1020, name = "NO_PROXY",           status = 404, msg = "no such proxy" },
  { code = 1021, name = "CS_UNREACHABLE",     status = 503, msg = "config server unreachable" },
  { code = 1022, name = "NO_PATTERN",         status = 404, msg = "no such pattern" },
  { code = 1023, name = "PATTERN_EXISTS",     status = 409, msg = "pattern already exists" },
  { code = 1024, name = "NOT_REDIS",          status = 400, msg = "the address does not answer as Redis" },
  { code = 1025, name = "REDIS_AUTH",         status = 409, msg = "the Redis refuses the configured redis_password" },
  { code = 1026, name = "BAD_TARGET",         status = 409, msg = "the Redis cannot take this role (a replica of another master, or holds data)" },
  { code = 1027, name = "BAD_POLICY",         status = 400, msg = "the routing policy does not compile" },
  { code = 1028, name = "ROUTE_FAILED",       status = 409, msg = "the policy's route function failed for this key" },
  { code = 1029, name = "NOT_LEADER",         status = 421, msg = "not the leader config server" },
}

M.by_code = {}
for _, e in ipairs(M.list) do
  M.by_code[e.code] = e
  M[e.name] = e.code
end

--------------------------------------------------------------------------------
-- JSON encoder
--------------------------------------------------------------------------------

local JESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f",
}

local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return JESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function jnum(n)
  if n ~= n or n == math.huge or n == -math.huge then
    error("kv.codes.encode_json: cannot encode " .. tostring(n), 0)
  end
  if math.floor(n) == n and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  -- shortest form that reads back as the same number
  for digits = 14, 16 do
    local s = string.format("%." .. digits .. "g", n)
    if tonumber(s) == n then return s end
  end
  return string.format("%.17g", n)
end

local MAX_DEPTH = 64

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype == "array" then return true end
  if mt and mt.__jsontype == "object" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return false end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function encode(v, out, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = jstr(v)
  elseif tv == "number" then
    out[#out + 1] = jnum(v)
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if depth > MAX_DEPTH then error("kv.codes.encode_json: nested too deep (a cycle?)", 0) end
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        local tk = type(k)
        if tk ~= "string" and tk ~= "number" then
          error("kv.codes.encode_json: object key of type " .. tk, 0)
        end
        keys[#keys + 1] = tostring(k)
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        out[#out + 1] = jstr(k)
        out[#out + 1] = ":"
        encode(val, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("kv.codes.encode_json: cannot encode a " .. tv, 0)
  end
end

function M.encode_json(v)
  local out = {}
  encode(v, out, 0)
  return table.concat(out)
end

--------------------------------------------------------------------------------
-- Replies
--------------------------------------------------------------------------------

function M.reply(code, msg, data)
  local e = M.by_code[code]
  if not e then error("kv.codes.reply: unknown code " .. tostring(code), 2) end
  if msg ~= nil and type(msg) ~= "string" then error("kv.codes.reply: msg must be a string", 2) end
  local body = { code = code, msg = msg or e.msg }
  if data ~= nil then
    if type(data) ~= "table" then error("kv.codes.reply: data must be a table", 2) end
    for k, v in pairs(data) do
      if k == "code" or k == "msg" then
        error("kv.codes.reply: data may not set " .. k, 2)
      end
      body[k] = v
    end
  end
  local ok, text = pcall(M.encode_json, body)
  if not ok then error("kv.codes.reply: " .. text, 2) end
  return e.status, text .. "\n"
end

local function decode_body(body)
  if body == nil or not body:find("%S") then return {} end
  local ok, v = pcall(cjson.decode, body)
  if not ok then return nil, "invalid JSON body: " .. tostring(v) end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, "request body must be a JSON object"
  end
  return v
end

function M.handle(handler, req, logger)
  local body, err = decode_body(req and req.body)
  if not body then return M.reply(M.BAD_JSON, err) end
  local results
  local ok, trace = xpcall(function()
    results = { handler(body, req) }
  end, debug.traceback)
  local function internal(text)
    if logger then pcall(logger, text) end
    return M.reply(M.INTERNAL)
  end
  if not ok then
    return internal("HTTP handler for " .. tostring(req and req.path) .. " failed: " .. tostring(trace))
  end
  local code, msg, data = results[1], results[2], results[3]
  if not M.by_code[code] or (msg ~= nil and type(msg) ~= "string")
      or (data ~= nil and type(data) ~= "table") then
    return internal("HTTP handler for " .. tostring(req and req.path)
      .. " returned a bad result (code " .. tostring(code) .. ")")
  end
  local rok, status, text = pcall(M.reply, code, msg, data)
  if not rok then
    return internal("HTTP handler for " .. tostring(req and req.path)
      .. ": cannot encode its reply: " .. tostring(status))
  end
  return status, text
end

return M
