-- Store one emitted event atomically: one arq job per listener and the event record.
-- The caller trims the event indexes to the retention and wakes the workers (PUBLISH on the
-- queues' wake channels) once per batch of events, after these calls.
--
-- KEYS[1]      the event record (hash)
-- KEYS[2]      the index of events (sorted set of event uuids, scored by emit time in ms)
-- KEYS[3]      the index of this event id's events (the same, for one event id)
-- KEYS[4]      emitted-events counters (hash: event id -> count)
-- KEYS[5..]    three keys per job: arq's job key, the arq queue (sorted set of job ids by
--              run time, ms) and the listener's ready set on that queue (the same scores)
-- ARGV[1]      score: when the jobs may run, ms since the epoch
-- ARGV[2]      job key TTL in ms (arq's expiry: score - now + expires_extra_ms)
-- ARGV[3]      event record TTL in seconds
-- ARGV[4]      event id
-- ARGV[5]      emitted at, ms since the epoch
-- ARGV[6]      JSON object {listener name: job id}
-- ARGV[7]      event uuid
-- ARGV[8]      '1': store nothing if this event uuid is already recorded (exactly-once emits)
-- ARGV[9]      JSON object {listener name: queue key} when a listener is not on the default
--              queue, else ''
-- ARGV[10]     the uuid of the event whose listener emitted this one (its cause), else ''
-- ARGV[11..]   job id, payload; one pair per job, in KEYS order
--
-- Returns the number of jobs stored (0 when ARGV[8] made it a no-op).
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local jobs = (#KEYS - 4) / 3
for i = 1, jobs do
  local job_id = ARGV[9 + 2 * i]
  local k = 2 + 3 * i
  redis.call('SET', KEYS[k], ARGV[10 + 2 * i], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[k + 1], ARGV[1], job_id)
  redis.call('ZADD', KEYS[k + 2], ARGV[1], job_id)
end
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'event', ARGV[4], 'emitted_at', ARGV[5], 'jobs', ARGV[6], 'queues', ARGV[9])
else
  redis.call('HSET', KEYS[1], 'event', ARGV[4], 'emitted_at', ARGV[5], 'jobs', ARGV[6])
end
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'cause', ARGV[10])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[7])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
return jobs
