-- An event record lists another job for one of its listeners (a replayed dead letter's new job,
-- on a Redis Cluster, where replay.lua runs on the job's tag and the record is on the control
-- tag). A record that expired stays gone.
--
-- KEYS[1]   the event record (hash)
-- ARGV[1]   the listener
-- ARGV[2]   its job id now
local listed = redis.call('HGET', KEYS[1], 'jobs')
if not listed then
  return 0
end
local jobs = cjson.decode(listed)
jobs[ARGV[1]] = ARGV[2]
redis.call('HSET', KEYS[1], 'jobs', cjson.encode(jobs))
return 1
