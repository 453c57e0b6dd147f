-- kvp.main: the proxy process. Reads the config (kvp.conf) and the policy,
-- hands both to the C data path (dp.set_policy; dp.configure with every key
-- kvp.conf sends to C) and stops there with -t; otherwise starts the data
-- path and runs the control plane on this thread: the config-server link
-- (kvp.cslink, which installs each table with dp.set_table), the masters'
-- health checks (kvp.health), the replicas' staleness (kvp.replicas), the
-- stats windows and the HTTP admin API (kvp.http_api; M.control builds what
-- its handlers act on). The process exits when no config server gives it a
-- table within STARTUP_WAIT seconds.
local core = require "kv.core"
local loop = require "kv.loop"
local log = require "kv.log"
local args = require "kv.args"
local conf = require "kvp.conf"
local policy = require "kv.policy"
local cslink = require "kvp.cslink"
local handshake = require "kv.handshake"
local dp = require "kvp.dp"
local httpd = require "kv.httpd"
local stats = require "kvp.stats"
local http_api = require "kvp.http_api"
local policyctl = require "kvp.policyctl"
local metrics = require "kvp.metrics"
local health = require "kvp.health"
local replicas = require "kvp.replicas"
local btable = require "kv.btable"

local M = {}

-- Without a table from a config server within this time, a starting proxy
-- gives up (TEST_GUIDE "Failures": a new proxy cannot be added).
M.STARTUP_WAIT = 10

local function fail(msg)
  io.stderr:write("kvp: ", msg, "\n")
  return 1
end

-- What the HTTP handlers act on (kvp.http_api's px).
function M.control(path, cfg, state, policy_path)
  local px = { cfg = cfg, state = state, now = core.now, policy_path = policy_path }
  px.stats = stats.new(dp.stats, core.now())
  loop.every(1, function() stats.tick(px.stats, core.now()) end)
  px.config_text = function()
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    return text
  end
  px.save_config = function(text) return core.write_file_atomic(path, text) end
  px.request = function(...) return cslink.request(state, ...) end
  px.metrics = function() return metrics.text(px) end
  px.apply = function(new_cfg, changes)
    px.cfg = new_cfg
    -- the changed keys that reach C; the rest are read from px.cfg when used
    local ok, err = dp.configure(conf.to_c(new_cfg, changes))
    if not ok then log.error("set_config: the data path refused the new values: %s", err) end
    local keys = {}
    for k in pairs(changes) do keys[#keys + 1] = k end
    table.sort(keys)
    log.info("set_config applied and saved: %s", table.concat(keys, ", "))
    if changes.config_server_master or changes.config_server_slave or changes.config_servers then
      state.servers, state.cluster = conf.servers(new_cfg)
      state.servers_changed = true -- kvp.cslink starts over on the new list
      if state.sock then state.sock:close() end -- reconnect to the new address
    end
  end
  return px
end

function M.main(arg)
  local opts, aerr = args.parse(arg, "kvp")
  if not opts then
    io.stderr:write("kvp: ", aerr, "\n", args.usage("kvp"))
    return 2
  end
  if opts.help then io.stdout:write(args.usage("kvp")) return 0 end
  if opts.version then print("kvp " .. core.VERSION) return 0 end

  local cfg, err = conf.load(opts.config)
  if not cfg then return fail(err) end
  local confdir = args.dirname(opts.config)
  local policy_path = cfg.policy
  if policy_path:sub(1, 1) ~= "/" then
    local beside = confdir .. "/" .. policy_path
    policy_path = core.is_file(beside) and beside or (KV_ROOT .. "/" .. policy_path)
  end
  local pol, perr = policy.load(policy_path)
  if not pol then return fail(perr) end
  if opts.reload then return policyctl.ask_reload(cfg, opts.force) end
  local ok, derr = dp.set_policy(pol)
  if not ok then return fail(derr) end
  -- every to_c key, defaults included: C has none of its own
  local cok, cerr = dp.configure(conf.to_c(cfg))
  if not cok then return fail(cerr) end
  if opts.test then
    print(("kvp: configuration %s and policy %s are OK"):format(opts.config, policy_path))
    print(policyctl.compare_with_cs(cfg, policy_path))
    return 0
  end

  local lok, lerr = log.setup(cfg.log_level, args.resolve(confdir, cfg.log_file))
  if not lok then return fail(lerr) end
  if opts.daemon then
    local dok, derr2 = core.daemonize(confdir .. "/kvp.pid")
    if not dok then return fail(derr2) end
  end

  local sok, serr = dp.start()
  if not sok then
    log.error("cannot start: %s", serr)
    core.daemon_ready(false, "kvp: " .. serr)
    return fail(serr)
  end
  log.info("kvp %s started: namespace %s, listen %s, %d io threads, policy %s (hash %s, tags %s)",
    core.VERSION, cfg.namespace, cfg.listen, cfg.io_threads, policy_path, pol.hash,
    tostring(pol.hash_tags))

  local servers, cluster = conf.servers(cfg)
  local state = {
    namespace = cfg.namespace,
    listen = cfg.listen,
    -- random per process: no other connection can guess and claim it; the
    -- host/listen prefix lets the config server see a restart of the same
    -- proxy (that old process is gone: it held the port)
    proxy_id = ("%s/%s/%s"):format(core.hostname(), cfg.listen, handshake.nonce():sub(1, 16)),
    cluster_secret = cfg.cluster_secret,
    stale_table_limit = cfg.stale_table_limit,
    servers = servers,
    cluster = cluster, -- config_servers: every one equal (kvp.cslink)
    install = dp.set_table,
    on_deleted = function()
      log.warn("namespace %s was deleted on the config server: exiting", cfg.namespace)
      core.exit(0)
    end,
    on_unknown_namespace = function(msg)
      log.error("config server does not know namespace %s (%s): exiting", cfg.namespace, msg)
      io.stderr:write(("kvp: config server does not know namespace '%s'\n"):format(cfg.namespace))
      core.exit(1)
    end,
  }
  local px_ref = {}
  local function redis_password() return (px_ref.px and px_ref.px.cfg or cfg).redis_password end
  local h = health.new({
    password = redis_password,
    down_timeout = function() return (px_ref.px and px_ref.px.cfg or cfg).redis_down_timeout end,
    set_down = dp.set_backend_down,
    report = function(kind, addr)
      if state.send then state.send(false, kind, cfg.namespace, addr) end
    end,
  })
  state.health = h
  -- the replicas' staleness for replica reads (kvp.replicas; /metrics)
  state.replicas = replicas.new({ dp = dp, password = redis_password })
  state.on_replicas = function(_, map) replicas.watch(state.replicas, map) end
  state.on_table = function(t)
    core.daemon_ready(true)
    health.watch(h, btable.addresses(t))
  end
  state.workers = cfg.io_threads
  state.on_policy = function(p)
    if p then
      log.info("namespace %s: routing with its policy v%d", cfg.namespace, p.version)
    else
      log.info("namespace %s has no published policy: routing with %s", cfg.namespace, policy_path)
    end
    local why = policyctl.differs({ policy_path = policy_path }, p)
    if why then
      log.warn("the local policy file %s differs from what namespace %s routes with: %s "
        .. "(kvp --reload publishes the file)", policy_path, cfg.namespace, why)
    end
  end
  dp.on_drained(function(worker, version) cslink.drained(state, worker, version) end)
  cslink.start(state)
  loop.timer(M.STARTUP_WAIT, function()
    if state.table then return end
    local msg = ("kvp: no config server answered for namespace %s (%s) within %d s: "
      .. "cannot start without a bucket table"):format(cfg.namespace, table.concat(state.servers, ", "),
      M.STARTUP_WAIT)
    log.error("%s", msg)
    io.stderr:write(msg, "\n")
    core.daemon_ready(false, msg)
    core.exit(1)
  end)

  local px = M.control(opts.config, cfg, state, policy_path)
  px_ref.px = px
  local hhost, hport = loop.split_addr(cfg.http_listen)
  local hok, herr = httpd.serve(hhost, hport, http_api.routes(px),
    { token = function() return px.cfg.admin_token end })
  if not hok then
    local msg = "kvp: http_listen: " .. tostring(herr)
    log.error("%s", msg)
    core.daemon_ready(false, msg)
    return fail(msg)
  end

  local stopping = false
  loop.on_signal(function(signo)
    if signo == 1 then -- SIGHUP: publish the edited policy file
      loop.spawn(function()
        local v, code, msg = policyctl.reload(px, false)
        if v then log.info("SIGHUP: policy v%d published from %s", v, policy_path)
        else log.error("SIGHUP: policy %s not published (%s): %s", policy_path, tostring(code), msg) end
      end)
      return
    end
    if stopping then return end
    stopping = true
    log.info("kvp stopping (signal %d)", signo)
    -- leave the config server's known proxies (bucket moves stop waiting
    -- for this one), at most 1 s; then a clean exit: the workers close
    -- their connections and free what they hold, main returns and the
    -- runtime closes the Lua state
    loop.spawn(function()
      if state.send then
        -- nothing is routed any more, then the config server hears we leave
        cslink.fence(state, "stopping")
        local ok, err = cslink.unregister(state, 1)
        if ok then log.info("unregistered from config server %s", tostring(state.connected_to))
        else log.warn("could not unregister: %s", tostring(err)) end
      end
      dp.stop()
      loop.stop()
    end)
  end)
  loop.run()
  log.info("kvp stopped")
  return 0
end

return M
