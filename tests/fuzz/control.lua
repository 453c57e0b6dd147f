-- Fuzz target "control": the control protocol's decoding at both ends (kvp's
-- cslink and kvcs's peers/migration read RESP with kv.resp's reader, which is
-- hiredis's redisReader bound in c/lua/lhireader.c). The input (after its
-- chunk-size byte) is read whole and cut into chunks; checked: the same
-- values and the same error either way, errors are strings and stick,
-- resp.decode walks the bytes to the same values, and every value read
-- encodes (encode_reply) to bytes that read back to it.
package.path = KV_ROOT .. "/tests/?.lua;" .. package.path
local lib = require "fuzz.lib"
local resp = require "kv.resp"

local function read_all(pieces)
  local r = resp.new_reader()
  local vals = {}
  for piece in pieces do
    r:feed(piece)
    while true do
      local v, err = r:next()
      if v == nil then
        if err ~= nil then
          lib.check(type(err) == "string", "error is a %s", type(err))
          local v2, err2 = r:next()
          lib.check(v2 == nil and err2 == err, "the error does not stick: %s then %s", err, tostring(err2))
          return vals, err
        end
        break
      end
      vals[#vals + 1] = v
    end
  end
  return vals, nil, r:buffered()
end

local function once(s)
  local done = false
  return function()
    if done then return nil end
    done = true
    return s
  end
end

-- integers beyond 2^53 do not survive a Lua number: skip those values
local function exact(v)
  if type(v) == "number" then return v == math.floor(v) and math.abs(v) < 2 ^ 53 end
  if type(v) == "table" and v ~= resp.null and v.status == nil and v.err == nil then
    for i = 1, v.n or 0 do if not exact(v[i]) then return false end end
  end
  return true
end

return function(data)
  local payload, pieces = lib.chunks(data)
  local whole, werr, wleft = read_all(once(payload))
  local cut, cerr, cleft = read_all(pieces)
  lib.check(#whole == #cut, "%d values read whole, %d in chunks", #whole, #cut)
  for i = 1, #whole do
    lib.check(lib.eq(whole[i], cut[i]), "value %d: %s whole, %s in chunks", i,
      lib.show(whole[i]), lib.show(cut[i]))
  end
  lib.check(werr == cerr, "error %s whole, %s in chunks", tostring(werr), tostring(cerr))
  if not werr then
    lib.check(wleft == cleft, "%s bytes left whole, %s in chunks", tostring(wleft), tostring(cleft))
  end

  -- the stateless decode walks the same values
  local pos = 1
  for i = 1, #whole do
    local v, nextpos = resp.decode(payload, pos)
    lib.check(v ~= nil, "decode at %d: nothing (%s), the reader had value %d", pos, tostring(nextpos), i)
    lib.check(lib.eq(v, whole[i]), "decode at %d differs from the reader's value %d", pos, i)
    lib.check(nextpos > pos and nextpos <= #payload + 1, "decode at %d: next position %d", pos, nextpos)
    pos = nextpos
  end

  -- what a server would send back reads as the same value
  for i = 1, #whole do
    local v = whole[i]
    if exact(v) then
      local ok, bytes = pcall(resp.encode_reply, v)
      if ok then
        local back, nextpos = resp.decode(bytes)
        lib.check(back ~= nil and nextpos == #bytes + 1, "encode_reply of value %d does not read back: %s",
          i, tostring(nextpos))
        lib.check(lib.eq(back, v), "value %d: %s encodes and reads back as %s", i, lib.show(v), lib.show(back))
      end
    end
  end
end
