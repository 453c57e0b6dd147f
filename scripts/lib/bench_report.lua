-- bench_report.lua: the tables of scripts/bench.sh. Plain Lua, run by kvlua.
--
--   kvlua bench_report.lua report RAW RSS META OUT.csv CLK_TCK
--       RAW:  one line per redis-benchmark run,
--             "row,target,rep,rps,p50_ms,p99_ms,cpu_ticks,requests,error_lines"
--       RSS:  "target,base_kib,idle_kib,hwm_kib,connections,failed" lines
--       META: "key=value" lines, copied to OUT.csv as "# key=value"
--       Prints the table (medians over the runs, ratios kvp/twemproxy and
--       kvp/direct per row, CPU per request, RSS, the issue's targets) and
--       writes OUT.csv.
--   kvlua bench_report.lua compare A.csv B.csv
--       The rows of two result files side by side, with B/A ratios.
local TARGETS = { "direct", "kvp", "twemproxy" }

local function split(line)
  local t = {}
  for f in (line .. ","):gmatch("([^,]*),") do t[#t + 1] = f end
  return t
end

local function lines(path)
  local out = {}
  local f = io.open(path)
  if not f then return out end
  for l in f:lines() do
    if l ~= "" then out[#out + 1] = l end
  end
  f:close()
  return out
end

local function median(list)
  if #list == 0 then return nil end
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local m = math.floor(#s / 2)
  if #s % 2 == 1 then return s[m + 1] end
  return (s[m] + s[m + 1]) / 2
end

local function ratio(a, b)
  if not a or not b or b == 0 then return nil end
  return a / b
end

local function fmt(v, f)
  if v == nil then return "-" end
  return (f or "%.3f"):format(v)
end

local function csvnum(v, f)
  if v == nil then return "" end
  return (f or "%.3f"):format(v)
end

-- ---------------------------------------------------------------- report

local function report(rawpath, rsspath, metapath, outpath, clk_tck)
  clk_tck = tonumber(clk_tck) or 100
  local rows, byrow = {}, {}
  for _, l in ipairs(lines(rawpath)) do
    local f = split(l)
    local row, target = f[1], f[2]
    if not byrow[row] then
      byrow[row] = {}
      rows[#rows + 1] = row
    end
    local r = byrow[row][target]
    if not r then
      r = { rps = {}, p50 = {}, p99 = {}, ticks = 0, requests = 0, errors = 0, runs = 0 }
      byrow[row][target] = r
    end
    local rps, p50, p99 = tonumber(f[4]), tonumber(f[5]), tonumber(f[6])
    r.runs = r.runs + 1
    if rps then r.rps[#r.rps + 1] = rps end
    if p50 then r.p50[#r.p50 + 1] = p50 end
    if p99 then r.p99[#r.p99 + 1] = p99 end
    r.ticks = r.ticks + (tonumber(f[7]) or 0)
    r.requests = r.requests + (tonumber(f[8]) or 0)
    r.errors = r.errors + (tonumber(f[9]) or 0)
    r.n = tonumber(f[8])
  end
  -- medians; CPU: seconds over all runs / requests over all runs (the tick
  -- is 1/CLK_TCK s: summing first keeps the rounding small)
  for _, row in ipairs(rows) do
    for _, r in pairs(byrow[row]) do
      r.m_rps, r.m_p50, r.m_p99 = median(r.rps), median(r.p50), median(r.p99)
      if r.requests > 0 then r.cpu = r.ticks / clk_tck / r.requests * 1e6 end
    end
  end

  local out = {}
  local function p(fmtstr, ...) out[#out + 1] = fmtstr:format(...) end
  p("%-10s %-10s %10s %8s %8s %9s %6s %9s %9s %9s %9s",
    "row", "target", "rps", "p50 ms", "p99 ms", "cpu us/r", "errs",
    "rps k/t", "rps k/d", "p99 k/t", "cpu k/t")
  for _, row in ipairs(rows) do
    local b = byrow[row]
    for i, t in ipairs(TARGETS) do
      local r = b[t]
      if r then
        local extra = ""
        if t == "kvp" then
          local tw, d = b.twemproxy or {}, b.direct or {}
          extra = (" %9s %9s %9s %9s"):format(
            fmt(ratio(r.m_rps, tw.m_rps), "%.2f"), fmt(ratio(r.m_rps, d.m_rps), "%.2f"),
            fmt(ratio(r.m_p99, tw.m_p99), "%.2f"), fmt(ratio(r.cpu, tw.cpu), "%.2f"))
        end
        p("%-10s %-10s %10s %8s %8s %9s %6d%s", i == 1 and row or "", t,
          fmt(r.m_rps, "%.0f"), fmt(r.m_p50), fmt(r.m_p99), fmt(r.cpu, "%.2f"), r.errors, extra)
      end
    end
  end
  p("rps/p50/p99: medians over %s; cpu us/r = CPU seconds per million requests",
    (function()
      local r = byrow[rows[1] or ""] and byrow[rows[1]].kvp
      return r and (r.runs .. " runs per target") or "the runs"
    end)())
  p("  (utime+stime of the whole process, all threads, summed over the runs; direct: the redis master)")
  p("k/t = kvp / twemproxy, k/d = kvp / direct (direct = one master alone; it holds the whole keyspace here, so its GETs hit too)")

  -- RSS
  local rss = {}
  for _, l in ipairs(lines(rsspath)) do
    local f = split(l)
    rss[#rss + 1] = { target = f[1], base = tonumber(f[2]), idle = tonumber(f[3]),
      hwm = tonumber(f[4]), conns = tonumber(f[5]), failed = tonumber(f[6]) }
  end
  if #rss > 0 then
    p("")
    p("RSS with idle client connections (VmRSS from /proc/PID/status; fresh processes, before the preload and the rows):")
    for _, r in ipairs(rss) do
      local per = (r.idle and r.base and r.conns and r.conns > 0)
        and (r.idle - r.base) * 1024 / r.conns or nil
      p("  %-10s before %s MiB, with %d idle clients %s MiB (VmHWM %s MiB), %s bytes per connection, %d failed",
        r.target, fmt(r.base and r.base / 1024, "%.1f"), r.conns or 0,
        fmt(r.idle and r.idle / 1024, "%.1f"), fmt(r.hwm and r.hwm / 1024, "%.1f"),
        fmt(per, "%.0f"), r.failed or 0)
    end
  end

  -- the issue's targets
  local function get(row, t, k) return byrow[row] and byrow[row][t] and byrow[row][t][k] end
  local checks = {}
  local function check(what, v, limit, le)
    if v == nil then
      checks[#checks + 1] = ("  %-44s %8s  (no data)"):format(what, "-")
      return
    end
    local ok = le and v <= limit or (not le and v >= limit)
    checks[#checks + 1] = ("  %-44s %8.2f  %s %.2f  %s"):format(what, v, le and "<=" or ">=", limit,
      ok and "met" or "NOT met")
  end
  for _, row in ipairs({ "set_p1", "get_p1" }) do
    check(row .. " rps kvp/twemproxy", ratio(get(row, "kvp", "m_rps"), get(row, "twemproxy", "m_rps")), 1.0)
  end
  for _, row in ipairs({ "set_p16", "get_p16" }) do
    check(row .. " rps kvp/twemproxy", ratio(get(row, "kvp", "m_rps"), get(row, "twemproxy", "m_rps")), 1.5)
  end
  for _, row in ipairs({ "mset10", "mget10" }) do
    check(row .. " rps kvp/twemproxy", ratio(get(row, "kvp", "m_rps"), get(row, "twemproxy", "m_rps")), 1.3)
  end
  for _, row in ipairs({ "set_p16", "get_p16" }) do
    check(row .. " cpu/req kvp/twemproxy", ratio(get(row, "kvp", "cpu"), get(row, "twemproxy", "cpu")), 0.75, true)
  end
  for _, row in ipairs({ "set_p1", "get_p1" }) do
    check(row .. " cpu/req kvp/twemproxy", ratio(get(row, "kvp", "cpu"), get(row, "twemproxy", "cpu")), 1.0, true)
  end
  for _, row in ipairs({ "set_p1", "get_p1" }) do
    check(row .. " p99 kvp/twemproxy", ratio(get(row, "kvp", "m_p99"), get(row, "twemproxy", "m_p99")), 1.2, true)
  end
  for _, r in ipairs(rss) do
    if r.target == "kvp" and r.idle then
      check(("kvp RSS MiB, %d idle clients"):format(r.conns or 0), r.idle / 1024, 64, true)
    end
  end
  if #checks > 0 then
    p("")
    p("targets (issue 6):")
    for _, c in ipairs(checks) do out[#out + 1] = c end
  end
  print(table.concat(out, "\n"))

  -- CSV
  local f = assert(io.open(outpath, "w"))
  for _, l in ipairs(lines(metapath)) do f:write("# ", l, "\n") end
  f:write("row,target,rps,p50_ms,p99_ms,cpu_us_per_req,rss_kib,runs,n,errors\n")
  for _, row in ipairs(rows) do
    for _, t in ipairs(TARGETS) do
      local r = byrow[row][t]
      if r then
        f:write(("%s,%s,%s,%s,%s,%s,,%d,%s,%d\n"):format(row, t, csvnum(r.m_rps, "%.0f"),
          csvnum(r.m_p50), csvnum(r.m_p99), csvnum(r.cpu, "%.3f"), r.runs, r.n or "", r.errors))
      end
    end
  end
  for _, r in ipairs(rss) do
    f:write(("rss_base,%s,,,,,%s,1,,0\n"):format(r.target, r.base or ""))
    f:write(("rss_idle,%s,,,,,%s,1,%s,%s\n"):format(r.target, r.idle or "", r.conns or "", r.failed or ""))
  end
  f:close()
end

-- ---------------------------------------------------------------- compare

local function load_csv(path)
  local meta, order, recs = {}, {}, {}
  local f = io.open(path)
  if not f then
    io.stderr:write("cannot read ", path, "\n")
    os.exit(2)
  end
  local header
  for l in f:lines() do
    if l:sub(1, 1) == "#" then
      meta[#meta + 1] = l:sub(3)
    elseif l ~= "" then
      local fields = split(l)
      if not header then
        header = fields
      else
        local rec = {}
        for i, h in ipairs(header) do rec[h] = fields[i] end
        local key = rec.row .. "/" .. rec.target
        if not recs[key] then order[#order + 1] = key end
        recs[key] = rec
      end
    end
  end
  f:close()
  return { meta = meta, order = order, recs = recs }
end

local function compare(apath, bpath)
  local a, b = load_csv(apath), load_csv(bpath)
  local function metaline(m)
    local keep = {}
    for _, l in ipairs(m) do
      if l:match("^commit=") or l:match("^io_threads=") or l:match("^pin=") or l:match("^mode=")
        or l:match("^date=") then keep[#keep + 1] = l end
    end
    return table.concat(keep, " ")
  end
  print("A: " .. apath .. "  " .. metaline(a.meta))
  print("B: " .. bpath .. "  " .. metaline(b.meta))
  local order, seen = {}, {}
  for _, k in ipairs(a.order) do order[#order + 1] = k; seen[k] = true end
  for _, k in ipairs(b.order) do if not seen[k] then order[#order + 1] = k end end
  print(("%-10s %-10s %9s %9s %6s  %7s %7s  %7s %7s %6s  %7s %7s %6s"):format(
    "row", "target", "rps A", "rps B", "B/A", "p50 A", "p50 B", "p99 A", "p99 B", "B/A",
    "cpu A", "cpu B", "B/A"))
  local last
  for _, k in ipairs(order) do
    local ra, rb = a.recs[k] or {}, b.recs[k] or {}
    local row = ra.row or rb.row
    local target = ra.target or rb.target
    local shown = row ~= last and row or ""
    last = row
    if row:match("^rss") then
      local x, y = tonumber(ra.rss_kib), tonumber(rb.rss_kib)
      print(("%-10s %-10s %9s %9s %6s  (RSS MiB)"):format(shown, target,
        fmt(x and x / 1024, "%.1f"), fmt(y and y / 1024, "%.1f"), fmt(ratio(y, x), "%.2f")))
    else
      local n = tonumber
      print(("%-10s %-10s %9s %9s %6s  %7s %7s  %7s %7s %6s  %7s %7s %6s"):format(shown, target,
        fmt(n(ra.rps), "%.0f"), fmt(n(rb.rps), "%.0f"), fmt(ratio(n(rb.rps), n(ra.rps)), "%.2f"),
        fmt(n(ra.p50_ms)), fmt(n(rb.p50_ms)), fmt(n(ra.p99_ms)), fmt(n(rb.p99_ms)),
        fmt(ratio(n(rb.p99_ms), n(ra.p99_ms)), "%.2f"),
        fmt(n(ra.cpu_us_per_req), "%.2f"), fmt(n(rb.cpu_us_per_req), "%.2f"),
        fmt(ratio(n(rb.cpu_us_per_req), n(ra.cpu_us_per_req)), "%.2f")))
    end
  end
  print("cpu = CPU us per request (= s per million) of the target process; B/A < 1: B is cheaper/faster for latency and cpu, > 1: B faster for rps")
end

local mode = arg[1]
if mode == "report" then
  report(arg[2], arg[3], arg[4], arg[5], arg[6])
elseif mode == "compare" then
  if not (arg[2] and arg[3]) then
    io.stderr:write("usage: bench_report.lua compare A.csv B.csv\n")
    return 2
  end
  compare(arg[2], arg[3])
else
  io.stderr:write("usage: bench_report.lua report RAW RSS META OUT.csv CLK_TCK | compare A.csv B.csv\n")
  return 2
end
