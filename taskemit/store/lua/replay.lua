-- Replay a dead letter: enqueue a new arq job for it (fresh attempt count), carry its
-- attempt history over with a "replayed" entry, point its event record at the new job, and
-- remove the dead letter. Returns 0 if the dead letter no longer exists.
--
-- KEYS[1]   the dead letter (hash)
-- KEYS[2..4] dead letter indexes: all, by listener, by event id
-- KEYS[5]   the queue (sorted set)
-- KEYS[6]   the new job's payload key
-- KEYS[7]   the new job's attempts (list)
-- KEYS[8]   the hash of the event's outcomes on the dead job's tag (KeySpace.outcomes): on one
--           Redis the event record, whose jobs then list the new job in the old one's place (on
--           a Redis Cluster the caller has record_job.lua do that on the record's tag)
-- KEYS[9]   the listener's ready set on the queue (see claim.lua)
-- KEYS[10]  the listener's hash of job flow records
-- KEYS[11]  the listener's delayed set on the queue
-- ARGV[1]   old job id
-- ARGV[2]   new job id
-- ARGV[3]   new payload
-- ARGV[4]   score (ms) = now
-- ARGV[5]   payload TTL, ms
-- ARGV[6]   the "replayed" history entry, JSON
-- ARGV[7]   attempts list TTL, seconds
-- ARGV[8]   listener name
-- ARGV[9]   the queue's wake channel
-- ARGV[10]  the prefix of the listener's groups' lists
--
-- A dead job that holds its ordering key (lib_flow.lua, mode 'O') hands its place, first of its
-- key, to the new job, with its priority; the key's later jobs go on once the new one finished.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local history = cjson.decode(redis.call('HGET', KEYS[1], 'attempts') or '[]')
for _, entry in ipairs(history) do
  redis.call('RPUSH', KEYS[7], cjson.encode(entry))
end
redis.call('RPUSH', KEYS[7], ARGV[6])
redis.call('EXPIRE', KEYS[7], ARGV[7])
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[5])
local ready_at = tonumber(ARGV[4])
local record = redis.call('HGET', KEYS[10], ARGV[1])
if record then
  local boost, mode, group = job_flow(record)
  redis.call('HDEL', KEYS[10], ARGV[1])
  redis.call('ZREM', KEYS[11], ARGV[1])
  local list = ARGV[10] .. group
  if mode == 'O' and redis.call('LINDEX', list, 0) == ARGV[1] then
    redis.call('LSET', list, 0, ARGV[2])
    redis.call('HSET', KEYS[10], ARGV[2], record)
    ready_at = ready_at - boost
  end
end
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[9], ready_at, ARGV[2])
local listed = redis.call('HGET', KEYS[8], 'jobs')
if listed then -- the record itself (one Redis); a queue tag's outcomes hash lists no jobs
  local jobs = cjson.decode(listed)
  jobs[ARGV[8]] = ARGV[2]
  redis.call('HSET', KEYS[8], 'jobs', cjson.encode(jobs))
end
redis.call('DEL', KEYS[1])
for i = 2, 4 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('PUBLISH', ARGV[9], ARGV[8])
return 1
