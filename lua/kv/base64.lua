-- kv.base64: standard base64 (RFC 4648, "+/" alphabet, "=" padding), the
-- encoding etcd's JSON gateway uses for every key and value (bytes fields).
--
--   base64.encode(bytes) -> text
--   base64.decode(text) -> bytes | nil, err   (strict: bad characters, a bad
--       length or bad padding are errors; JSON from a peer is not trusted)
local bit = require "bit"
local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, char, concat = string.byte, string.char, table.concat

local M = {}

local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local enc, dec = {}, {}
for i = 1, 64 do
  local c = ALPHA:sub(i, i)
  enc[i - 1] = c
  dec[byte(c)] = i - 1
end

function M.encode(s)
  local out, n = {}, 0
  local len = #s
  for i = 1, len - 2, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = bor(lshift(a, 16), lshift(b, 8), c)
    n = n + 1
    out[n] = enc[rshift(v, 18)] .. enc[band(rshift(v, 12), 63)]
      .. enc[band(rshift(v, 6), 63)] .. enc[band(v, 63)]
  end
  local rest = len % 3
  if rest == 1 then
    local a = byte(s, len)
    n = n + 1
    out[n] = enc[rshift(a, 2)] .. enc[lshift(band(a, 3), 4)] .. "=="
  elseif rest == 2 then
    local a, b = byte(s, len - 1, len)
    local v = bor(lshift(a, 8), b)
    n = n + 1
    out[n] = enc[rshift(v, 10)] .. enc[band(rshift(v, 4), 63)] .. enc[lshift(band(v, 15), 2)] .. "="
  end
  return concat(out)
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "base64: not a string" end
  local len = #s
  if len % 4 ~= 0 then return nil, "base64: length " .. len .. " is not a multiple of 4" end
  local out, n = {}, 0
  for i = 1, len, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local last = i + 3 == len
    local va, vb = dec[a], dec[b]
    if not va or not vb then return nil, "base64: bad character near offset " .. (i - 1) end
    if last and d == 61 then            -- "="
      if c == 61 then
        if band(vb, 15) ~= 0 then return nil, "base64: bad padding" end
        n = n + 1
        out[n] = char(bor(lshift(va, 2), rshift(vb, 4)))
      else
        local vc = dec[c]
        if not vc or band(vc, 3) ~= 0 then return nil, "base64: bad padding" end
        local v = bor(lshift(va, 10), lshift(vb, 4), rshift(vc, 2))
        n = n + 1
        out[n] = char(rshift(v, 8), band(v, 255))
      end
    else
      local vc, vd = dec[c], dec[d]
      if not vc or not vd then return nil, "base64: bad character near offset " .. (i - 1) end
      local v = bor(lshift(va, 18), lshift(vb, 12), lshift(vc, 6), vd)
      n = n + 1
      out[n] = char(rshift(v, 16), band(rshift(v, 8), 255), band(v, 255))
    end
  end
  return concat(out)
end

return M
