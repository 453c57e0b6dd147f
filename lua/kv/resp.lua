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
--   new_reader()        -> reader: reader:feed(bytes); reader:next() ->
--       value | nil (need more) | nil, err (errors stick); reader:buffered()
--       -> bytes fed and not yet consumed. This is hiredis's reader
--       (redisReader, bound in c/lua/lhireader.c as kv.hireader): it keeps
--       the partial reply (completed array elements) between calls, so a
--       long reply arriving in many chunks costs O(total bytes).
--   decode(buf [, pos]) -> value, next_pos | nil (incomplete) | nil, err
--       Stateless, over a new reader: on an incomplete value the caller
--       keeps buf and calls again with the same pos once more bytes arrived.
--
-- Limits (fields of M, may be changed; read by new_reader): max_bulk
-- (512 MiB), max_array (16 Mi elements), max_line (64 KiB without CRLF);
-- max_depth (8 nested arrays) is hiredis's and fixed. Bad input gives
-- "protocol error: ...".

local M = {}

M.max_bulk = 512 * 1024 * 1024
M.max_array = 16 * 1024 * 1024
M.max_depth = 8 -- hiredis reads no deeper; encode_reply keeps to it too
M.max_line = 64 * 1024

M.null = setmetatable({}, {
  __tostring = function() return "resp.null" end,
  __newindex = function() error("kv.resp.null is read-only", 2) end,
})

local sub, find, format, concat = string.sub, string.find, string.format, table.concat

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
      if depth >= M.max_depth then error("kv.resp.encode_reply: arrays nested too deep", 3) end
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
-- Decoding: hiredis's reader (kv.hireader, C), loaded on first use so that
-- code that only encodes needs no C module
--------------------------------------------------------------------------------

local hireader

local function reader_module()
  if not hireader then
    hireader = require "kv.hireader"
    hireader.set_null(M.null)
  end
  return hireader
end
M.reader_module = reader_module

function M.new_reader()
  return reader_module().new({ max_bulk = M.max_bulk, max_array = M.max_array, max_line = M.max_line })
end

function M.decode(buf, pos)
  if type(buf) ~= "string" then error("kv.resp.decode: string expected", 2) end
  pos = pos or 1
  local r = M.new_reader()
  r:feed(pos == 1 and buf or sub(buf, pos))
  local v, err = r:next()
  if v == nil then return nil, err end
  return v, #buf + 1 - r:buffered()
end

return M
