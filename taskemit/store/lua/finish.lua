-- Finish one attempt of a claimed job: record it and settle the job in arq's keys.
--
-- mode 'done':    the attempt is recorded, arq's result stored (unless '' or TTL 0), and
--                 the job's keys deleted and its id taken out of the queue: finished for good.
-- mode 'retry':   the attempt is recorded and the job goes back to its ready set and the
--                 queue at the retry time, with the next attempt's payload (arq's "t").
-- mode 'release': nothing is recorded (the dead letter script did that); the job is
--                 finished for good as in 'done'.
-- A job whose lease another worker holds by now (ours ran out during an outage) is only
-- recorded: that worker settles it.
--
-- KEYS[1]   the job's attempts (list)
-- KEYS[2]   the event record (hash)
-- KEYS[3]   arq's queue
-- KEYS[4]   the listener's leased set
-- KEYS[5]   the listener's ready set
-- KEYS[6]   arq's in-progress key (the lease)
-- KEYS[7]   arq's job key
-- KEYS[8]   arq's try counter
-- KEYS[9]   arq's result key
-- ARGV[1]   job id
-- ARGV[2]   mode
-- ARGV[3]   the lease holder (worker id)
-- ARGV[4]   the attempt, JSON ('' in mode 'release')
-- ARGV[5]   TTL of the attempts list, seconds
-- ARGV[6]   outcome field on the event record
-- ARGV[7]   the outcome, JSON
-- ARGV[8]   done/release: arq's result ('' for none); retry: the next attempt's payload
-- ARGV[9]   done/release: result TTL, ms; retry: payload and counter TTL, ms
-- ARGV[10]  retry: the retry time, ms
local id = ARGV[1]
local mode = ARGV[2]
if mode ~= 'release' then
  redis.call('RPUSH', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
  end
end
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[3] then
  return 0
end
redis.call('ZREM', KEYS[4], id)
if mode == 'retry' then
  redis.call('DEL', KEYS[6])
  redis.call('SET', KEYS[7], ARGV[8], 'PX', ARGV[9])
  redis.call('PEXPIRE', KEYS[8], ARGV[9])
  redis.call('ZADD', KEYS[3], ARGV[10], id)
  redis.call('ZADD', KEYS[5], ARGV[10], id)
  return 1
end
if ARGV[8] ~= '' and tonumber(ARGV[9]) > 0 then
  redis.call('SET', KEYS[9], ARGV[8], 'PX', ARGV[9])
end
redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[5], id)
return 1
