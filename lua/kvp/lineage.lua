-- kvp.lineage: may the proxy take a table from its config server? (issue 11)
--
-- Every table carries its lineage (kv.btable: random at init_table, kept by
-- every later version and by slave config servers). A proxy that holds a
-- table of lineage L takes no table of another lineage, and none without
-- one, whatever its version: a config server of another cluster, or a
-- forged one it was pointed at, cannot make it install a table (and then
-- keep it: a proxy never installs a lower version). A proxy that holds no
-- table, or one from a file older than lineages, takes any.
--
--   lineage.check(held, t) -> true | false, why            (pure)
--   lineage.refuse(why [, key [, now]]) -> true when logged: a warning per
--       key (default why; cslink uses the refused lineage) at most every
--       INTERVAL seconds, saying how many were left out; past MAX_KEYS
--       keys every new key shares one (memory and lines stay bounded)
local log = require "kv.log"

local M = {}

M.INTERVAL = 10
M.MAX_KEYS = 64

function M.check(held, t)
  if not held or not held.lineage then return true end
  if t.lineage == held.lineage then return true end
  return false, ("table v%d of %s is of lineage %s, the one held (v%d) of %s: it comes from "
    .. "another cluster's config server (or a forged one); refused, the held table stays")
    :format(t.version, t.namespace, t.lineage or "(none)", held.version, held.lineage)
end

local last, nkeys = {}, 0 -- key -> { at = time logged, skipped = n }

function M.refuse(why, key, now)
  key = key or why
  now = now or os.time()
  local e = last[key]
  if e and now - e.at < M.INTERVAL then
    e.skipped = e.skipped + 1
    return false
  end
  if not e and nkeys >= M.MAX_KEYS then -- every further key shares one
    key = "(more)"
    e = last[key]
    if e and now - e.at < M.INTERVAL then
      e.skipped = e.skipped + 1
      return false
    end
  elseif not e then
    nkeys = nkeys + 1
  end
  local skipped = e and e.skipped or 0
  last[key] = { at = now, skipped = 0 }
  log.warn("%s%s", why, skipped > 0 and (" (%d more since the last line)"):format(skipped) or "")
  return true
end

return M
