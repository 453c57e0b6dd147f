-- kv.config: config files in Lua syntax, validated against a schema.
--
-- A config file is a Lua chunk of `name = value` lines with `--` comments:
--
--     namespace = "test"        -- one namespace per proxy
--     listen = "0.0.0.0:7400"
--     io_threads = 4
--
-- The chunk runs in an empty environment: no global (os, io, require, ...)
-- is reachable, reading any name is an error that names it, and a key set
-- twice is an error. A runaway chunk (an endless loop) is stopped.
--
--   parse(text, schema, chunkname) -> cfg | nil, err
--   load(path, schema)             -> cfg | nil, err   (reads the file first)
--   update_text(text, changes)     -> new_text | nil, err
--   check(v, spec)                 -> true | nil, what is wrong
--   declare(keys, file [, check])  -> decl (a binary's keys, declared once)
--   to_c(decl, cfg [, only])       -> the argument of the binary's C configure
--
-- Schema: { key = spec, ... }, spec fields:
--   type     "string" | "integer" | "number" | "boolean" | "addr" | "enum"
--   default  value used when the key is absent (not for required keys)
--   required true: the key must be present
--   min, max bounds (numbers: the value; strings: the length)
--   values   list of allowed strings (enum)
--   empty    addr only: "" is also accepted (meaning "none")
--   check    function(v) -> true | nil, err: extra validation, after the type
-- A bad schema is misuse and raises error().
--
-- Declaration: a binary lists its keys once, in file order, each a schema
-- spec plus its name and how it is used at run time:
--   { name = "request_timeout", type = "integer", min = 10, max = 600000,
--     default = 2000, live = true, to_c = "request_timeout" }
--   name     the config key
--   live     true: set_config may change it while the process runs (kv.settings)
--   api      addr keys only, with live: set_config takes it as two fields,
--            { ip = "master_cs_ip", port = "master_cs_port" }, not by name
--   to_c     the name the C side's configure takes it under (to_c below)
-- Every integer has min and max, so a value that fits the declaration fits
-- a C int. declare(keys, file) -> decl = { keys = the list, schema = name ->
-- spec, file = name for messages, e.g. "kvp.conf" }, with decl:parse(text
-- [, chunkname]) and decl:load(path) as parse and load. check, when given,
-- is a rule between keys: check(cfg, chunkname) -> true | nil, err, run on
-- every config that passed the keys' own checks (so set_config, which
-- parses the new text, obeys it too).
--
-- Errors name the key, the file (chunkname) and line, and what is expected,
-- e.g. "unknown config key 'lissten' in kvp.conf:2 (did you mean 'listen'?)".

local names = require "kv.names"

local M = {}

local INSTRUCTION_LIMIT = 10000000 -- per config chunk; real configs use ~100

local TYPES = {
  string = true, integer = true, number = true, boolean = true, addr = true, enum = true,
}

local function is_int(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
    and math.floor(v) == v
end

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then
    if is_int(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return tostring(v)
  end
  if type(v) == "boolean" then return tostring(v) end
  return "a " .. type(v)
end

-- " from 1 to 64", " of at least 0", ""; strings: " of 1 to 8 characters"
local function range_text(spec, unit)
  local lo, hi = spec.min and show(spec.min), spec.max and show(spec.max)
  if unit then
    if lo and hi then return " of " .. lo .. " to " .. hi .. unit end
    if lo then return " of at least " .. lo .. unit end
    if hi then return " of at most " .. hi .. unit end
  else
    if lo and hi then return " from " .. lo .. " to " .. hi end
    if lo then return " of at least " .. lo end
    if hi then return " of at most " .. hi end
  end
  return ""
end

local function expected(spec)
  local t = spec.type
  if t == "string" then
    return "a string in quotes" .. range_text(spec, " characters")
  elseif t == "integer" then
    return "an integer" .. range_text(spec)
  elseif t == "number" then
    return "a number" .. range_text(spec)
  elseif t == "boolean" then
    return "true or false"
  elseif t == "addr" then
    return 'an address "ip:port" (port 1..65535)' .. (spec.empty and ' or ""' or "")
  else -- enum
    local v = {}
    for i, s in ipairs(spec.values) do v[i] = show(s) end
    return "one of " .. table.concat(v, ", ")
  end
end

local function in_range(v, spec)
  if spec.min and v < spec.min then return false end
  if spec.max and v > spec.max then return false end
  return true
end

-- true | nil, what is wrong
local function check_value(v, spec)
  local t = spec.type
  local ok, why
  if t == "string" then
    ok = type(v) == "string" and in_range(#v, spec)
  elseif t == "integer" then
    ok = is_int(v) and in_range(v, spec)
  elseif t == "number" then
    ok = is_finite(v) and in_range(v, spec)
  elseif t == "boolean" then
    ok = type(v) == "boolean"
  elseif t == "addr" then
    ok = type(v) == "string" and spec.empty and v == ""
    if not ok and type(v) == "string" then
      local host, err = names.valid_endpoint(v)
      ok = host ~= nil
      if not ok then why = err:gsub("^address %b\"\"[: ]*", "") end
    end
  else
    ok = false
    for _, s in ipairs(spec.values) do
      if v == s then ok = true break end
    end
  end
  if not ok then
    return nil, "expected " .. expected(spec) .. ", got " .. show(v)
      .. (why and (" (" .. why .. ")") or "")
  end
  if spec.check then
    local good, err = spec.check(v)
    if not good then return nil, err or ("bad value " .. show(v)) end
  end
  return true
end

local function check_schema(schema)
  if type(schema) ~= "table" then error("kv.config: schema must be a table", 3) end
  for k, spec in pairs(schema) do
    if type(k) ~= "string" or type(spec) ~= "table" or not TYPES[spec.type] then
      error("kv.config: bad schema entry for " .. tostring(k), 3)
    end
    if spec.type == "enum" and type(spec.values) ~= "table" then
      error("kv.config: enum " .. k .. " needs values", 3)
    end
    if not spec.required then
      if spec.default == nil then
        error("kv.config: key " .. k .. " needs a default or required = true", 3)
      end
      local ok, err = check_value(spec.default, spec)
      if not ok then error("kv.config: default of " .. k .. ": " .. err, 3) end
    end
  end
end

M.check = check_value

local INT_MIN, INT_MAX = -2147483648, 2147483647

local Decl = {}
Decl.__index = Decl

local function whole(decl, cfg, err, chunkname)
  if not cfg or not decl.check then return cfg, err end
  local ok, why = decl.check(cfg, chunkname)
  if not ok then return nil, why end
  return cfg
end

function Decl:parse(text, chunkname)
  chunkname = chunkname or self.file
  local cfg, err = M.parse(text, self.schema, chunkname)
  return whole(self, cfg, err, chunkname)
end
function Decl:load(path)
  local cfg, err = M.load(path, self.schema)
  return whole(self, cfg, err, path)
end

-- Checks a declaration; a bad one is misuse and raises error().
function M.declare(keys, file, check)
  if type(keys) ~= "table" or type(file) ~= "string" or (check ~= nil and type(check) ~= "function") then
    error("kv.config.declare(keys, file [, check]): bad arguments", 2)
  end
  local decl = setmetatable({ keys = keys, schema = {}, file = file, check = check }, Decl)
  local c_names, api_names = {}, {}
  local function bad(i, why) error(("kv.config.declare: key %d (%s): %s"):format(i, tostring(keys[i].name), why), 3) end
  for i, spec in ipairs(keys) do
    local name = spec.name
    if type(name) ~= "string" or not name:find("^[%a_][%w_]*$") then bad(i, "name must be an identifier") end
    if decl.schema[name] then bad(i, "declared twice") end
    if spec.type == "integer" and not (is_int(spec.min) and is_int(spec.max)
        and spec.min >= INT_MIN and spec.max <= INT_MAX) then
      bad(i, "an integer needs min and max within a C int")
    end
    if spec.live ~= nil and type(spec.live) ~= "boolean" then bad(i, "live must be true or false") end
    if spec.to_c ~= nil then
      if type(spec.to_c) ~= "string" or c_names[spec.to_c] then bad(i, "to_c must be a name no other key uses") end
      c_names[spec.to_c] = true
    end
    local api = spec.api and { spec.api.ip, spec.api.port } or { name }
    if spec.api and not (spec.live and spec.type == "addr" and type(api[1]) == "string"
        and type(api[2]) == "string") then
      bad(i, "api = {ip =, port =} is for live addr keys")
    end
    if spec.live then
      for _, a in ipairs(api) do
        if api_names[a] then bad(i, "set_config name " .. a .. " used twice") end
        api_names[a] = true
      end
    end
    decl.schema[name] = spec
  end
  check_schema(decl.schema)
  return decl
end

-- The table the binary's C configure takes: { [to_c] = cfg[name] } for every
-- key declared with to_c, or only those whose name is a key of only (e.g.
-- the changes set_config made).
function M.to_c(decl, cfg, only)
  local out = {}
  for _, spec in ipairs(decl.keys) do
    if spec.to_c and (only == nil or only[spec.name] ~= nil) then out[spec.to_c] = cfg[spec.name] end
  end
  return out
end

-- Levenshtein distance, for "did you mean" hints on short key names.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggestion(key, schema)
  local best, bestd
  for k in pairs(schema) do
    local d = distance(key, k)
    if d <= 2 and (not bestd or d < bestd or (d == bestd and k < best)) then
      best, bestd = k, d
    end
  end
  return best and (" (did you mean '" .. best .. "'?)") or ""
end

-- Runs chunk with an instruction budget; returns pcall's results.
local function run_limited(chunk)
  if jit then jit.off(chunk, true) end -- hooks do not fire inside JIT traces
  local count = 0
  local old_hook, old_mask, old_count = debug.gethook()
  debug.sethook(function()
    count = count + 1
    if count * 1000 > INSTRUCTION_LIMIT then
      error("config runs too long (an endless loop?)", 2)
    end
  end, "", 1000)
  local ok, err = pcall(chunk)
  if old_hook then debug.sethook(old_hook, old_mask, old_count) else debug.sethook() end
  return ok, err
end

-- Parses and validates one config text. chunkname names it in messages
-- (usually the file path).
function M.parse(text, schema, chunkname)
  check_schema(schema)
  if type(text) ~= "string" then error("kv.config.parse: text must be a string", 2) end
  chunkname = chunkname or "config"
  if text:byte(1) == 27 then
    return nil, chunkname .. ": precompiled Lua is not accepted as a config file"
  end
  local chunk, err = loadstring(text, "@" .. chunkname)
  if not chunk then
    return nil, "syntax error in " .. err .. " (config lines are: name = value)"
  end

  local values, lines, order = {}, {}, {}
  local env = setmetatable({}, {
    __index = function(_, k)
      error("unknown name '" .. tostring(k)
        .. "' (values must be literals; put strings in quotes)", 2)
    end,
    __newindex = function(_, k, v)
      local line = debug.getinfo(2, "l").currentline
      if lines[k] then
        error(string.format("config key '%s' is set twice (lines %d and %d)",
          tostring(k), lines[k], line), 2)
      end
      lines[k] = line
      values[k] = v
      order[#order + 1] = k
    end,
  })
  setfenv(chunk, env)
  local ok, rerr = run_limited(chunk)
  if not ok then
    return nil, "error in config " .. tostring(rerr)
  end

  local cfg = {}
  for _, k in ipairs(order) do
    local where = chunkname .. ":" .. lines[k]
    local spec = schema[k]
    local v = values[k]
    if not spec then
      return nil, "unknown config key '" .. tostring(k) .. "' in " .. where
        .. suggestion(tostring(k), schema)
    end
    if v ~= nil then -- "key = nil" means "use the default"
      local good, why = check_value(v, spec)
      if not good then
        return nil, "invalid value for config key '" .. k .. "' in " .. where .. ": " .. why
      end
      cfg[k] = v
    end
  end

  local keys = {}
  for k in pairs(schema) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if cfg[k] == nil then
      if schema[k].required then
        return nil, "missing required config key '" .. k .. "' in " .. chunkname
          .. " (expected " .. expected(schema[k]) .. ")"
      end
      cfg[k] = schema[k].default
    end
  end
  return cfg
end

-- Reads path and parses it; every error names the path.
function M.load(path, schema)
  if type(path) ~= "string" then error("kv.config.load: path must be a string", 2) end
  local f, err = io.open(path, "rb")
  if not f then
    return nil, "cannot read config file: " .. tostring(err)
  end
  local text, rerr = f:read("*a")
  f:close()
  if not text then
    return nil, "cannot read config file " .. path .. ": " .. tostring(rerr)
  end
  return M.parse(text, schema, path)
end

--------------------------------------------------------------------------------
-- update_text: rewrite values in place
--------------------------------------------------------------------------------

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil
  not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }

-- A Lua literal on one line. Strings are quoted like %q, except that control
-- characters are written as escapes (%q would put a raw newline in the file).
local function literal(v)
  local t = type(v)
  if t == "string" then
    local s = v:gsub('[%c"\\]', function(c)
      return ESCAPES[c] or string.format("\\%03d", c:byte())
    end)
    return '"' .. s .. '"'
  elseif t == "number" then
    if not is_finite(v) then error("kv.config.update_text: cannot write " .. tostring(v), 3) end
    if is_int(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    -- shortest form that reads back as the same number
    for digits = 14, 16 do
      local s = string.format("%." .. digits .. "g", v)
      if tonumber(s) == v then return s end
    end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  error("kv.config.update_text: cannot write a " .. t .. " value", 3)
end
M.literal = literal

local OPS3 = { ["..."] = true }
local OPS2 = { ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true, [".."] = true, ["::"] = true }
local OPEN = { ["{"] = true, ["("] = true, ["["] = true }
local CLOSE = { ["}"] = true, [")"] = true, ["]"] = true }

local function count_nl(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- Tokens of a Lua chunk: {kind, text, s, e, line, eline}; comments are dropped.
local function lex(text)
  local toks = {}
  local i, n, line = 1, #text, 1
  local function add(kind, s, e)
    local t = text:sub(s, e)
    local el = line + count_nl(t)
    if kind ~= "comment" then
      toks[#toks + 1] = { kind = kind, text = t, s = s, e = e, line = line, eline = el }
    end
    line = el
    i = e + 1
  end
  local function long_bracket(at) -- at: position of the first "["
    local lvl = text:match("^%[(=*)%[", at)
    if not lvl then return nil end
    local _, close = text:find("]" .. lvl .. "]", at + #lvl + 2, true)
    return close or false
  end
  while i <= n do
    local c = text:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:find("%s") then
      i = i + 1
    elseif text:find("^%-%-", i) then
      local close = long_bracket(i + 2)
      if close == false then return nil, "unfinished long comment at line " .. line end
      if not close then close = (text:find("\n", i, true) or n + 1) - 1 end
      add("comment", i, close)
    elseif c == '"' or c == "'" then
      local j = i + 1
      while true do
        local ch = text:sub(j, j)
        if ch == "" or ch == "\n" then return nil, "unfinished string at line " .. line end
        if ch == "\\" then j = j + 2
        elseif ch == c then break
        else j = j + 1 end
      end
      add("string", i, j)
    elseif c == "[" and text:find("^%[=*%[", i) then
      local close = long_bracket(i)
      if not close then return nil, "unfinished long string at line " .. line end
      add("string", i, close)
    elseif c:find("[%a_]") then
      local _, e = text:find("^[%w_]*", i + 1)
      add("name", i, e)
    elseif c:find("%d") or (c == "." and text:find("^%.%d", i)) then
      local _, e = text:find("^[%w_.]*", i)
      if text:find("^[eEpP][%+%-]", e) then _, e = text:find("^[%w_.]*", e + 2) end
      add("number", i, e)
    elseif OPS3[text:sub(i, i + 2)] then
      add("op", i, i + 2)
    elseif OPS2[text:sub(i, i + 1)] then
      add("op", i, i + 1)
    else
      add("op", i, i)
    end
  end
  return toks
end

-- Finds the top-level "name = value" statements that start a line:
-- list of {name, s, e, line, ok}; ok is false when the value cannot be
-- replaced safely (spans lines, shares its line with another statement).
local function assignments(toks)
  local out, depth, k = {}, 0, 1
  while k <= #toks do
    local t, nxt = toks[k], toks[k + 1]
    local starts_line = k == 1 or toks[k - 1].eline < t.line
    if depth == 0 and starts_line and t.kind == "name" and nxt
        and nxt.text == "=" and nxt.line == t.line then
      local j, d, vs, ve, last = k + 2, 0, nil, nil, nil
      while toks[j] and toks[j].line == t.line do
        local v = toks[j]
        if v.text == ";" and d == 0 then break end
        if OPEN[v.text] then d = d + 1 elseif CLOSE[v.text] then d = d - 1 end
        vs, ve, last = vs or v.s, v.e, v
        j = j + 1
      end
      local ok = vs ~= nil and d == 0 and last.eline == t.line
      if toks[j] and toks[j].text == ";" and toks[j].line == t.line then
        if toks[j + 1] and toks[j + 1].line == t.line then ok = false end
        j = j + 1
      end
      out[#out + 1] = { name = t.text, s = vs, e = ve, line = t.line, ok = ok }
      if d > 0 then depth = d end
      k = j
    else
      if OPEN[t.text] then depth = depth + 1
      elseif CLOSE[t.text] and depth > 0 then depth = depth - 1 end
      k = k + 1
    end
  end
  return out
end

-- Returns text with the value of each `name = value` line whose name is in
-- changes replaced by the new value (indentation, spacing and trailing
-- comment kept), and `name = value` lines appended (sorted by name) for
-- changed keys the text does not set. Every other line is left as it was.
-- nil, err when a changed key's value cannot be rewritten in place (it spans
-- several lines, or shares its line with another statement).
function M.update_text(text, changes)
  if type(text) ~= "string" or type(changes) ~= "table" then
    error("kv.config.update_text(text, changes): bad arguments", 2)
  end
  local lits, missing = {}, {}
  for k, v in pairs(changes) do
    if type(k) ~= "string" or not k:find("^[%a_][%w_]*$") or KEYWORDS[k] then
      error("kv.config.update_text: bad key name " .. tostring(k), 2)
    end
    lits[k] = literal(v)
    missing[k] = true
  end

  local toks, lerr = lex(text)
  if not toks then return nil, "cannot update config: " .. lerr end

  local parts, pos = {}, 1
  for _, a in ipairs(assignments(toks)) do
    if lits[a.name] then
      if not a.ok then
        return nil, "cannot update config key '" .. a.name .. "' on line " .. a.line
          .. ": its value spans several lines or shares its line with another statement; edit the file by hand"
      end
      parts[#parts + 1] = text:sub(pos, a.s - 1)
      parts[#parts + 1] = lits[a.name]
      pos = a.e + 1
      missing[a.name] = nil
    end
  end
  parts[#parts + 1] = text:sub(pos)

  local add = {}
  for k in pairs(missing) do add[#add + 1] = k end
  if #add > 0 then
    table.sort(add)
    local nl = text:find("\r\n", 1, true) and "\r\n" or "\n"
    if #text > 0 and text:sub(-1) ~= "\n" then parts[#parts + 1] = nl end
    for _, k in ipairs(add) do
      parts[#parts + 1] = k .. " = " .. lits[k] .. nl
    end
  end
  return table.concat(parts)
end

return M
