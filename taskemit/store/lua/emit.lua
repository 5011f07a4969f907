-- Store one emitted event atomically: one arq job per listener and the event record.
--
-- KEYS[1]      the arq queue (sorted set of job ids, scored by run time in ms)
-- KEYS[2]      the event record (hash)
-- KEYS[3]      the index of events (sorted set of event uuids, scored by emit time in ms)
-- KEYS[4]      the index of this event id's events (the same, for one event id)
-- KEYS[5]      emitted-events counters (hash: event id -> count)
-- KEYS[6..]    one arq job key per listener
-- ARGV[1]      score: when the jobs may run, ms since the epoch
-- ARGV[2]      job key TTL in ms (arq's expiry: score - now + expires_extra_ms)
-- ARGV[3]      event record TTL in seconds
-- ARGV[4]      event id
-- ARGV[5]      emitted at, ms since the epoch
-- ARGV[6]      JSON object {listener name: job id}
-- ARGV[7]      event uuid
-- ARGV[8]      '1': store nothing if this event uuid is already recorded (exactly-once emits)
-- ARGV[9..]    job id, payload; one pair per job key, in KEYS order
--
-- Returns the number of jobs stored (0 when ARGV[8] made it a no-op).
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local jobs = #KEYS - 5
for i = 1, jobs do
  local job_id = ARGV[7 + 2 * i]
  redis.call('SET', KEYS[5 + i], ARGV[8 + 2 * i], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[1], job_id)
end
redis.call('HSET', KEYS[2], 'event', ARGV[4], 'emitted_at', ARGV[5], 'jobs', ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[3])
-- the index forgets events whose records have expired, so it never outgrows the retention
local horizon = '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[3]) * 1000)
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', horizon)
end
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
return jobs
