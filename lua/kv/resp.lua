-- kv.resp: RESP2 codec for the control plane (kvp <-> kvcs, tools, slave CS)
-- and for the tools' Redis connections. Not on the data path (that is C).
--
-- Value convention, the same for decode (what arrives) and encode_reply
-- (what a server sends):
--
--   RESP                 Lua value
--   +OK                  { status = "OK" }          (M.status("OK"))
--   -ERR msg             { err = "ERR msg" }        (M.error("ERR msg"))
--   :42                  42 (a number; beyond 2^53 precision is lost)
--   $3 foo               "foo" (a plain string, binary safe)
--   $-1 / *-1            M.null (one unique sentinel; never nil, so arrays
--                        keep their length)
--   *2 ...               { n = 2, v1, v2 }          (array: field n = count)
--
-- So a bulk "OK" (a string) is told from the status OK (a table with
-- .status), and an error (a table with .err) from any string. M.kind(v)
-- names the kind: "status" | "error" | "integer" | "bulk" | "null" | "array".
--
--   encode(...)         -> a command: multibulk of strings/numbers
--   encode_array(t)     -> the same from an array (t.n or #t elements)
--   encode_reply(v)     -> one reply in the convention above; a table with
--                          neither .status nor .err is an array (t.n or #t)
--   decode(buf [, pos]) -> value, next_pos | nil (incomplete) | nil, err
--       Stateless: on an incomplete value the caller keeps buf and calls
--       again with the same pos once more bytes arrived; the partial value
--       is parsed again (fine at control-plane sizes).
--   new_reader()        -> reader: reader:feed(bytes); reader:next() ->
--       value | nil (need more) | nil, err (errors stick). It keeps the
--       partial parse (completed array elements) between calls and does not
--       retry until enough bytes for a pending bulk have arrived, so a long
--       reply arriving in many chunks costs O(total bytes), not O(n^2).
--
-- Limits (fields of M, may be changed): max_bulk (512 MiB), max_array
-- (16 Mi elements), max_depth (64 nested arrays), max_line (64 KiB without
-- CRLF). Bad input gives "protocol error: ..." with the byte offset.

local M = {}

M.max_bulk = 512 * 1024 * 1024
M.max_array = 16 * 1024 * 1024
M.max_depth = 64
M.max_line = 64 * 1024

M.null = setmetatable({}, {
  __tostring = function() return "resp.null" end,
  __newindex = function() error("kv.resp.null is read-only", 2) end,
})

local byte, sub, find, format, concat = string.byte, string.sub, string.find, string.format, table.concat

local CR = 13
local PLUS, MINUS, COLON, DOLLAR, STAR = 43, 45, 58, 36, 42

function M.status(s) return { status = s } end
function M.error(s) return { err = s } end

function M.kind(v)
  local t = type(v)
  if t == "string" then return "bulk" end
  if t == "number" then return "integer" end
  if v == M.null then return "null" end
  if t == "table" then
    if v.status ~= nil then return "status" end
    if v.err ~= nil then return "error" end
    return "array"
  end
  return nil
end

--------------------------------------------------------------------------------
-- Encoding
--------------------------------------------------------------------------------

local function num_text(n)
  if n ~= n or n == math.huge or n == -math.huge then
    error("kv.resp: cannot encode " .. tostring(n), 3)
  end
  if math.floor(n) == n and math.abs(n) < 2 ^ 63 then return format("%d", n) end
  return format("%.17g", n)
end

local function arg_text(a)
  local t = type(a)
  if t == "string" then return a end
  if t == "number" then return num_text(a) end
  error("kv.resp.encode: argument of type " .. t .. " (strings and numbers only)", 3)
end

function M.encode_array(t)
  if type(t) ~= "table" then error("kv.resp.encode_array: table expected", 2) end
  local n = t.n or #t
  local out = { "*", n, "\r\n" }
  for i = 1, n do
    local s = arg_text(t[i])
    out[#out + 1] = "$"
    out[#out + 1] = #s
    out[#out + 1] = "\r\n"
    out[#out + 1] = s
    out[#out + 1] = "\r\n"
  end
  return concat(out)
end

function M.encode(...)
  return M.encode_array({ n = select("#", ...), ... })
end

local function one_line(s, what)
  if type(s) ~= "string" or find(s, "[\r\n]") then
    error("kv.resp.encode_reply: " .. what .. " must be a string without CR/LF", 4)
  end
  return s
end

local function put_reply(v, out, depth)
  if depth > M.max_depth then error("kv.resp.encode_reply: nested too deep", 3) end
  local t = type(v)
  if t == "string" then
    out[#out + 1] = "$" .. #v .. "\r\n"
    out[#out + 1] = v
    out[#out + 1] = "\r\n"
  elseif t == "number" then
    if math.floor(v) ~= v then error("kv.resp.encode_reply: integer expected, got " .. v, 3) end
    out[#out + 1] = ":" .. num_text(v) .. "\r\n"
  elseif v == M.null then
    out[#out + 1] = "$-1\r\n"
  elseif t == "table" then
    if v.status ~= nil then
      out[#out + 1] = "+" .. one_line(v.status, "status") .. "\r\n"
    elseif v.err ~= nil then
      out[#out + 1] = "-" .. one_line(v.err, "error") .. "\r\n"
    else
      local n = v.n or #v
      out[#out + 1] = "*" .. n .. "\r\n"
      for i = 1, n do
        local e = v[i]
        if e == nil then error("kv.resp.encode_reply: nil in array (use resp.null)", 3) end
        put_reply(e, out, depth + 1)
      end
    end
  else
    error("kv.resp.encode_reply: cannot encode a " .. t, 3)
  end
end

function M.encode_reply(v)
  local out = {}
  put_reply(v, out, 0)
  return concat(out)
end

--------------------------------------------------------------------------------
-- Decoding
--------------------------------------------------------------------------------

local function perr(msg, pos)
  return nil, format("protocol error: %s at byte %d", msg, pos - 1)
end

-- Core decoder. stack holds the arrays being filled: { {t = array, i = filled} }.
-- Returns:
--   value, next_pos                       a complete value
--   nil, nil, resume_pos, need_len        incomplete: resume at resume_pos
--                                         (stack keeps the partial arrays);
--                                         nothing to do before #buf >= need_len
--   nil, err                              bad input
local function step(buf, pos, stack)
  local len = #buf
  while true do
    if pos > len then return nil, nil, pos, len + 1 end
    local tb = byte(buf, pos)
    if tb ~= PLUS and tb ~= MINUS and tb ~= COLON and tb ~= DOLLAR and tb ~= STAR then
      local shown = (tb >= 32 and tb < 127) and format("'%c'", tb) or format("0x%02x", tb)
      return perr("unknown type byte " .. shown, pos)
    end
    local nl = find(buf, "\n", pos, true)
    if not nl then
      if len - pos + 1 > M.max_line then return perr("line too long", pos) end
      return nil, nil, pos, len + 1
    end
    if nl - pos < 2 or byte(buf, nl - 1) ~= CR then
      return perr("line not ended by CRLF", nl)
    end
    local line = sub(buf, pos + 1, nl - 2)
    local value, nextp
    if tb == PLUS then
      value, nextp = { status = line }, nl + 1
    elseif tb == MINUS then
      value, nextp = { err = line }, nl + 1
    elseif tb == COLON then
      if not find(line, "^%-?%d+$") then return perr("bad integer '" .. line .. "'", pos) end
      value, nextp = tonumber(line), nl + 1
    else -- DOLLAR or STAR
      if not find(line, "^%-?%d+$") or #line > 12 then
        return perr("bad length '" .. line .. "'", pos)
      end
      local n = tonumber(line)
      if n < -1 then return perr("bad length '" .. line .. "'", pos) end
      if n == -1 then
        value, nextp = M.null, nl + 1
      elseif tb == DOLLAR then
        if n > M.max_bulk then return perr("bulk of " .. n .. " bytes is too long", pos) end
        local stop = nl + n + 2 -- position of the LF after the data
        if len < stop then return nil, nil, pos, stop end
        if byte(buf, stop - 1) ~= CR or byte(buf, stop) ~= 10 then
          return perr("bulk data not followed by CRLF", stop - 1)
        end
        value, nextp = sub(buf, nl + 1, nl + n), stop + 1
      else
        if n > M.max_array then return perr("array of " .. n .. " elements is too long", pos) end
        if n == 0 then
          value, nextp = { n = 0 }, nl + 1
        else
          if #stack >= M.max_depth then return perr("arrays nested too deep", pos) end
          stack[#stack + 1] = { t = { n = n }, i = 0 }
          pos = nl + 1
        end
      end
    end

    if value ~= nil then
      pos = nextp
      -- hand the value to the arrays it completes
      while true do
        local top = stack[#stack]
        if not top then return value, pos end
        top.i = top.i + 1
        top.t[top.i] = value
        if top.i < top.t.n then break end
        stack[#stack] = nil
        value = top.t
      end
    end
  end
end

function M.decode(buf, pos)
  if type(buf) ~= "string" then error("kv.resp.decode: string expected", 2) end
  pos = pos or 1
  local v, x = step(buf, pos, {})
  if v == nil then
    if x then return nil, x end
    return nil
  end
  return v, x
end

local Reader = {}
Reader.__index = Reader

function M.new_reader()
  return setmetatable({
    parts = {}, have = 0,   -- bytes fed and not yet merged into buf
    buf = "", pos = 1,      -- bytes being parsed
    stack = {}, need = 0,   -- partial arrays; total bytes needed to go on
    err = nil,
  }, Reader)
end

function Reader:feed(s)
  if type(s) ~= "string" then error("kv.resp reader:feed: string expected", 2) end
  if #s > 0 then
    self.parts[#self.parts + 1] = s
    self.have = self.have + #s
  end
end

-- Bytes held and not yet returned as values.
function Reader:buffered()
  return #self.buf - self.pos + 1 + self.have
end

function Reader:next()
  if self.err then return nil, self.err end
  local avail = #self.buf - self.pos + 1 + self.have
  if avail < self.need then return nil end
  if self.have > 0 then
    self.buf = sub(self.buf, self.pos) .. concat(self.parts)
    self.pos, self.parts, self.have = 1, {}, 0
  end
  local v, x, resume, need = step(self.buf, self.pos, self.stack)
  if v ~= nil then
    self.pos, self.need = x, 0
    if self.pos > #self.buf then self.buf, self.pos = "", 1 end
    return v
  end
  if x then
    self.err = x
    return nil, x
  end
  self.pos = resume
  self.need = need - resume + 1 -- bytes needed from pos on
  return nil
end

return M
