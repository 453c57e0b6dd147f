-- kvlua tests/it/dupkeys.lua PASSWORD PORT PORT...
-- Counts the keys held by more than one of the given Redis masters: every
-- key of each master (SCAN) is looked up (EXISTS, pipelined) on the masters
-- after it in the list. Prints "<keys> keys, <dups> on two masters" and, for
-- the first few duplicates, the key and its masters. Exit status 0 when no
-- key is on two masters.
local loop = require "kv.loop"
local redis = require "kv.redis"

local pw = arg[1]
local ports = {}
for i = 2, #arg do ports[#ports + 1] = tonumber(arg[i]) end

local rc = 1
loop.run(function()
  local conns = {}
  for i, p in ipairs(ports) do
    conns[i] = assert(redis.connect("127.0.0.1", p, { password = pw, timeout = 30 }))
  end
  local total, dups, shown = 0, 0, 0
  for i = 1, #ports do
    local cursor = "0"
    repeat
      local r = assert(conns[i]:call("SCAN", cursor, "COUNT", 1000))
      assert(not r.err, r.err)
      cursor = r[1]
      local keys = r[2]
      total = total + keys.n
      for j = i + 1, #ports do
        if keys.n > 0 then
          local cmds = {}
          for k = 1, keys.n do cmds[k] = { "EXISTS", keys[k] } end
          local ex = assert(conns[j]:pipeline(cmds))
          for k = 1, keys.n do
            if ex[k] == 1 then
              dups = dups + 1
              if shown < 5 then
                shown = shown + 1
                print(("  %q on %d and %d"):format(keys[k], ports[i], ports[j]))
              end
            end
          end
        end
      end
    until cursor == "0"
  end
  print(("%d keys, %d on two masters"):format(total, dups))
  rc = dups == 0 and 0 or 1
  loop.stop()
end)
return rc
