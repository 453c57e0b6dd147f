-- tests/fuzz/lib.lua: helpers of the Lua fuzz harnesses (fuzz_lua.c loads
-- tests/fuzz/<target>.lua, which requires this as "fuzz.lib").
local M = {}

-- chunks(data): the first byte picks a chunk size 1..16 (TCP-like cuts);
-- returns the rest and an iterator over its pieces.
function M.chunks(data)
  local step = ((data:byte(1) or 0) % 16) + 1
  local payload = data:sub(2)
  local pos = 1
  return payload, function()
    if pos > #payload then return nil end
    local piece = payload:sub(pos, pos + step - 1)
    pos = pos + step
    return piece
  end
end

-- deep equality of decoded values (tables compared field by field)
function M.eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then
    return a ~= a and b ~= b -- NaN
  end
  for k, v in pairs(a) do if not M.eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function M.show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" or depth > 4 then return tostring(v) end
  local out = {}
  for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. M.show(x, depth + 1) end
  table.sort(out)
  return "{" .. table.concat(out, ", ") .. "}"
end

function M.check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 2) end
end

return M
