-- Add a batch of finished attempts of one listener to its counters (see lib_stats.lua for
-- the single-attempt form): outcome counts, the duration sum, count and histogram.
--
-- KEYS[1]   the listener's counters (hash)
-- KEYS[2]   the set of listener names that have counters
-- ARGV[1]   listener name
-- ARGV[2]   sum of the durations, seconds
-- ARGV[3]   number of durations
-- ARGV[4]   number of outcome pairs that follow
-- ARGV[5..] outcome, count pairs; then 'le:<bucket>', count pairs
local pairs_end = 4 + 2 * tonumber(ARGV[4])
for i = 5, pairs_end, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if tonumber(ARGV[3]) > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'duration_sum', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'duration_count', ARGV[3])
  for i = pairs_end + 1, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
