-- kvp.http_api: the proxy's HTTP handlers (SPEC §4), plain functions of
-- (px, body) -> code, msg, data.
--
-- px = { cfg, state (kvp.cslink state), stats (kvp.stats), now(),
--        config_text(), save_config(text) -> ok, err, apply(cfg, changes)
--        (changes: config key -> value, see kvp.settings), request(...) ->
--        reply | nil, err (a command to the config server), metrics() -> text }
local codes = require "kv.codes"
local btable = require "kv.btable"
local stats = require "kvp.stats"
local settings = require "kvp.settings"
local policyctl = require "kvp.policyctl"

local M = {}

function M.stats_info(px)
  return codes.OK, "OK", stats.info(px.stats, px.now and px.now())
end

function M.reset_stats(px)
  stats.reset(px.stats)
  return codes.OK, "OK"
end

function M.set_config(px, body)
  local text, terr = px.config_text()
  if not text then return codes.SAVE_FAILED, "cannot read the config file: " .. tostring(terr) end
  local new_text, new_cfg, changes = settings.plan(text, px.cfg, body)
  if not new_text then return new_cfg, changes end -- code, msg
  local ok, err = px.save_config(new_text)
  if not ok then return codes.SAVE_FAILED, "cannot write the config file: " .. tostring(err) end
  px.apply(new_cfg, changes)
  return codes.OK, "OK"
end

function M.bucket_table(px)
  local t = px.state.table
  if not t then return codes.NO_NAMESPACE, "no table yet: the config server has not been reached" end
  return codes.OK, "OK", btable.to_json(t)
end

local function pattern(px, body, op)
  local p = body.pattern
  if type(p) ~= "string" or p == "" then
    return codes.BAD_PARAM, "pattern (a non-empty string) is required"
  end
  local r, err = px.request("PATTERN", op, px.cfg.namespace, p)
  if r == nil then return codes.CS_UNREACHABLE, "config server unreachable: " .. tostring(err) end
  if type(r) == "table" and r.err then
    local code, msg = r.err:match("^ERR (%d+) (.*)$")
    code = tonumber(code)
    if code and codes.by_code[code] then return code, msg end
    return codes.INTERNAL, r.err
  end
  return codes.OK, "OK"
end

function M.add_pattern(px, body) return pattern(px, body, "ADD") end
function M.del_pattern(px, body) return pattern(px, body, "DEL") end

-- POST {"force": bool}: the edited policy file, checked and published
-- (kvp.policyctl.reload).
function M.reload_policy(px, body)
  if body.force ~= nil and type(body.force) ~= "boolean" then
    return codes.BAD_PARAM, "force must be true or false"
  end
  local v, code, msg = policyctl.reload(px, body.force)
  if not v then return code, msg end
  return codes.OK, "OK", { version = v, namespace = px.cfg.namespace }
end

function M.policy(px)
  return codes.OK, "OK", policyctl.current(px)
end

function M.routes(px)
  local function h(fn) return function(body) return fn(px, body) end end
  return {
    ["/kvstore/proxy/stats_info"] = { fn = h(M.stats_info) },
    ["/kvstore/proxy/reset_stats"] = { fn = h(M.reset_stats), change = true },
    ["/kvstore/proxy/set_config"] = { fn = h(M.set_config), change = true },
    ["/kvstore/proxy/bucket_table"] = { fn = h(M.bucket_table) },
    ["/kvstore/proxy/add_pattern"] = { fn = h(M.add_pattern), change = true },
    ["/kvstore/proxy/del_pattern"] = { fn = h(M.del_pattern), change = true },
    ["/kvstore/proxy/reload_policy"] = { fn = h(M.reload_policy), change = true },
    ["/kvstore/proxy/policy"] = { fn = h(M.policy) },
    ["/metrics"] = { raw = function() return 200, px.metrics(), "text/plain; version=0.0.4" end },
  }
end

return M
