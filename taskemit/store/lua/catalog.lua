-- Register the listeners one live worker serves in the catalog (every heartbeat).
--
-- KEYS[1]   the catalog (hash: listener name -> description JSON)
-- KEYS[2]   when each listener was last registered (sorted set, ms)
-- KEYS[3]   live registrations (sorted set: 'listener\nworker id' -> expiry, ms)
-- ARGV[1]   now, ms
-- ARGV[2]   how long this registration lives unless renewed, ms (three heartbeats)
-- ARGV[3]   how long a listener no live worker registers stays described, ms
-- ARGV[4]   the worker id
-- ARGV[5..] listener name, description; one pair per listener
--
-- Expired registrations and forgotten listeners are removed on the way. Returns the number of
-- listeners registered.
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local forgotten = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, name in ipairs(forgotten) do
  redis.call('HDEL', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
local n = 0
for i = 5, #ARGV, 2 do
  local name = ARGV[i]
  redis.call('HSET', KEYS[1], name, ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now, name)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), name .. '\n' .. ARGV[4])
  n = n + 1
end
return n
