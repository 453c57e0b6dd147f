-- kv.args: the command line shared by kvp and kvcs: -c FILE [-d] [-t] [-v] [-h],
-- and kvp's --reload [--force].
--
--   args.parse(arg, name) -> opts | nil, err
--     opts = { config = path, daemon = bool, test = bool, version = bool, help = bool,
--              reload = bool, force = bool }
--   args.usage(name) -> text
--   args.dirname(path), args.resolve(base_dir, path) -> absolute-ish path
local M = {}

function M.usage(name)
  return ("usage: %s -c FILE [-d] [-t]\n"
    .. "  -c FILE  configuration file (Lua syntax, one name = value per line)\n"
    .. "  -d       run as a daemon; write %s.pid beside the configuration\n"
    .. "  -t       check the configuration%s, print what is wrong, and exit\n"
    .. "  -v       print the version and exit\n"
    .. "  -h       print this help and exit\n"
    .. (name == "kvp" and ("  --reload [--force]  publish the edited policy file to the namespace (through\n"
      .. "           the running proxy of this configuration) and print the result\n") or "")
    .. (name == "kvcs" and ("  --import-files DIR  copy a file store's tables (DIR: its table_dir) into the etcd\n"
      .. "           of this configuration (store = \"etcd\"); namespaces already there are kept\n") or ""))
    :format(name, name, name == "kvp" and " and the policy" or "")
end

function M.parse(arg, name)
  local o = {}
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "-c" then
      if not arg[i + 1] then return nil, "-c needs a file name" end
      o.config = arg[i + 1]
      i = i + 1
    elseif a == "-d" then o.daemon = true
    elseif a == "-t" then o.test = true
    elseif a == "-v" then o.version = true
    elseif a == "-h" or a == "--help" then o.help = true
    elseif name == "kvp" and a == "--reload" then o.reload = true
    elseif name == "kvp" and a == "--force" then o.force = true
    elseif name == "kvcs" and a == "--import-files" then
      if not arg[i + 1] then return nil, "--import-files needs a table directory" end
      o.import_files = arg[i + 1]
      i = i + 1
    else
      return nil, ("unknown argument '%s'"):format(a)
    end
    i = i + 1
  end
  if not (o.help or o.version) and not o.config then
    return nil, "a configuration file is needed (-c FILE)"
  end
  if o.force and not o.reload then return nil, "--force goes with --reload" end
  return o
end

function M.dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

function M.resolve(base, path)
  if path == nil or path == "" or path:sub(1, 1) == "/" then return path end
  return base .. "/" .. path
end

return M
