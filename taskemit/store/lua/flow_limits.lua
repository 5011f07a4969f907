-- Write a listener's limits, as catalog.lua chose them (its newest declaration), to its flow hash
-- (KeySpace.flow, on the listener's queue's tag: what claim.lua reads).
--
-- KEYS[1]   the listener's flow hash
-- ARGV[1]   '1': its rate changed, its bucket starts full (the stored tokens are dropped)
-- ARGV[2..6] concurrency, rate count, rate period (ms), burst, per key ('' for unset: deleted)
local FIELDS = {'concurrency', 'rate_count', 'rate_ms', 'burst', 'rate_key'}
if ARGV[1] == '1' then
  redis.call('HDEL', KEYS[1], 'tokens', 'tokens_at')
end
for f, field in ipairs(FIELDS) do
  local value = ARGV[f + 1] or ''
  if value == '' then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, value)
  end
end
return 1
