-- kvcs.store: the namespaces' tables and their files in table_dir.
--
-- One file per namespace, named after it, holding kv.btable's JSON. Every
-- write is atomic (temp + fsync + rename, done by fs.write); a file that fails
-- validation at start stops the server with its name and fault, and is never
-- deleted. Plain functions over a plain table; file access goes through the
-- injected fs so specs run without the C runtime:
--   fs = { write(path, data) -> ok, err;  read(path) -> data | nil, err;
--          list(dir) -> names | nil, err;  remove(path) -> ok, err;
--          mkdir(dir) -> ok, err }
--
--   store.new(dir, fs)        -> st
--   store.load_all(st)        -> true | nil, err
--   store.get(st, ns)         -> t | nil
--   store.list(st)            -> sorted namespace names
--   store.put(st, t)          -> true | nil, err   (file first, then memory;
--                                with store = "etcd", kvcs.estore makes st
--                                remote: an etcd transaction, which yields)
--   store.delete(st, ns)      -> true | nil, err
--   store.owner_of(st, addr)  -> namespace using addr (owner or migration dst) | nil
--   store.give_lineages(st)   -> { namespace, ... } | nil, err: every table from
--                                a file older than lineages (kv.btable) is saved
--                                again with a new one, version + 1 (a master
--                                does this at start; slaves copy it)
local btable = require "kv.btable"
local names = require "kv.names"

local M = {}

function M.new(dir, fs)
  return { dir = dir, fs = fs, tables = {} }
end

local function path_of(st, ns)
  return st.dir .. "/" .. ns
end

function M.load_all(st)
  local ok, err = st.fs.mkdir(st.dir)
  if not ok then return nil, err end
  local list, lerr = st.fs.list(st.dir)
  if not list then return nil, lerr end
  table.sort(list)
  for _, name in ipairs(list) do
    if name:find("%.tmp%.%d+$") then
      -- a write interrupted by a crash: the real file is intact
    else
      local file = path_of(st, name)
      if not names.valid_namespace(name) then
        return nil, ("table file %s: '%s' is not a valid namespace name"):format(file, name)
      end
      local text, rerr = st.fs.read(file)
      if not text then return nil, ("table file %s: %s"):format(file, tostring(rerr)) end
      local t, derr = btable.decode(text, name)
      if not t then return nil, ("table file %s: %s"):format(file, derr) end
      st.tables[name] = t
    end
  end
  return true
end

function M.give_lineages(st)
  local done = {}
  for _, ns in ipairs(M.list(st)) do
    local t = st.tables[ns]
    if not t.lineage then
      local ok, err = M.put(st, btable.with_lineage(t))
      if not ok then return nil, ("table %s: %s"):format(ns, tostring(err)) end
      done[#done + 1] = ns
    end
  end
  return done
end

function M.get(st, ns)
  return st.tables[ns]
end

function M.list(st)
  local out = {}
  for ns in pairs(st.tables) do out[#out + 1] = ns end
  table.sort(out)
  return out
end

function M.put(st, t)
  if st.remote then return st.remote.put(st, t) end -- etcd (kvcs.estore)
  local ok, err = st.fs.write(path_of(st, t.namespace), btable.encode(t))
  if not ok then return nil, err end
  st.tables[t.namespace] = t
  return true
end

function M.delete(st, ns)
  if st.remote then return st.remote.delete(st, ns) end
  if not st.tables[ns] then return true end
  local ok, err = st.fs.remove(path_of(st, ns))
  if not ok then return nil, err end
  st.tables[ns] = nil
  return true
end

function M.owner_of(st, addr)
  for ns, t in pairs(st.tables) do
    for _, a in ipairs(btable.addresses(t)) do
      if a == addr then return ns end
    end
  end
  return nil
end

-- The fs of a running server (kv.core); specs build their own.
function M.real_fs()
  local core = require "kv.core"
  return {
    write = core.write_file_atomic,
    read = function(path)
      local f, err = io.open(path, "rb")
      if not f then return nil, err end
      local s = f:read("*a")
      f:close()
      return s
    end,
    list = core.list_dir,
    remove = function(path)
      local ok, err = os.remove(path)
      if not ok then return nil, err end
      return true
    end,
    mkdir = core.mkdir,
  }
end

return M
