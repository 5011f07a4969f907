-- Record one finished attempt of a listener job: append it to the job's attempt history,
-- count it, and set the job's outcome on its event record (unless that record has expired:
-- writing to it would recreate it without a TTL).
--
-- When the attempt failed and will be retried, two more keys and arguments keep the job
-- alive until its retry runs: the payload is rewritten with the next attempt number (arq's
-- "t") and both it and arq's try counter get a TTL past the retry time, so a backoff longer
-- than arq's default expiry still reaches its last attempt. (The caller then raises arq's
-- Retry, which moves the job's score to the retry time.)
--
-- KEYS[1]   the job's attempts (list)
-- KEYS[2]   the event record (hash)
-- KEYS[3..4], ARGV[5..8]: counters, see count_outcome in lib_stats.lua
-- KEYS[5]   retry only: arq's job payload key
-- KEYS[6]   retry only: arq's try counter key
-- ARGV[1]   the attempt, JSON ('' for none: a first try that succeeded keeps no history)
-- ARGV[2]   TTL of the attempts list, seconds
-- ARGV[3]   outcome field on the event record
-- ARGV[4]   the outcome, JSON
-- ARGV[9]   retry only: the payload for the next attempt
-- ARGV[10]  retry only: TTL of payload and counter, ms
count_outcome(KEYS[3], KEYS[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
if #KEYS == 6 then
  redis.call('SET', KEYS[5], ARGV[9], 'PX', ARGV[10])
  redis.call('PEXPIRE', KEYS[6], ARGV[10])
end
return 1
