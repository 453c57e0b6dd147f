-- json.lua EXPR: reads one JSON document on stdin, evaluates the Lua
-- expression EXPR with the document bound to `j`, prints the result (tables
-- as compact JSON with sorted keys). Used by the scenario scripts so that
-- they check JSON fields without a new dependency (luajit and lua-cjson are
-- already needed).   curl ... | luajit scripts/lib/json.lua 'j.code'
local root = arg[0]:match("^(.*)/scripts/lib/json.lua$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
local cjson = require "cjson"
local codes = require "kv.codes"
local text = io.read("*a")
local ok, j = pcall(cjson.decode, text)
if not ok then
  io.stderr:write("not JSON: ", text:sub(1, 200), "\n")
  os.exit(2)
end
local f = assert(loadstring("return " .. arg[1]))
setfenv(f, setmetatable({ j = j, null = cjson.null }, { __index = _G }))
local v = f()
if type(v) == "table" then
  print(codes.encode_json(v))
else
  print(tostring(v))
end
