-- Add a worker's tallies (and a sample of the gauges) to the history's time buckets: one hash
-- per bucket, which expires at a time the caller computed from the retention settings.
--
-- KEYS[i]   a bucket (hash)
-- ARGV      per key, in order: expire at (epoch seconds), then the number of increments, of
--           maximums and of plain values that follow, then those field, value pairs:
--           increments (HINCRBY), maximums (kept when larger), plain values (HSET)
local a = 1
for i = 1, #KEYS do
  local key = KEYS[i]
  local expire_at = ARGV[a]
  local increments, maximums, values = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  for _ = 1, increments do
    redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  for _ = 1, maximums do
    local old = tonumber(redis.call('HGET', key, ARGV[a]))
    if old == nil or tonumber(ARGV[a + 1]) > old then
      redis.call('HSET', key, ARGV[a], ARGV[a + 1])
    end
    a = a + 2
  end
  if values > 0 then
    redis.call('HSET', key, unpack(ARGV, a, a + 2 * values - 1))
    a = a + 2 * values
  end
  redis.call('EXPIREAT', key, expire_at)
end
return #KEYS
