-- Shared by the scripts that finish an attempt: per-listener counters, a duration histogram
-- and per-minute counts for rates. Every key is passed in KEYS by the calling script.
--
-- stats_key   hash: succeeded, failed, retried, dead, duration_sum, duration_count, le:<bucket>
-- rate_key    hash for the current minute: the same outcome counters, expiring
-- names_key   set of listener names that have counters
local function count_outcome(stats_key, rate_key, names_key, listener, outcomes, duration, bucket, rate_ttl)
  for outcome in string.gmatch(outcomes, '[^,]+') do
    redis.call('HINCRBY', stats_key, outcome, 1)
    redis.call('HINCRBY', rate_key, outcome, 1)
  end
  if duration ~= '' then
    redis.call('HINCRBYFLOAT', stats_key, 'duration_sum', duration)
    redis.call('HINCRBY', stats_key, 'duration_count', 1)
    redis.call('HINCRBY', stats_key, 'le:' .. bucket, 1)
  end
  redis.call('EXPIRE', rate_key, rate_ttl)
  redis.call('SADD', names_key, listener)
end
