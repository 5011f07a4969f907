-- Record one finished attempt of a listener job: append it to the job's attempt history and
-- set the job's outcome on its event record (unless that record has expired: writing to it
-- would recreate it without a TTL).
--
-- KEYS[1]   the job's attempts (list)
-- KEYS[2]   the event record (hash)
-- ARGV[1]   the attempt, JSON
-- ARGV[2]   TTL of the attempts list, seconds
-- ARGV[3]   outcome field on the event record
-- ARGV[4]   the outcome, JSON
-- KEYS[3..5], ARGV[5..9]: counters, see count_outcome in lib_stats.lua
count_outcome(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
return 1
