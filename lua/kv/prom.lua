-- kv.prom: Prometheus text exposition (format 0.0.4) for /metrics.
--
--   local m = prom.new()
--   m:add("kvcs_table_version", "gauge", "Version of the namespace's table", 3, {namespace = "test"})
--   m:text() -> "# HELP ...\n# TYPE ...\nname{labels} value\n..."
-- Samples of one metric are grouped under one HELP/TYPE, in insertion order.
local M = {}

local Metrics = {}
Metrics.__index = Metrics

function M.new()
  return setmetatable({ order = {}, by_name = {} }, Metrics)
end

local function label_text(labels)
  if not labels then return "" end
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = tostring(labels[k]):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"')
    parts[i] = ('%s="%s"'):format(k, v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function Metrics:add(name, kind, help, value, labels)
  local m = self.by_name[name]
  if not m then
    m = { name = name, kind = kind, help = help, samples = {} }
    self.by_name[name] = m
    self.order[#self.order + 1] = m
  end
  if type(value) == "boolean" then value = value and 1 or 0 end
  m.samples[#m.samples + 1] = name .. label_text(labels) .. " " .. tostring(value)
end

function Metrics:text()
  local out = {}
  for _, m in ipairs(self.order) do
    out[#out + 1] = "# HELP " .. m.name .. " " .. m.help
    out[#out + 1] = "# TYPE " .. m.name .. " " .. m.kind
    for _, s in ipairs(m.samples) do out[#out + 1] = s end
  end
  return table.concat(out, "\n") .. "\n"
end

M.CONTENT_TYPE = "text/plain; version=0.0.4"

return M
