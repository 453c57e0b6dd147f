-- kvlua tests/it/etcd_client.lua cluster|auth|garbage PORT   (run by tests/it/43_etcd_client.sh)
-- Drives kv.etcd against real etcd members: ETCD_ENDPOINTS ("h:p,h:p,h:p")
-- and ETCD_PIDS (their pids, same order: this script kills members itself,
-- mid-watch). Prints "ok - what" / "FAILED - what: why" per check and ends
-- with "done".
--   cluster: kv, txn, leases, a watch through a stalled member, a watch
--            through a member kill, one member down, then two down (3 members)
--   auth:    a cluster with auth enabled, user root / password rootpw, a
--            token TTL of 1 s (1 member); a watch from a compacted revision
--   garbage PORT: a fake member on PORT answering bad bytes
local loop = require "kv.loop"
local etcd = require "kv.etcd"

local EPS, PIDS = {}, {}
for a in (os.getenv("ETCD_ENDPOINTS") or ""):gmatch("[^,]+") do EPS[#EPS + 1] = a end
for p in (os.getenv("ETCD_PIDS") or ""):gmatch("[^,]+") do PIDS[#PIDS + 1] = p end

local function check(what, cond, why)
  if cond then print("ok - " .. what)
  else print("FAILED - " .. what .. (why and (": " .. tostring(why)) or "")) end
  io.stdout:flush()
end

local function quiet() end
local lines = {}
local function logger(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end

-- endpoints starting at index i (1-based), wrapping
local function from(i)
  local out = {}
  for k = 0, #EPS - 1 do out[#out + 1] = EPS[(i - 1 + k) % #EPS + 1] end
  return out
end

local function kill(i)
  os.execute("kill -9 " .. PIDS[i])
end

local function index_of(ep)
  for i, e in ipairs(EPS) do if e == ep then return i end end
end

local function wait_for(secs, fn)
  local t = loop.now()
  while loop.now() - t < secs do
    if fn() then return true, loop.now() - t end
    loop.sleep(0.1)
  end
  return false, loop.now() - t
end

local function kv_checks(c)
  local h, err = c:put("/it/a", "1")
  check("put", h and h.revision > 0, err)
  local kv, hdr = c:get("/it/a")
  check("get the value put, with its revisions", kv and kv.value == "1" and kv.mod_revision == h.revision
    and kv.create_revision == h.revision and kv.version == 1 and hdr.revision >= h.revision, hdr)
  local bin = "\0\1\255 binary \r\n"
  check("put binary", c:put("/it/b", bin))
  kv = c:get("/it/b")
  check("binary value round-trips", kv and kv.value == bin)
  kv, hdr = c:get("/it/none")
  check("get of an absent key is nil with a header", kv == nil and type(hdr) == "table" and hdr.revision > 0)
  c:put("/it0", "outside the prefix")
  local kvs = c:range("/it/")
  check("range of a prefix, sorted, nothing outside it", kvs and #kvs == 2 and kvs[1].key == "/it/a"
    and kvs[2].key == "/it/b")
  -- txn: compare MOD then write, and the failing compare's branch
  local mod = c:get("/it/a").mod_revision
  local ok, resp, th = c:txn{
    compare = { { key = "/it/a", target = "MOD", result = "EQUAL", value = mod } },
    success = { { put = { "/it/a", "2" } }, { range = { "/it/", prefix = true } } },
    failure = { { range = { "/it/a" } } } }
  check("txn compare MOD equal: success branch", ok == true and resp[1].type == "put"
    and resp[2].type == "range" and #resp[2].kvs == 2 and th.revision > mod, resp)
  ok, resp = c:txn{
    compare = { { key = "/it/a", target = "MOD", result = "EQUAL", value = mod } },
    success = { { put = { "/it/a", "lost update" } } },
    failure = { { range = { "/it/a" } } } }
  check("txn compare MOD on a stale revision: failure branch, value unchanged", ok == false
    and resp[1].type == "range" and resp[1].kvs[1].value == "2", resp)
  ok = c:txn{ compare = { { key = "/it/new", target = "CREATE", value = 0 } },
              success = { { put = { "/it/new", "x" } } } }
  check("txn CREATE == 0 creates once", ok == true)
  ok = c:txn{ compare = { { key = "/it/new", target = "CREATE", value = 0 } },
              success = { { put = { "/it/new", "y" } } } }
  check("txn CREATE == 0 refused the second time", ok == false and c:get("/it/new").value == "x")
  local n = c:delete("/it/a")
  check("delete one key", n == 1 and c:get("/it/a") == nil)
  n = c:delete("/it/", true)
  check("delete a prefix", n == 2 and #c:range("/it/") == 0 and c:get("/it0") ~= nil)
  local bad, berr = c:get(nil)
  check("a bad argument is an error, not a crash", bad == nil and type(berr) == "string", berr)
  bad, berr = c:txn{ compare = { { key = "/x", target = "NOPE", value = 1 } } }
  check("a bad txn is an error, not a crash", bad == nil and type(berr) == "string", berr)
end

local function lease_checks(c)
  local id, ttl = c:grant(2)
  check("grant gives a lease id (a string) and its TTL", type(id) == "string" and ttl >= 2, ttl)
  c:put("/lease/short", "v", id)
  local kv = c:get("/lease/short")
  check("a key put with a lease carries it", kv and kv.lease == id)
  local gone, secs = wait_for(6, function() return c:get("/lease/short") == nil end)
  check("a lease that expires deletes its key", gone, secs)
  check("keepalive of the expired lease says 0", c:keepalive(id) == 0)
  local id2 = c:grant(2)
  c:put("/lease/kept", "v", id2)
  local t, alive = loop.now(), true
  while loop.now() - t < 4.5 do
    local left = c:keepalive(id2)
    if not left or left <= 0 then alive = false end
    loop.sleep(0.5)
  end
  check("keepalive keeps the lease and its key past its TTL", alive and c:get("/lease/kept") ~= nil)
  check("revoke", c:revoke(id2) == true)
  check("revoking deletes the key at once", c:get("/lease/kept") == nil)
  check("revoking a lease already gone is fine", c:revoke(id2) == true)
end

local function cluster()
  local c = etcd.new{ endpoints = EPS, timeout = 2, log = logger }
  kv_checks(c)
  lease_checks(c)

  -- calls from many tasks at once: each takes its own connection
  local n, good = 40, 0
  for t = 1, n do
    loop.spawn(function()
      local key = "/conc/" .. t
      local h = c:put(key, tostring(t))
      local kv = h and c:get(key)
      if kv and kv.value == tostring(t) then good = good + 1 end
    end)
  end
  wait_for(10, function() return good == n end)
  check("40 tasks calling at once all get their own answers", good == n, good)
  check("idle connections kept are bounded", #c.idle <= 4, #c.idle)
  c:delete("/conc/", true)

  -- a watched member that stalls (SIGSTOP: its connections stay open, no
  -- byte ever comes): the watcher's idle probe finds it and moves on
  local svals = {}
  local sw = c:watch("/s/", 0, function(events)
    for _, ev in ipairs(events or {}) do svals[ev.kv.value] = true end
  end, { idle = 1 })
  wait_for(5, function() return sw.endpoint ~= nil end)
  local si = index_of(sw.endpoint)
  os.execute("kill -STOP " .. PIDS[si])
  local sw_writer = etcd.new{ endpoints = from(si % #EPS + 1), timeout = 2, log = quiet }
  local t0 = loop.now()
  for k = 1, 5 do
    -- an unknown outcome (the stopped member was the raft leader) is
    -- simply written again: the check is on the values seen
    wait_for(15, function() return sw_writer:put("/s/" .. k, "v" .. k) ~= nil end)
  end
  local all = wait_for(15, function()
    for k = 1, 5 do if not svals["v" .. k] then return false end end
    return true
  end)
  check("a watch through a stalled member moves on and sees every put", all
    and sw.endpoint ~= EPS[si], string.format("%.1f s", loop.now() - t0))
  print(string.format("# stalled member left after %.1f s", loop.now() - t0))
  sw:cancel()
  os.execute("kill -CONT " .. PIDS[si])
  check("the stalled member is back", wait_for(15, function()
    local one = etcd.new{ endpoints = { EPS[si] }, timeout = 1, log = quiet }
    return one:get("/s/1") ~= nil
  end))

  -- watch: a writer through another member; the watched member is killed
  -- midway; every revision written must arrive once, in order
  local seen, compacted = {}, nil
  local done = 0
  local w = c:watch("/w/", 0, function(events, header, crev)
    if not events then compacted = crev return end
    for _, ev in ipairs(events) do
      seen[#seen + 1] = { rev = ev.kv.mod_revision, type = ev.type, key = ev.kv.key, value = ev.kv.value }
      -- hold the watcher at op 59 until its member is dead and ten more
      -- ops are written: they exist only on the others, so the watcher
      -- must ask the next member from the revision after 59's
      if ev.kv.value == "59" then wait_for(20, function() return done >= 70 end) end
    end
  end)
  local up = wait_for(5, function() return w.endpoint ~= nil end)
  check("watch stream open", up)
  local wi = index_of(w.endpoint)
  local writer = etcd.new{ endpoints = from(wi % #EPS + 1), timeout = 2, log = quiet }
  -- every op is confirmed once: an unknown outcome (the killed member may
  -- have been the raft leader) is settled by reading the key back
  local want, unknown, werr = {}, 0, nil
  local function settle(op)
    local t = loop.now()
    while loop.now() - t < 15 do
      local h, err, n
      if op.type == "PUT" then h, err = writer:put(op.key, op.value)
      else n, h = writer:delete(op.key) if not n then err = h h = nil end end
      if h then op.rev = h.revision return true end
      unknown = unknown + 1
      werr = err
      local kv, rh
      repeat
        kv, rh = writer:get(op.key)
        if type(rh) ~= "table" then loop.sleep(0.2) end
      until type(rh) == "table" or loop.now() - t > 15
      if type(rh) ~= "table" then return false end
      if op.type == "PUT" and kv and kv.value == op.value then op.rev = kv.mod_revision return true end
      if op.type == "DELETE" and kv == nil then return true end
    end
    return false
  end
  for i = 1, 120 do
    -- every 5th op deletes the key the op before put: it exists
    local op = i % 5 == 0 and { type = "DELETE", key = want[#want].key }
      or { type = "PUT", key = "/w/" .. (i % 7), value = tostring(i) }
    if not settle(op) then break end
    want[#want + 1] = op
    done = i
    if i == 60 then kill(wi) end
    if i % 10 == 0 then loop.sleep(0.05) end
  end
  check("the writer wrote everything while a member died", done == 120, werr)
  print("# writes with an unknown outcome (settled by a read): " .. unknown)
  wait_for(10, function() return #seen >= #want end)
  local same, why = #seen == #want, "seen " .. #seen .. " of " .. #want
  if same then
    for i, x in ipairs(want) do
      local s = seen[i]
      if (x.rev and s.rev ~= x.rev) or s.type ~= x.type or s.key ~= x.key
        or (x.value and s.value ~= x.value) then
        same, why = false, "event " .. i .. ": got rev " .. s.rev .. " " .. s.type .. " " .. s.key
          .. ", want rev " .. tostring(x.rev) .. " " .. x.type .. " " .. x.key
        break
      end
    end
  end
  check("watch saw every put and delete in order across the kill (revision continuity)", same, why)
  check("watch moved to another member", w.endpoint ~= EPS[wi] and index_of(w.endpoint) ~= nil, w.endpoint)
  check("no compaction reported", compacted == nil)
  local contiguous = true
  for i = 2, #seen do if seen[i].rev ~= seen[i - 1].rev + 1 then contiguous = false end end
  check("revisions seen are contiguous", contiguous)

  -- one member of three down: a client whose first endpoint is the dead one
  local c1 = etcd.new{ endpoints = from(wi), timeout = 2, log = logger }
  local h, err = c1:put("/one/a", "1")
  check("one member down: put (its connect fails, retried elsewhere)", h ~= nil, err)
  check("one member down: get", (c1:get("/one/a") or {}).value == "1")
  check("one member down: range", #(c1:range("/one/") or {}) == 1)
  local ok = c1:txn{ compare = { { key = "/one/a", target = "VALUE", value = "1" } },
                     success = { { put = { "/one/a", "2" } } } }
  check("one member down: txn", ok == true)
  local id = c1:grant(3)
  check("one member down: grant + keepalive + revoke", id and c1:keepalive(id) > 0 and c1:revoke(id))
  check("one member down: delete", c1:delete("/one/", true) == 1)
  check("the endpoint switch was logged with the dead endpoint",
    (function()
      for _, l in ipairs(lines) do if l:find(EPS[wi], 1, true) and l:find("leaving") then return true end end
    end)())
  check("the client reports where it is", c1.stats.endpoint ~= EPS[wi] and c1.stats.switches >= 1
    and c1.stats.requests > 0 and c1.stats.last_rtt > 0)

  -- two of three down: no quorum; calls fail clearly within the timeout
  local other = (wi % #EPS) + 1
  kill(other)
  local c2 = etcd.new{ endpoints = EPS, timeout = 1, log = quiet }
  local t = loop.now()
  local kv2, gerr = c2:get("/one/a")
  local secs = loop.now() - t
  check("two members down: get fails with an error", kv2 == nil and type(gerr) == "string", gerr)
  check("two members down: within the timeout (one attempt + one retry)", secs < 2 * 1 + 0.5, secs)
  print("# get error: " .. tostring(gerr))
  t = loop.now()
  local ph, perr = c2:put("/one/b", "x")
  secs = loop.now() - t
  check("two members down: put fails as an unknown outcome", ph == nil
    and tostring(perr):find("unknown outcome", 1, true) ~= nil, perr)
  check("two members down: put within the timeout", secs < 1 + 0.5, secs)
  print("# put error: " .. tostring(perr))
  -- the watch on the survivor is ended by it (it has no leader any more)
  local restarts = w.restarts
  local moved = wait_for(8, function() return w.restarts > restarts end)
  check("the watch leaves the member without a leader", moved)
  w:cancel()
end

local function auth()
  local bad = etcd.new{ endpoints = EPS, timeout = 2, user = "root", password = "wrong", log = quiet }
  local h, err = bad:put("/auth/a", "1")
  check("a wrong password is a clear error", h == nil and tostring(err):find("authentication failed", 1, true), err)
  local none = etcd.new{ endpoints = EPS, timeout = 2, log = quiet }
  h, err = none:put("/auth/a", "1")
  check("no user with auth on is refused", h == nil and err ~= nil, err)
  local c = etcd.new{ endpoints = EPS, timeout = 2, user = "root", password = "rootpw", log = logger }
  h, err = c:put("/auth/a", "1")
  check("authenticated put", h ~= nil, err)
  local token = c.token
  check("authenticated get", (c:get("/auth/a") or {}).value == "1")
  local got = {}
  local w = c:watch("/auth/", 0, function(evs)
    for _, e in ipairs(evs or {}) do got[#got + 1] = e.kv.value end
  end)
  wait_for(3, function() return w.endpoint end)
  loop.sleep(0.3)
  -- the token's TTL is 1 s: it expires while idle; the client authenticates again
  loop.sleep(3)
  h, err = c:put("/auth/a", "2")
  check("after the token expired: re-authenticated, put works", h ~= nil and c.token ~= token, err)
  wait_for(3, function() return #got >= 1 end)
  check("authenticated watch sees the put", got[1] == "2", got[1])
  w:cancel()

  -- a watch from a compacted revision: the handler is told, re-reads, and
  -- the watch goes on from the revision it returns
  local first = c:put("/cmp/a", "0").revision
  for i = 1, 5 do c:put("/cmp/a", tostring(i)) end
  local last = c:put("/cmp/b", "x").revision
  check("compact", c:compact(last - 1) == true)
  local told, events, reread = nil, {}, nil
  local w2 = c:watch("/cmp/", first, function(evs, header, crev)
    if not evs then
      told = crev
      local kvs, h = c:range("/cmp/")
      reread = kvs and #kvs
      return h.revision + 1
    end
    for _, e in ipairs(evs) do events[#events + 1] = e.kv.key .. "=" .. e.kv.value end
  end)
  wait_for(5, function() return told ~= nil end)
  check("a watch from before the compaction is told so, with the compact revision",
    told == last - 1 and reread == 2, told)
  wait_for(3, function() return w2.endpoint ~= nil and w2.revision > last end)
  c:put("/cmp/c", "after")
  wait_for(5, function() return #events > 0 end)
  check("after the re-read the watch goes on from the revision returned",
    #events == 1 and events[1] == "/cmp/c=after", table.concat(events, ","))
  w2:cancel()
end

-- A fake member on port arg[2] answering what `reply` holds (text, or a
-- function(sock) for replies sent in pieces), whatever it is asked.
local reply
local asked = 0        -- requests the fake member read
local function fake_member(port)
  assert(loop.listen("127.0.0.1", port, function(sock)
    while true do
      local head = {}
      repeat
        local line = sock:receive_line(5)
        if not line then sock:close() return end
        head[#head + 1] = line
      until line == ""
      local len = tonumber(table.concat(head, "\n"):match("Content%-Length: (%d+)")) or 0
      if len > 0 and not sock:receive(len, 5) then sock:close() return end
      asked = asked + 1
      if type(reply) == "function" then reply(sock) else sock:send(reply) end
    end
  end))
end

local function garbage()
  local port = tonumber(arg[2])
  fake_member(port)
  local c = etcd.new{ endpoints = { "127.0.0.1:" .. port }, timeout = 1, log = quiet }
  local function ok200(body)
    return "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  end
  local cases = {
    { "a body that is not JSON", ok200("hello") },
    { "kvs of the wrong shape", ok200('{"kvs":"x"}') },
    { "a key that is not base64", ok200('{"kvs":[{"key":"!!!!"}]}') },
    { "a revision that is not a number", ok200('{"header":{"revision":"abc"},"kvs":[]}') },
    { "a body over the bound", "HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n" },
    { "not HTTP", "SSH-2.0-OpenSSH\r\n\r\n" },
    { "a 500", "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\n{}" },
    { "no answer", "" },
  }
  for _, case in ipairs(cases) do
    reply = case[2]
    local t = loop.now()
    local kv, err = c:get("/k")
    check(case[1] .. ": an error, no crash", kv == nil and type(err) == "string"
      and loop.now() - t < 2.5, err)
    print("# " .. case[1] .. ": " .. tostring(err))
    c:close()
  end
  -- the same failure: a read is tried again, a write is not (it may have landed)
  reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 52\r\n\r\n"
    .. '{"error":"etcdserver: no leader","code":14,"x":"12"}'
  asked = 0
  local _, rerr = c:get("/k")
  check("a read that failed on a member is tried once more", asked == 2, asked)
  asked = 0
  local h, werr = c:put("/k", "v")
  check("a write that failed on a member is not retried: unknown outcome", asked == 1 and h == nil
    and tostring(werr):find("^unknown outcome: .*no leader") ~= nil, werr)
  print("# read: " .. tostring(rerr) .. " / write: " .. tostring(werr))
  reply = ok200('{"header":{"revision":"7"},"kvs":[{"key":"L2s=","value":"dg==","mod_revision":"7"}]}')
  local kv = c:get("/k")
  check("the same member answering well again is used", kv and kv.value == "v" and kv.mod_revision == 7)
  -- a watch stream with a bad line in it: the watcher drops the stream and
  -- comes back (from the revision after the last event), never crashes
  local opens = 0
  local got = {}
  reply = function(sock)
    opens = opens + 1
    local function chunk(x) return string.format("%x\r\n%s\r\n", #x, x) end
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    sock:send(chunk('{"result":{"header":{"revision":"7"},"created":true}}\n'))
    if opens == 1 then
      sock:send(chunk('{"result":{"header":{"revision":"8"},"events":[{"kv":{"key":"L2s=","value":"MQ==","mod_revision":"8"}}]}}\n'))
      sock:send(chunk('{"result": this is not json}\n'))
    else
      got.start = true
    end
  end
  local w = c:watch("/k", 0, function(evs)
    for _, e in ipairs(evs or {}) do got[#got + 1] = e.kv.mod_revision end
  end)
  wait_for(5, function() return opens >= 2 end)
  check("a watch stream with a bad message is dropped and opened again",
    opens >= 2 and got[1] == 8 and w.revision == 9, w.revision)
  w:cancel()
end

loop.run(function()
  local phases = { cluster = cluster, auth = auth, garbage = garbage }
  local ok, err = xpcall(phases[arg[1]], debug.traceback)
  if not ok then check("script ran", false, err) end
  for _, l in ipairs(lines) do print("# log: " .. l) end
  print("done")
  loop.stop()
end)
