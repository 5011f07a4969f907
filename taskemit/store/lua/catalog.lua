-- Register the listeners one live worker serves in the catalog (every heartbeat), and their
-- flow control: the newest declaration of each listener's limits is the one claims enforce.
--
-- A declaration is stamped with the time its worker started and its worker id; a stamp later
-- than the stored one (or the same worker's) replaces it. Either way the winning declaration's
-- limits are to be written to the listener's flow hash (KeySpace.flow: what claim.lua reads), so
-- the limits come back if that hash is lost; a changed rate starts from a full bucket. That hash is
-- on the listener's queue's tag (on a Redis Cluster, another slot than these keys'): this script
-- returns what to write there, and the caller writes it (flow_limits.lua).
--
-- KEYS[1]   the catalog (hash: listener name -> description JSON)
-- KEYS[2]   when each listener was last registered (sorted set, ms)
-- KEYS[3]   live registrations (sorted set: 'listener\nworker id' -> expiry, ms)
-- KEYS[4]   the newest flow declaration of each listener (hash: name -> '<started ms>\n<worker
--           id>\n<declaration JSON>\n<concurrency>\n<rate count>\n<rate ms>\n<burst>\n<per key>')
-- ARGV[1]   now, ms
-- ARGV[2]   how long this registration lives unless renewed, ms (three heartbeats); 0: declare
--           the flow control alone (a worker's first, before its first claim: it registers the
--           listeners with its first heartbeat)
-- ARGV[3]   how long a listener no live worker registers stays described, ms
-- ARGV[4]   the worker id
-- ARGV[5]   when the worker started, ms (its declarations' stamp)
-- ARGV[6..] per listener: name, description, then its declaration: JSON ('{}': no limits),
--           concurrency, rate count, rate period (ms), burst, per key ('1'); '' for unset
--
-- Expired registrations and forgotten listeners are removed on the way. Returns {registered,
-- conflicts, limits}: conflicts lists {name, the other worker, its declaration JSON, 'kept' (it is
-- newer: its declaration applies) or 'replaced' (this worker's replaced it)} per listener whose
-- stored declaration differs from this worker's; limits, per listener in ARGV order, what its flow
-- hash gets: {'1' if its bucket is to be refilled (a changed rate) else '0', concurrency, rate
-- count, rate period (ms), burst, per key} ('' for unset: the field is deleted).
local now = tonumber(ARGV[1])
local worker, started = ARGV[4], tonumber(ARGV[5])
local FIELDS = {'concurrency', 'rate_count', 'rate_ms', 'burst', 'rate_key'}
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local forgotten = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, name in ipairs(forgotten) do
  redis.call('HDEL', KEYS[1], name)
  redis.call('HDEL', KEYS[4], name)
  redis.call('ZREM', KEYS[2], name)
end

local function parse(stamp)
  local parts = {}
  for part in string.gmatch(stamp .. '\n', '([^\n]*)\n') do
    parts[#parts + 1] = part
  end
  return parts
end

local n, conflicts, limits = 0, {}, {}
for i = 6, #ARGV, 8 do
  local name = ARGV[i]
  local refill = '0'
  if tonumber(ARGV[2]) > 0 then
    redis.call('HSET', KEYS[1], name, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], now, name)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), name .. '\n' .. worker)
    n = n + 1
  end
  local mine = {tostring(started), worker, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
    ARGV[i + 7]}
  local stored = redis.call('HGET', KEYS[4], name)
  local winner = mine
  if stored then
    local theirs = parse(stored)
    local newer = tonumber(theirs[1]) > started or (tonumber(theirs[1]) == started and theirs[2] > worker)
    if newer then
      winner = theirs
    end
    if theirs[2] ~= worker and theirs[3] ~= mine[3] then
      conflicts[#conflicts + 1] = {name, theirs[2], theirs[3], newer and 'kept' or 'replaced'}
    end
    if not newer and theirs[3] ~= mine[3] then -- a changed rate starts from a full bucket
      refill = '1'
    end
  end
  if winner == mine then
    redis.call('HSET', KEYS[4], name, table.concat(mine, '\n'))
  end
  local written = {refill}
  for f = 1, #FIELDS do
    written[f + 1] = winner[3 + f] or ''
  end
  limits[#limits + 1] = written
end
return {n, conflicts, limits}
