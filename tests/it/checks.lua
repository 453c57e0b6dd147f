-- tests/it/checks.lua: what the Lua driver scripts of tests/it share --
-- one line per check ("ok - ..." / "FAILED - ..."), replies shown compactly
-- ([a,nil,-ERR x,+OK]), and the closing line the shell test greps.
--   local C = dofile(KV_ROOT .. "/tests/it/checks.lua")
local redis = require "kv.redis"

local M = { failed = 0 }

function M.check(what, ok, detail)
  if ok then
    print("ok - " .. what)
  else
    M.failed = M.failed + 1
    print("FAILED - " .. what .. (detail and (": " .. detail) or ""))
  end
end

function M.show(v)
  if v == nil then return "(transport error)" end
  if v == redis.null then return "nil" end
  if type(v) == "table" then
    if v.err then return "-" .. v.err end
    if v.status then return "+" .. v.status end
    local parts = {}
    for i = 1, v.n or #v do parts[i] = M.show(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return tostring(v)
end

-- "all passed", or how many failed: the line 21_/22_ look for.
function M.summary()
  print(M.failed == 0 and "all passed" or (M.failed .. " failed"))
end

return M
