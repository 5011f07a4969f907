-- After a failed attempt that will be retried: record it (as record_attempt.lua does) and
-- keep the job alive until its retry runs. The payload is rewritten with the next attempt
-- number (arq's "t") and both it and arq's try counter get a TTL past the retry time, so a
-- backoff longer than arq's default expiry still reaches its last attempt. The caller then
-- raises arq's Retry, which moves the job's score to the retry time.
--
-- KEYS[1]   the job's attempts (list)
-- KEYS[2]   the event record (hash)
-- KEYS[3]   arq's job payload key
-- KEYS[4]   arq's try counter key
-- ARGV[1..4] as record_attempt.lua
-- ARGV[5]   the payload for the next attempt
-- ARGV[6]   TTL of payload and counter, ms
-- KEYS[5..7], ARGV[7..11]: counters, see count_outcome in lib_stats.lua
count_outcome(KEYS[5], KEYS[6], KEYS[7], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return 1
