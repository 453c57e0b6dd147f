-- kvcs.main: the config server process (SPEC §5). Loads the tables, serves
-- the HTTP API, the proxies' control port and (on the master) the slaves'
-- sync port; a slave keeps a copy of the master's tables.
local core = require "kv.core"
local loop = require "kv.loop"
local log = require "kv.log"
local args = require "kv.args"
local config = require "kv.config"
local httpd = require "kv.httpd"
local conf = require "kvcs.conf"
local store = require "kvcs.store"
local peers = require "kvcs.peers"
local api = require "kvcs.api"
local slave = require "kvcs.slave"
local metrics = require "kvcs.metrics"
local migration = require "kvcs.migration"
local failover = require "kvcs.failover"
local codes = require "kv.codes"
local cjson = require "cjson"
local prom = require "kv.prom"
local handshake = require "kv.handshake"
local btable = require "kv.btable"

local M = {}

-- A state file beside the config: its text, or nil, err.
local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text
end

-- The JSON object in path: value; nil when the file does not exist; nil,
-- err when it is not a JSON object.
local function read_json(path)
  local text = read_file(path)
  if not text then return nil end
  local ok, v = pcall(cjson.decode, text)
  if not ok or type(v) ~= "table" then return nil, tostring(v) end
  return v
end

local function fail(msg)
  io.stderr:write("kvcs: ", msg, "\n")
  return 1
end

-- The etcd client of store = "etcd" (etcd_endpoints checked as a list of
-- ip:port). -> client | nil, err
local function etcd_client(cfg, timeout, logfn)
  if cfg.etcd_endpoints == "" then return nil, "store = \"etcd\" needs etcd_endpoints" end
  local endpoints, err = require("kv.names").endpoint_list(cfg.etcd_endpoints, 16)
  if not endpoints then return nil, "etcd_endpoints: " .. tostring(err) end
  return require("kv.etcd").new({ endpoints = endpoints, timeout = timeout, user = cfg.etcd_user,
    password = cfg.etcd_password, log = logfn })
end

-- store = "etcd" (issue 14): the tables from etcd into st, the leader
-- election, the watch that keeps the cache current. -> true | nil, err
local function open_etcd(cs, cfg)
  local estore = require "kvcs.estore"
  local leader = require "kvcs.leader"
  if cfg.master_cs ~= "" then return nil, "store = \"etcd\" has no slave config servers: master_cs must be \"\"" end
  local client, cerr = etcd_client(cfg, 2, log.warn)
  if not client then return nil, cerr end
  cs.etcd = client
  local name = cfg.node_name ~= "" and cfg.node_name or cfg.http_listen
  local l = leader.new({
    etcd = client, prefix = cfg.etcd_prefix, ttl = cfg.lease_ttl, now = loop.now, log = log,
    me = { name = name, http = cfg.http_listen, proxy = cfg.proxy_listen, migration = cfg.migration_listen },
    on_change = function(is)
      cs.is_master = is
      if is then
        -- what the last leader learned: replicas, old masters to re-attach
        failover.load(cs, require("kvcs.cluster").ha_state(cs))
        loop.spawn(function() migration.abort_blocked(cs) end)
      end
    end,
    on_lease = function()
      for ns in pairs(cs.peers.proxies) do require("kvcs.cluster").changed(cs, ns) end
    end,
    on_lease_state = function(has)
      local was = cs.cut_off
      cs.cut_off = not has
      if cs.cut_off and was == false then
        peers.drop_proxies(cs, "this config server lost its etcd lease (cut off from etcd?)")
      end
    end,
  })
  cs.leader = l
  cs.leader_info = function() return leader.current(l) end
  estore.new(cs.store, client, cfg.etcd_prefix, function() return leader.fence(l) end)
  cs.store.log = log.warn
  cs.store.on_fenced = function() leader.check(l) end
  -- the first load, before any port serves: a proxy must never hear
  -- "no such namespace" from a config server that has not read etcd yet
  local cluster = require "kvcs.cluster"
  cluster.new(cs, { etcd = client, prefix = cfg.etcd_prefix, member = name, spawn = loop.spawn,
    sleep = loop.sleep, log = log.warn, lease = function() return l.lease end,
    fence = function() return leader.fence(l) end })
  cs.store.on_other = function(ev)
    local ns, kind = cluster.on_event(cs, ev)
    -- another member's proxies voted or left: the leader tallies again
    if ns and kind == "members" and cs.is_master then failover.evaluate(cs, ns) end
  end
  local ok, err
  loop.run(function()
    local deadline = loop.now() + 10
    repeat
      ok, err = estore.load_all(cs.store)
      if ok then ok, err = cluster.load(cs) end
      if not ok then loop.sleep(0.5) end
    until ok or loop.now() > deadline
    loop.stop()
  end)
  if not ok then return nil, "cannot read the tables from etcd (" .. cfg.etcd_endpoints .. "): " .. tostring(err) end
  return true
end

-- kvcs --import-files DIR: every table of a file store into etcd, each
-- created only where its namespace is absent (one that is there is kept and
-- named). -> exit status
local function import_files(cfg, dir)
  local estore = require "kvcs.estore"
  if cfg.store ~= "etcd" then return fail("--import-files needs store = \"etcd\" in the configuration") end
  local src = store.new(dir, store.real_fs())
  local ok, err = store.load_all(src)
  if not ok then return fail(err) end
  local client, cerr = etcd_client(cfg, 3, function(fmt, ...) io.stderr:write(fmt:format(...), "\n") end)
  if not client then return fail(cerr) end
  local dst = estore.new(store.new("etcd", nil), client, cfg.etcd_prefix, nil)
  local status = 0
  loop.run(function()
    local lok, lerr = estore.load_all(dst)
    if not lok then
      io.stderr:write("kvcs: cannot read etcd: ", tostring(lerr), "\n")
      status = 1
      return loop.stop()
    end
    for _, ns in ipairs(store.list(src)) do
      local t = src.tables[ns]
      if not t.lineage then t = btable.with_lineage(t) end
      if dst.tables[ns] then
        print(("%s: already in etcd (v%d), kept"):format(ns, dst.tables[ns].version))
      else
        local pok, perr = store.put(dst, t)
        if pok then
          print(("%s: imported (v%d, %d buckets)"):format(ns, t.version, t.bucket_count))
        else
          io.stderr:write(("kvcs: %s: %s\n"):format(ns, tostring(perr)))
          status = 1
        end
      end
    end
    loop.stop()
  end)
  return status
end

local function listen(what, addr, handler)
  local host, port = loop.split_addr(addr)
  local ok, err = loop.listen(host, port, handler)
  if not ok then return nil, ("%s: %s"):format(what, err) end
  return true
end

function M.main(arg)
  local opts, aerr = args.parse(arg, "kvcs")
  if not opts then
    io.stderr:write("kvcs: ", aerr, "\n", args.usage("kvcs"))
    return 2
  end
  if opts.help then io.stdout:write(args.usage("kvcs")) return 0 end
  if opts.version then print("kvcs " .. core.VERSION) return 0 end

  local cfg, err = conf.load(opts.config)
  if not cfg then return fail(err) end
  local confdir = args.dirname(opts.config)
  if opts.import_files then return import_files(cfg, opts.import_files) end
  local st = store.new(args.resolve(confdir, cfg.table_dir), store.real_fs())
  local on_etcd = cfg.store == "etcd"
  if not on_etcd then
    local lok, lerr = store.load_all(st)
    if not lok then
      log.error("%s", lerr)
      return fail(lerr)
    end
  end
  if opts.test and not on_etcd then
    print(("kvcs: configuration %s is OK; %d tables in %s"):format(opts.config, #store.list(st), st.dir))
    return 0
  end
  local sok, serr = log.setup(cfg.log_level, args.resolve(confdir, cfg.log_file))
  if not sok then return fail(serr) end
  if cfg.master_cs == "" and not on_etcd then -- tables from files older than lineages get one
    local given, gerr = store.give_lineages(st)
    if not given then return fail(gerr) end
    for _, ns in ipairs(given) do log.info("table %s: lineage %s given (v%d)", ns, st.tables[ns].lineage, st.tables[ns].version) end
  end

  local cs = {
    cfg = cfg, store = st, peers = peers.new(),
    is_master = cfg.master_cs == "" and not on_etcd, support_ha = cfg.support_ha,
  }
  if on_etcd then
    local eok, eerr = open_etcd(cs, cfg)
    if not eok then
      log.error("%s", eerr)
      return fail(eerr)
    end
    if opts.test then
      print(("kvcs: configuration %s is OK; %d tables in etcd under %s"):format(opts.config,
        #store.list(st), cfg.etcd_prefix))
      return 0
    end
  end
  cs.ha = failover.new()
  -- control peers refused by the handshake: one log line a second at most
  cs.refused = handshake.refusal_log(log.warn, loop.now, 1)
  cs.now = core.wall -- when a known proxy was last seen (persisted)
  cs.publish = function(t)
    peers.publish(cs, t)
    failover.table_changed(cs, t)
  end
  cs.on_report = function(entry, kind, ns, addr) return failover.report(cs, entry, kind, ns, addr) end
  cs.on_proxy_join = function(entry) failover.proxy_joined(cs, entry) end
  cs.on_replicas = function(master) peers.replicas_changed(cs, master) end
  cs.on_proxy_leave = function(entry) failover.proxy_left(cs, entry) end
  cs.publish_delete = function(ns) peers.publish_delete(cs, ns) end
  cs.proxy_list = function(ns) return peers.proxy_list(cs, ns) end
  cs.forget_proxy = function(ns, who) return peers.forget_proxy(cs, ns, who) end
  cs.wait_acks = function(ns, v, timeout) return peers.wait_acks(cs, ns, v, timeout) end
  if on_etcd then
    -- known proxies and HA state live in etcd too (kvcs.cluster)
    cs.save_ha = function(state)
      return require("kvcs.cluster").save_ha(cs, state, function(m) return store.owner_of(st, m) end)
    end
  else
    local known_path = confdir .. "/known_proxies.json"
    cs.save_known = function(list)
      return core.write_file_atomic(known_path, cjson.encode(list) .. "\n")
    end
    local list, kerr = read_json(known_path)
    if kerr then return fail(("%s: not a list of proxies (%s); fix or remove it"):format(known_path, kerr)) end
    if list then peers.load_known(cs, list) end
    -- learned replicas and old masters to re-attach (kvcs.failover)
    local ha_path = confdir .. "/ha_state.json"
    cs.save_ha = function(state)
      return core.write_file_atomic(ha_path, codes.encode_json(state) .. "\n")
    end
    local state, herr = read_json(ha_path)
    if herr then
      log.warn("%s: not an HA state (%s); starting without learned replicas", ha_path, herr)
    elseif state then
      failover.load(cs, state)
    end
  end
  cs.started = core.wall()
  cs.save_config = function(changes)
    local text, ferr = read_file(opts.config)
    if not text then return nil, ferr end
    local new, uerr = config.update_text(text, changes)
    if not new then return nil, uerr end
    return core.write_file_atomic(opts.config, new)
  end

  local hhost, hport = loop.split_addr(cfg.http_listen)
  local routes = api.routes(cs)
  routes["/metrics"] = { raw = function()
    return 200, metrics.text(cs), prom.CONTENT_TYPE
  end }
  local hok, herr = httpd.serve(hhost, hport, routes,
    { token = function() return cfg.admin_token end })
  if not hok then
    core.daemon_ready(false, "kvcs: http_listen: " .. tostring(herr))
    return fail("http_listen: " .. tostring(herr))
  end
  local ok, lerr2 = listen("proxy_listen", cfg.proxy_listen, function(sock) peers.serve_proxy(cs, sock) end)
  if not ok then return fail(lerr2) end
  if not on_etcd then -- with etcd there are no slaves
    ok, lerr2 = listen("cs_listen", cfg.cs_listen, function(sock) peers.serve_slave(cs, sock) end)
    if not ok then return fail(lerr2) end
  end
  ok, lerr2 = listen("migration_listen", cfg.migration_listen, function(sock) migration.serve(cs, sock) end)
  if not ok then return fail(lerr2) end

  if opts.daemon then
    local dok, derr = core.daemonize(confdir .. "/kvcs.pid")
    if not dok then return fail(derr) end
  end
  log.info("kvcs %s started as %s: http %s, proxies %s, sync %s, %d namespaces, cluster_type %s",
    core.VERSION, on_etcd and ("a member on etcd " .. cfg.etcd_endpoints .. " (" .. cfg.etcd_prefix .. ")")
      or cs.is_master and "master" or ("slave of " .. cfg.master_cs), cfg.http_listen,
    cfg.proxy_listen, on_etcd and "-" or cfg.cs_listen, #store.list(st), cfg.cluster_type)
  if cs.is_master then migration.abort_blocked(cs) end
  core.daemon_ready(true)
  if on_etcd then
    -- tables other config servers write reach this one's proxies
    st.on_change = function(ns, t)
      if t then
        peers.publish(cs, t)
        if cs.is_master then failover.table_changed(cs, t) end
      else
        peers.publish_delete(cs, ns)
      end
    end
    local w, werr = require("kvcs.estore").watch(st)
    if not w then log.error("etcd watch: %s", tostring(werr)) end
    st.watcher = w
    require("kvcs.leader").run(cs.leader, loop)
  elseif not cs.is_master then
    slave.start(cs)
  end
  failover.start(cs)
  loop.every(1, function()
    peers.heartbeat(cs)
    peers.forget_stale(cs)
  end)
  loop.on_signal(function(signo)
    if signo == 1 then return end
    log.info("kvcs stopping (signal %d)", signo)
    if cs.leader then
      -- another config server leads at once, not after the lease's TTL
      loop.spawn(function()
        require("kvcs.leader").resign(cs.leader)
        loop.stop()
      end)
      return
    end
    loop.stop() -- main returns, the runtime closes the Lua state: a clean exit
  end)
  loop.run()
  log.info("kvcs stopped")
  return 0
end

return M
