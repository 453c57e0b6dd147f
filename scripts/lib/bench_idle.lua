-- bench_idle.lua PORT COUNT READYFILE STOPFILE [PASSWORD]: open COUNT client
-- connections to 127.0.0.1:PORT, send one command on each (AUTH PASSWORD when
-- given, else PING) and wait for its reply, so the server has really taken
-- every connection; then hold them all, idle, until STOPFILE exists (or 10
-- minutes pass). Writes "connected=<n> errors=<n> first_error=<text>" to
-- READYFILE once every connection is up (or failed). Run by kvlua
-- (scripts/bench.sh: a proxy's RSS with many idle clients); the caller must
-- raise `ulimit -n` above COUNT.
local loop = require "kv.loop"

local port, count = tonumber(arg[1]), tonumber(arg[2])
local readyfile, stopfile, password = arg[3], arg[4], arg[5]
if not (port and count and readyfile and stopfile) then
  io.stderr:write("usage: kvlua bench_idle.lua PORT COUNT READYFILE STOPFILE [PASSWORD]\n")
  return 2
end

local PARALLEL = 64        -- connects in flight at once (listen backlogs are finite)
local HOLD_MAX = 600       -- seconds: never outlive a caller that died

local cmd
if password and password ~= "" then
  cmd = ("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"):format(#password, password)
else
  cmd = "*1\r\n$4\r\nPING\r\n"
end

local socks, connected, errors, first_error = {}, 0, 0, nil

local function fail(what)
  errors = errors + 1
  first_error = first_error or what
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() return true end
  return false
end

loop.run(function()
  local me = coroutine.running()
  local next_index, running = 0, PARALLEL
  for _ = 1, PARALLEL do
    loop.spawn(function()
      while next_index < count do
        next_index = next_index + 1
        local s, err = loop.connect("127.0.0.1", port, 10)
        if not s then
          fail(tostring(err))
        else
          s:send(cmd)
          local line, rerr = s:receive_line(10)
          if line and line:sub(1, 1) == "+" then
            connected = connected + 1
            socks[#socks + 1] = s
          else
            fail(line or tostring(rerr))
            s:close()
          end
        end
      end
      running = running - 1
      if running == 0 then loop.timer(0, function() coroutine.resume(me) end) end
    end)
  end
  coroutine.yield()

  local f = assert(io.open(readyfile .. ".tmp", "w"))
  f:write(("connected=%d errors=%d first_error=%s\n"):format(connected, errors,
    (first_error or "none"):gsub("%s+", "_")))
  f:close()
  os.rename(readyfile .. ".tmp", readyfile)

  local deadline = loop.now() + HOLD_MAX
  while not exists(stopfile) and loop.now() < deadline do loop.sleep(0.1) end
  for _, s in ipairs(socks) do s:close() end
  loop.stop()
end)
