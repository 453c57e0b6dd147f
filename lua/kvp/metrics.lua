-- kvp.metrics: the proxy's /metrics (Prometheus text).
local prom = require "kv.prom"
local stats = require "kvp.stats"

local M = {}

function M.text(px)
  local m = prom.new()
  local info = stats.info(px.stats, px.now and px.now())
  m:add("kvp_clients", "gauge", "Client connections now", info.client_count)
  m:add("kvp_commands_total", "counter", "Commands executed for clients since the last reset_stats",
    info.total_cmd_count)
  m:add("kvp_slow_commands_total", "counter", "Commands slower than slow_cmd_time ms",
    info.slow_cmd_count)
  m:add("kvp_qps", "gauge", "Commands per second over the last window", info.qps)
  m:add("kvp_average_rt_ms", "gauge", "Mean response time over the last window (ms)", info.average_rt)
  local names = {}
  for name in pairs(info.cmds) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    m:add("kvp_command_total", "counter", "Commands executed, by command", info.cmds[name],
      { cmd = name })
  end
  local t = px.state.table
  m:add("kvp_table_version", "gauge", "Version of the bucket table in use (0: none yet)",
    t and t.version or 0)
  m:add("kvp_config_server_connected", "gauge", "1 while registered with a config server",
    px.state.connected_to ~= nil)
  if px.state.replicas then
    for _, l in ipairs(require("kvp.replicas").lags(px.state.replicas)) do
      m:add("kvp_replica_lag_ms", "gauge",
        "Staleness bound of a replica of a master, by replication offsets (ms; -1: down, not read from)",
        l.lag_ms, { replica = l.replica, master = l.master })
    end
  end
  return m:text()
end

return M
