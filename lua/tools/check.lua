-- tools.check: expectations, matching and printing for test_all.
--
-- An expectation is either a plain value in kv.resp's convention, compared
-- exactly (a string is a bulk, a number an integer, check.null a nil reply,
-- { status = "OK" }, { err = "ERR ..." }, an array { n = 2, "a", check.null }
-- whose elements may themselves be expectations), or a matcher made by one
-- of the functions below (check.ok_value(), check.err_prefix("ERR x"), ...).
--
--   check.match(expect, actual) -> true | false, why
--   check.describe(expect)      -> text of what was expected
--   check.show(value)           -> text of a reply
--   check.label(args)           -> text of a command ("SET k v")
--   check.reporter(color)       -> r with r:pass(group, what, actual) and
--                                  r:fail(group, what, expected_text, actual_text, why)
local resp = require "kv.resp"

local M = {}

local null = resp.null
M.null = null

local Matcher = {}
Matcher.__index = Matcher

local function matcher(desc, fn)
  return setmetatable({ desc = desc, fn = fn }, Matcher)
end
M.matcher = matcher

local function is_matcher(v) return getmetatable(v) == Matcher end

local function kind(v) return resp.kind(v) end

--------------------------------------------------------------------------------
-- Showing values
--------------------------------------------------------------------------------

local MAX_STR = 60    -- bytes of a string shown before "..."
local MAX_ELEMS = 12  -- array elements shown

local function escape(s)
  return (s:gsub('[%c"\\\128-\255]', function(ch)
    if ch == "\n" then return "\\n" end
    if ch == "\r" then return "\\r" end
    if ch == "\t" then return "\\t" end
    if ch == '"' then return '\\"' end
    if ch == "\\" then return "\\\\" end
    return string.format("\\x%02x", ch:byte())
  end))
end

local function quote(s)
  if #s > MAX_STR then
    return '"' .. escape(s:sub(1, MAX_STR)) .. '..." (' .. #s .. " bytes)"
  end
  return '"' .. escape(s) .. '"'
end
M.quote = quote

local function num(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  return tostring(n)
end

local show

local function show_array(t, elem)
  local n = t.n or #t
  local parts = {}
  for i = 1, math.min(n, MAX_ELEMS) do parts[i] = elem(t[i]) end
  local s = "[" .. table.concat(parts, ", ")
  if n > MAX_ELEMS then s = s .. ", ... (" .. n .. " elements)" end
  return s .. "]"
end

function show(v)
  local k = kind(v)
  if k == "bulk" then return quote(v) end
  if k == "integer" then return num(v) end
  if k == "null" then return "(nil)" end
  if k == "status" then return v.status end
  if k == "error" then return "(error) " .. v.err end
  if k == "array" then return show_array(v, show) end
  return "<" .. type(v) .. " " .. tostring(v) .. ">"
end
M.show = show

local function describe(e)
  if is_matcher(e) then return e.desc end
  if kind(e) == "array" then return show_array(e, describe) end
  return show(e)
end
M.describe = describe

-- A command as text: plain arguments as they are, others quoted.
function M.label(args)
  local n = args.n or #args
  local parts = {}
  for i = 1, n do
    local a = tostring(args[i])
    if i > 10 and n > 11 then
      parts[#parts + 1] = "... (" .. n .. " arguments)"
      break
    end
    if a ~= "" and #a <= MAX_STR and not a:find('[%c%s"\\\128-\255]') then
      parts[#parts + 1] = a
    else
      parts[#parts + 1] = quote(a)
    end
  end
  return table.concat(parts, " ")
end

--------------------------------------------------------------------------------
-- Matching
--------------------------------------------------------------------------------

local function an(w) return (w:find("^[aeiou]") and "an " or "a ") .. w end

local function match(e, a)
  if is_matcher(e) then return e.fn(a) end
  local ke, ka = kind(e), kind(a)
  if ke ~= ka then
    return false, an(ka or type(a)) .. " reply instead of " .. an(ke)
  end
  if ke == "bulk" or ke == "integer" then return e == a end
  if ke == "null" then return true end
  if ke == "status" then return e.status == a.status end
  if ke == "error" then return e.err == a.err end
  -- arrays
  local ne, na = e.n or #e, a.n
  if ne ~= na then return false, na .. " elements instead of " .. ne end
  for i = 1, ne do
    local ok, why = match(e[i], a[i])
    if not ok then
      return false, "element " .. i .. " differs" .. (why and (": " .. why) or "")
    end
  end
  return true
end
M.match = match

--------------------------------------------------------------------------------
-- Matchers
--------------------------------------------------------------------------------

function M.status(s) return { status = s } end
M.OK = { status = "OK" }
function M.err(text) return { err = text } end

-- A reply that is neither nil nor an error ("expect ok" of the old tool).
function M.ok_value()
  return matcher("a non-nil, non-error reply", function(a)
    local k = kind(a)
    return k ~= nil and k ~= "null" and k ~= "error"
  end)
end

function M.not_error()
  return matcher("any reply but an error", function(a)
    local k = kind(a)
    return k ~= nil and k ~= "error"
  end)
end

function M.any_error()
  return matcher("an error reply", function(a) return kind(a) == "error" end)
end

-- An error whose text is `text`, or starts with `text` followed by ", "
-- (Redis appends ", with args beginning with: ..." to some messages).
function M.err_prefix(text)
  return matcher("(error) " .. text .. "[, ...]", function(a)
    if kind(a) ~= "error" then return false end
    return a.err == text or a.err:sub(1, #text + 2) == text .. ", "
  end)
end

function M.int_between(lo, hi)
  return matcher("an integer in [" .. lo .. ", " .. hi .. "]", function(a)
    return type(a) == "number" and a >= lo and a <= hi
  end)
end

function M.one_of(list)
  local shown = {}
  for i, v in ipairs(list) do shown[i] = describe(v) end
  return matcher("one of " .. table.concat(shown, ", "), function(a)
    for _, v in ipairs(list) do
      if match(v, a) then return true end
    end
    return false
  end)
end

-- An array of n elements; `fn(a)` may check more and return false, why.
function M.array_len(n, desc, fn)
  return matcher("an array of " .. n .. " elements" .. (desc and (", " .. desc) or ""), function(a)
    if kind(a) ~= "array" then return false, "not an array" end
    if a.n ~= n then return false, a.n .. " elements" end
    if fn then return fn(a) end
    return true
  end)
end

function M.pred(desc, fn) return matcher(desc, fn) end

--------------------------------------------------------------------------------
-- Printing
--------------------------------------------------------------------------------

local GREEN, RED, YELLOW, RESET = "\27[32m", "\27[31m", "\27[33m", "\27[0m"
local COLOURS = { green = GREEN, red = RED, yellow = YELLOW }

local Reporter = {}
Reporter.__index = Reporter

function M.reporter(color)
  return setmetatable({ color = color, count = 0, groups = {}, order = {} }, Reporter)
end

function Reporter:line(text, colour)
  if self.color and colour then text = colour .. text .. RESET end
  io.stdout:write(text, "\n")
end

function Reporter:pass(group, what, actual_text)
  self.count = self.count + 1
  if not self.groups[group] then
    self.groups[group] = 0
    self.order[#self.order + 1] = group
  end
  self.groups[group] = self.groups[group] + 1
  self:line("[" .. group .. "] " .. what .. " → " .. actual_text, GREEN)
end

function Reporter:fail(group, what, expected_text, actual_text, why)
  self:line("[" .. group .. "] " .. what .. " → FAILED", RED)
  self:line("    expected: " .. expected_text, RED)
  self:line("    actual:   " .. actual_text, RED)
  if why then self:line("    (" .. why .. ")", RED) end
  io.stdout:flush()
end

function Reporter:plain(text, colour)
  self:line(text, colour and (COLOURS[colour] or RED))
end

-- "basic 2, string 30, ..." in the order the groups first passed a check.
function Reporter:summary()
  local parts = {}
  for i, g in ipairs(self.order) do parts[i] = g .. " " .. self.groups[g] end
  return table.concat(parts, ", ")
end

return M
