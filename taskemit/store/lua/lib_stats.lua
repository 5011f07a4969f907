-- Shared by the scripts that finish an attempt: per-listener counters and a duration
-- histogram. Every key is passed in KEYS by the calling script. (Recent rates come from the
-- history's time buckets, which workers write once per interval: history.lua.)
--
-- stats_key   hash: succeeded, failed, retried, dead, duration_sum, duration_count, le:<bucket>
-- unused_key, unused_ttl: no longer used (a per-minute hash for rates and its TTL); callers
--             keep passing them so their KEYS and ARGV keep their places
-- names_key   set of listener names that have counters
local function count_outcome(stats_key, unused_key, names_key, listener, outcomes, duration, bucket, unused_ttl)
  for outcome in string.gmatch(outcomes, '[^,]+') do
    redis.call('HINCRBY', stats_key, outcome, 1)
  end
  if duration ~= '' then
    redis.call('HINCRBYFLOAT', stats_key, 'duration_sum', duration)
    redis.call('HINCRBY', stats_key, 'duration_count', 1)
    redis.call('HINCRBY', stats_key, 'le:' .. bucket, 1)
  end
  redis.call('SADD', names_key, listener)
end
