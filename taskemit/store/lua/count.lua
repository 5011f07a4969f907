-- Add a batch of finished attempts of one listener to its counters (see lib_stats.lua for
-- the single-attempt form): outcome counts, the duration sum, count and histogram, and the
-- per-minute counts for rates.
--
-- KEYS[1]   the listener's counters (hash)
-- KEYS[2]   its counters for the current minute (hash, expiring)
-- KEYS[3]   the set of listener names that have counters
-- ARGV[1]   listener name
-- ARGV[2]   TTL of the per-minute hash, seconds
-- ARGV[3]   sum of the durations, seconds
-- ARGV[4]   number of durations
-- ARGV[5]   number of outcome pairs that follow
-- ARGV[6..] outcome, count pairs; then 'le:<bucket>', count pairs
local pairs_end = 5 + 2 * tonumber(ARGV[5])
for i = 6, pairs_end, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'duration_sum', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'duration_count', ARGV[4])
  for i = pairs_end + 1, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
