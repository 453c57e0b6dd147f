-- tools.resp3: a small RESP3 reader for test_all's resp3 group. The control
-- plane's kv.resp is hiredis's reader, and Debian's hiredis (0.14) reads
-- RESP2 only; the proxy's own RESP3 framing is C (kv_reply_scan). Plain
-- function over a string, for kv.loop's Sock:receive_with:
--
--   decode(buf, pos) -> value, next_pos | nil (incomplete) | nil, err
--
-- Values: +s {status=s}, -s / !s {err=s}, :n n, _ and $-1 M.null, #t/#f
-- {bool=true/false}, ,d {double="d"}, (n {big="n"}, $ a string, =fmt:text
-- {verbatim=text, format=fmt}, * ~ > arrays {n=, kind="*"|"~"|">", ...},
-- % a map {n=pairs, kind="%", map = {key -> value}, and the pairs flat}.
local M = {}

M.null = setmetatable({}, { __tostring = function() return "resp3.null" end })

local sub, find = string.sub, string.find
local MAX_DEPTH = 16

local function line(buf, pos)
  local e = find(buf, "\r\n", pos, true)
  if not e then return nil end
  return sub(buf, pos, e - 1), e + 2
end

local decode

local function aggregate(buf, pos, kind, n, depth)
  if depth > MAX_DEPTH then return nil, "too deep" end
  local count = kind == "%" and 2 * n or n
  local out = { n = kind == "%" and n or count, kind = kind }
  if kind == "%" then out.map = {} end
  for i = 1, count do
    local v, nxt = decode(buf, pos, depth + 1)
    if v == nil then return nil, nxt end
    out[i] = v
    pos = nxt
  end
  if kind == "%" then
    for i = 1, count, 2 do
      local k = out[i]
      out.map[type(k) == "table" and (k.status or k.verbatim) or k] = out[i + 1]
    end
  end
  return out, pos
end

function decode(buf, pos, depth)
  depth = depth or 0
  local t = sub(buf, pos, pos)
  if t == "" then return nil end
  local l, nxt = line(buf, pos + 1)
  if not l then return nil end
  if t == "+" then return { status = l }, nxt end
  if t == "-" then return { err = l }, nxt end
  if t == ":" then return tonumber(l), nxt end
  if t == "_" then return M.null, nxt end
  if t == "#" then return { bool = l == "t" }, nxt end
  if t == "," then return { double = l }, nxt end
  if t == "(" then return { big = l }, nxt end
  local n = tonumber(l)
  if n == nil then return nil, "protocol error: bad length " .. l end
  if t == "$" or t == "=" or t == "!" then
    if n < 0 then return M.null, nxt end
    if #buf < nxt + n + 1 then return nil end
    local s = sub(buf, nxt, nxt + n - 1)
    if t == "=" then return { verbatim = sub(s, 5), format = sub(s, 1, 3) }, nxt + n + 2 end
    if t == "!" then return { err = s }, nxt + n + 2 end
    return s, nxt + n + 2
  end
  if t == "*" or t == "~" or t == ">" or t == "%" then
    if n < 0 then return M.null, nxt end
    return aggregate(buf, nxt, t, n, depth)
  end
  return nil, "protocol error: type " .. t
end

M.decode = function(buf, pos) return decode(buf, pos, 0) end

-- A command as a multibulk.
function M.command(...)
  local parts = { "*" .. select("#", ...) .. "\r\n" }
  for i = 1, select("#", ...) do
    local a = tostring((select(i, ...)))
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(parts)
end

-- A value as text, for test_all's lines.
function M.show(v)
  if v == M.null then return "null" end
  if type(v) ~= "table" then return type(v) == "string" and string.format("%q", v) or tostring(v) end
  if v.status then return v.status end
  if v.err then return "(error) " .. v.err end
  if v.bool ~= nil then return "(bool) " .. tostring(v.bool) end
  if v.double then return "(double) " .. v.double end
  if v.big then return "(big) " .. v.big end
  if v.verbatim then return "(verbatim " .. v.format .. ") " .. string.format("%q", (v.verbatim:match("^[^\r\n]*"))) end
  local parts = {}
  for i = 1, (v.kind == "%" and 2 * v.n or v.n) do parts[i] = M.show(v[i]) end
  local open = ({ ["*"] = "[", ["~"] = "set[", [">"] = "push[", ["%"] = "map[" })[v.kind] or "["
  return open .. table.concat(parts, ", ") .. "]"
end

return M
