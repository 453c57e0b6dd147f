-- kv.script: entry of the kvlua binary. Runs arg[1] as a chunk with the
-- remaining arguments in arg (arg[0] = the script); its return value, if a
-- number, is the exit status.
local M = {}

function M.main(arg)
  local path = arg[1]
  if not path then
    io.stderr:write("usage: kvlua script.lua [args...]\n")
    return 2
  end
  local chunk, err = loadfile(path)
  if not chunk then
    io.stderr:write("kvlua: ", err, "\n")
    return 2
  end
  local sargs = { [0] = path }
  for i = 2, #arg do sargs[i - 1] = arg[i] end
  _G.arg = sargs
  local ok, rc = xpcall(function() return chunk(unpack(sargs)) end, debug.traceback)
  if not ok then
    io.stderr:write("kvlua: ", tostring(rc), "\n")
    return 1
  end
  return type(rc) == "number" and rc or 0
end

return M
