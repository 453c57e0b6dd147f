-- kvcs.metrics: the config server's /metrics (Prometheus text).
local prom = require "kv.prom"
local btable = require "kv.btable"
local store = require "kvcs.store"

local M = {}

local function count(t)
  local n = 0
  for _ in pairs(t or {}) do n = n + 1 end
  return n
end

function M.text(cs, now)
  local m = prom.new()
  m:add("kvcs_is_master", "gauge", "1 on the master config server, 0 on a slave", cs.is_master)
  m:add("kvcs_support_ha", "gauge", "1 when automatic fail-over is on", cs.support_ha)
  m:add("kvcs_uptime_seconds", "gauge", "Seconds since the config server started",
    math.floor((now or os.time()) - (cs.started or os.time())))
  if cs.leader then -- store = "etcd" (issue 14)
    m:add("kvcs_is_leader", "gauge", "1 while this config server leads (store = etcd)", cs.is_master)
    m:add("kvcs_leader_elections_total", "counter", "Times this config server became the leader",
      cs.leader.elections)
    local s = cs.etcd and cs.etcd.stats or {}
    local sum, n = 0, 0
    for _, r in ipairs(s.rtts or {}) do sum, n = sum + r, n + 1 end
    m:add("kvcs_etcd_rtt_seconds", "gauge", "Mean round trip of the last etcd requests", n > 0 and sum / n or 0)
    m:add("kvcs_etcd_requests_total", "counter", "Requests sent to etcd", s.requests or 0)
    m:add("kvcs_etcd_errors_total", "counter", "etcd requests that failed", s.errors or 0)
    m:add("kvcs_etcd_endpoint_switches_total", "counter", "Moves to another etcd member", s.switches or 0)
    local w = cs.store.watcher
    if w and s.revision then
      m:add("kvcs_etcd_watch_lag_revisions", "gauge",
        "Revisions etcd has that this config server's watch has not delivered yet",
        math.max(0, (s.revision or 0) - ((w.revision or 1) - 1)))
    end
  end
  local names = store.list(cs.store)
  m:add("kvcs_namespaces", "gauge", "Namespaces with a table", #names)
  m:add("kvcs_slaves_connected", "gauge", "Slave config servers connected to this one",
    count(cs.peers and cs.peers.slaves))
  local h = cs.ha
  if h then
    m:add("kvcs_ha_failovers_total", "counter", "Masters replaced by a promoted replica (data_store)", h.failovers)
    m:add("kvcs_ha_removals_total", "counter", "Dead masters removed from a table (cache)", h.removals)
    m:add("kvcs_ha_reattached_total", "counter", "Old masters made replicas of their replacement", h.reattached)
    m:add("kvcs_ha_old_masters_waiting", "gauge", "Replaced masters not answering yet (to be re-attached)",
      count(h.watch))
  end
  for _, ns in ipairs(names) do
    local t = store.get(cs.store, ns)
    local l = { namespace = ns }
    m:add("kvcs_table_version", "gauge", "Version of the namespace's bucket table", t.version, l)
    m:add("kvcs_table_buckets", "gauge", "Buckets of the namespace", t.bucket_count, l)
    m:add("kvcs_table_masters", "gauge", "Redis masters owning buckets", #btable.servers(t), l)
    m:add("kvcs_table_migrating_buckets", "gauge", "Buckets being migrated", count(t.migrating), l)
    m:add("kvcs_table_patterns", "gauge", "Key-rewrite patterns", #t.patterns, l)
    m:add("kvcs_proxies_connected", "gauge", "Proxies of the namespace connected now",
      count(cs.peers and cs.peers.proxies[ns]), l)
    m:add("kvcs_proxies_known", "gauge", "Proxies that registered and were not removed",
      count(cs.cluster and require("kvcs.cluster").known(cs, ns) or cs.peers and cs.peers.known[ns]), l)
    if h then
      -- with etcd: the votes of every kvcs's proxies (kvcs.cluster)
      local votes = cs.cluster and require("kvcs.cluster").votes(cs, ns) or h.votes[ns]
      for _, a in ipairs(btable.addresses(t)) do
        local la = { namespace = ns, master = a }
        m:add("kvcs_ha_replicas_known", "gauge", "Replicas of the master learned by INFO replication",
          #(h.replicas[a] or {}), la)
        m:add("kvcs_ha_down_votes", "gauge", "Connected proxies reporting the master down now",
          count(votes and votes[a]), la)
      end
    end
  end
  return m:text()
end

return M
