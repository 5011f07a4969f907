-- Renew the leases a worker holds on its running jobs.
--
-- KEYS      two keys per job: arq's in-progress key (the lease), the listener's leased set
-- ARGV[1]   the lease holder (worker id)
-- ARGV[2]   now, ms
-- ARGV[3]   lease, ms
-- ARGV[4]   arq's sorted set of abort requests
-- ARGV[5..] the job ids, in KEYS order
--
-- Returns {lost, aborted}: the ids of the jobs whose lease this worker no longer holds, and of
-- those whose abort was asked for (taken off the requests: the worker cancels them now).
local lost, aborted = {}, {}
local expiry = tonumber(ARGV[2]) + tonumber(ARGV[3])
for i = 1, #KEYS / 2 do
  local lease, leased, id = KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 + i]
  if redis.call('GET', lease) == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[3])
    redis.call('ZADD', leased, 'XX', expiry, id)
  else
    lost[#lost + 1] = id
  end
  if redis.call('ZREM', ARGV[4], id) == 1 then
    aborted[#aborted + 1] = id
  end
end
return {lost, aborted}
