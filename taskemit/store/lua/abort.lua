-- Abort one job: a waiting job is settled as aborted at once; a running one is asked to stop
-- (its worker cancels it at its next lease renewal, and settles it). The caller also tells a
-- stock arq worker that may run it (arq's own abort set, outside the namespace's slot).
--
-- KEYS[1]   arq's in-progress key (the lease)
-- KEYS[2]   arq's job key
-- KEYS[3]   arq's queue
-- KEYS[4]   the listener's ready set
-- KEYS[5]   the hash of the event's outcomes on the job's tag (KeySpace.outcomes: on one Redis,
--           the event record)
-- KEYS[6]   arq's result key
-- KEYS[7]   arq's try counter
-- KEYS[8]   the sorted set of abort requests of the job's tag
-- KEYS[9]   the listener's delayed set
-- KEYS[10]  the listener's hash of job flow records
-- KEYS[11]  the listener's sorted set of ordering keys
-- ARGV[1]   job id
-- ARGV[2]   the outcome for the event record, JSON
-- ARGV[3]   arq's result ('' for none)
-- ARGV[4]   result TTL, ms
-- ARGV[5]   now, ms
-- ARGV[6]   the prefix of the listener's groups' lists
--
-- A waiting job under flow control leaves its ordering key's group (the next job of the key
-- becomes ready when it was the first).
-- Returns 'aborted', 'requested' (it is running) or 'missing' (finished, or never existed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
  return 'requested'
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 'missing'
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
release_flow(KEYS[10], KEYS[11], ARGV[6], KEYS[4], KEYS[3], ARGV[1], tonumber(ARGV[5]))
redis.call('DEL', KEYS[2], KEYS[7])
if ARGV[3] ~= '' and tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[4])
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[5], 'job:' .. ARGV[1], ARGV[2])
end
return 'aborted'
