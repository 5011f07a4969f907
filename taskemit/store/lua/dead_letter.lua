-- Park a job that will not be tried again: the dead letter keeps its payload and its whole
-- attempt history, indexed by time, listener and event id; the indexes forget entries past
-- the retention so they never outgrow it.
--
-- KEYS[1]   the dead letter (hash)
-- KEYS[2]   index of all dead letters (sorted set)
-- KEYS[3]   index by listener (sorted set)
-- KEYS[4]   index by event id (sorted set)
-- KEYS[5]   the job's attempts (list)
-- KEYS[6]   the event record (hash)
-- ARGV[1]   job id
-- ARGV[2]   died at, ms
-- ARGV[3]   retention, seconds
-- ARGV[4]   the final attempt, JSON ('' when the job never ran)
-- ARGV[5]   attempts list TTL, seconds
-- ARGV[6]   outcome field on the event record
-- ARGV[7]   the outcome, JSON
-- ARGV[8..12] counters (with KEYS[7..9]), see count_outcome in lib_stats.lua
-- ARGV[13..] field, value pairs of the dead letter
count_outcome(KEYS[7], KEYS[8], KEYS[9], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
if ARGV[4] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[4])
  redis.call('EXPIRE', KEYS[5], ARGV[5])
end
local attempts = redis.call('LRANGE', KEYS[5], 0, -1)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'attempts', '[' .. table.concat(attempts, ',') .. ']', unpack(ARGV, 13))
redis.call('EXPIRE', KEYS[1], ARGV[3])
local horizon = '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3]) * 1000)
for i = 2, 4 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', horizon)
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
end
return 1
