-- Shared by the scripts that handle many jobs per call: one command for many keys or members
-- instead of one per job (in slices, as Lua's unpack takes a few thousand values at most).
local SLICE = 1000

-- command(key, values...) over ``values``, a slice at a time (key nil: command(values...))
local function each_slice(command, key, values)
  for first = 1, #values, SLICE do
    local last = math.min(first + SLICE - 1, #values)
    if key then
      redis.call(command, key, unpack(values, first, last))
    else
      redis.call(command, unpack(values, first, last))
    end
  end
end

-- the values of ``keys`` (false for a missing key), MGET a slice at a time
local function get_many(keys)
  local values = {}
  for first = 1, #keys, SLICE do
    local slice = redis.call('MGET', unpack(keys, first, math.min(first + SLICE - 1, #keys)))
    for n = 1, #slice do
      values[#values + 1] = slice[n]
    end
  end
  return values
end

-- appends ``value`` to the list kept under ``name`` in ``lists`` (made on first use)
local function push(lists, name, value)
  local list = lists[name]
  if list == nil then
    list = {}
    lists[name] = list
  end
  list[#list + 1] = value
end
