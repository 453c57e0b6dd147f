-- kvcs.dispatch: finds the handler of a RESP command in a command table
-- (the control ports: kvcs.peers, kvcs.migration).
--
-- A command table maps an upper-case command name to an entry
--   { arity = n, run = function(...) -> reply end, ... }
-- with any other fields the port wants (e.g. registered = true). arity
-- counts the words including the name, as Redis's COMMAND does: n >= 0 is
-- exactly n, n < 0 is at least -n.
--
--   find(commands, cmd) -> entry, NAME   the command exists with that arity
--                       -> nil, NAME     unknown, or a wrong number of words
-- NAME is cmd[1] in upper case ("" when cmd is not an array of strings), for
-- the port's "unknown command" error.
local M = {}

function M.find(commands, cmd)
  local name = type(cmd) == "table" and type(cmd[1]) == "string" and cmd[1]:upper() or ""
  local c = rawget(commands, name)
  if not c then return nil, name end
  local n = cmd.n or #cmd
  if (c.arity >= 0 and n ~= c.arity) or (c.arity < 0 and n < -c.arity) then return nil, name end
  return c, name
end

return M
