-- Issue 15: writes to big keys while they move, and checks that nothing
-- acknowledged is lost and no read goes back.
--   kvlua tests/it/bigkey_writer.lua find BUCKET PREFIX
--       prints a key PREFIX<n> of bucket BUCKET (of 1023, the default policy)
--   kvlua tests/it/bigkey_writer.lua write PORT STOPFILE STRKEY HASHKEY
--       until STOPFILE exists, through the proxy at PORT:
--         HINCRBY HASHKEY counter 1   each reply exactly one more than the last
--                                     acknowledged (more only after an
--                                     unacknowledged one)
--         HSET HASHKEY w<i> <i>       every acknowledged field must be there
--         SETRANGE STRKEY 0 <%010d>   then GETRANGE STRKEY 0 9, never older
--       then verifies everything; exit 0 only when nothing was lost and no
--       read went back. Prints the figures.
local loop = require "kv.loop"
local redis = require "kv.redis"
local core = require "kv.core"

if arg[1] == "find" then
  local b, prefix = tonumber(arg[2]), arg[3]
  for i = 0, 1e6 do
    if core.key_bucket("murmur2_kvstore", true, prefix .. i, 1023) == b then
      print(prefix .. i)
      os.exit(0)
    end
  end
  os.exit(1)
end

local port, stopfile, skey, hkey = tonumber(arg[2]), arg[3], arg[4], arg[5]
local st = { acked = 0, ambiguous = 0, reads = 0, backwards = 0, lost = 0, errors = {} }
local function note(e) if #st.errors < 5 then st.errors[#st.errors + 1] = tostring(e) end end
local function stopped()
  local f = io.open(stopfile, "r")
  if f then f:close() return true end
  return false
end

loop.run(function()
  local c = assert(redis.connect("127.0.0.1", port, { timeout = 10 }))
  local counter, unsure = 0, false -- last acknowledged HINCRBY; one unacknowledged since?
  local fields = {}
  local str = -1 -- last acknowledged SETRANGE value
  local i = 0
  while not stopped() do
    i = i + 1
    local r, err = c:call("HINCRBY", hkey, "counter", "1")
    if type(r) == "number" then
      if r ~= counter + 1 and not (unsure and r > counter) then
        st.backwards = st.backwards + 1
        note(("HINCRBY gave %d after %d"):format(r, counter))
      end
      counter, unsure = r, false
      st.acked = st.acked + 1
    else
      unsure = true
      st.ambiguous = st.ambiguous + 1
      note(type(r) == "table" and r.err or err)
      if r == nil then c = assert(redis.connect("127.0.0.1", port, { timeout = 10 })) end
    end
    r = c:call("HSET", hkey, "w" .. i, tostring(i))
    if type(r) == "number" then fields[#fields + 1] = i; st.acked = st.acked + 1 end
    local v = ("%010d"):format(i)
    r = c:call("SETRANGE", skey, "0", v)
    if type(r) == "number" then str = i; st.acked = st.acked + 1 end
    r = c:call("GETRANGE", skey, "0", "9")
    if type(r) == "string" then
      st.reads = st.reads + 1
      if (tonumber(r) or -1) < str then
        st.backwards = st.backwards + 1
        note(("GETRANGE gave %s after %d was acknowledged"):format(r, str))
      end
    end
  end
  loop.sleep(0.5)
  -- verify
  local got = c:call("HGET", hkey, "counter")
  if tonumber(got) ~= counter and not (unsure and tonumber(got) and tonumber(got) >= counter) then
    st.lost = st.lost + 1
    note(("counter is %s, %d acknowledged"):format(tostring(got), counter))
  end
  for _, f in ipairs(fields) do
    local x = c:call("HGET", hkey, "w" .. f)
    if x ~= tostring(f) then
      st.lost = st.lost + 1
      note(("field w%d is %s"):format(f, tostring(x)))
    end
  end
  local s = c:call("GETRANGE", skey, "0", "9")
  if str >= 0 and tonumber(s) ~= str then
    st.lost = st.lost + 1
    note(("the string starts with %s, %d acknowledged"):format(tostring(s), str))
  end
  st.strlen = c:call("STRLEN", skey)
  st.hlen = c:call("HLEN", hkey)
  print(("acked=%d ambiguous=%d reads=%d backwards=%d lost=%d strlen=%s hlen=%s"):format(st.acked, st.ambiguous,
    st.reads, st.backwards, st.lost, tostring(st.strlen), tostring(st.hlen)))
  for _, e in ipairs(st.errors) do print("  " .. e) end
  st.ok = st.lost == 0 and st.backwards == 0
  loop.stop()
end)
os.exit(st.ok and 0 or 1)
