-- Store one emitted event atomically: one arq job per listener and the event record.
--
-- KEYS[1]      the arq queue (sorted set of job ids, scored by run time in ms)
-- KEYS[2]      the event record (hash)
-- KEYS[3..]    one arq job key per listener
-- ARGV[1]      score: when the jobs may run, ms since the epoch
-- ARGV[2]      job key TTL in ms (arq's expiry: score - now + expires_extra_ms)
-- ARGV[3]      event record TTL in seconds
-- ARGV[4]      event id
-- ARGV[5]      emitted at, ms since the epoch
-- ARGV[6]      JSON object {listener name: job id}
-- ARGV[7..]    job id, payload; one pair per job key, in KEYS order
local jobs = #KEYS - 2
for i = 1, jobs do
  local job_id = ARGV[5 + 2 * i]
  redis.call('SET', KEYS[2 + i], ARGV[6 + 2 * i], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[1], job_id)
end
redis.call('HSET', KEYS[2], 'event', ARGV[4], 'emitted_at', ARGV[5], 'jobs', ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return jobs
