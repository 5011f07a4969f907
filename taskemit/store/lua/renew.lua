-- Renew the leases a worker holds on its running jobs, each by the token of the claim that
-- took it (fencing: a lease another claim holds now is not touched).
--
-- KEYS[1]   the namespace's sorted set of abort requests
-- KEYS[2..] two keys per job: arq's in-progress key (the lease), the listener's leased set
-- ARGV[1]   now, ms
-- ARGV[2]   lease, ms
-- ARGV[3..] per job: its id, its claim's token (in KEYS order)
--
-- Returns {lost, aborted}: the ids of the jobs whose lease the token no longer holds (it ran
-- out, or another claim took the job), and of those whose abort was asked for (taken off the
-- requests: the worker cancels them now).
local lost, aborted = {}, {}
local expiry = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 1, (#KEYS - 1) / 2 do
  local lease, leased = KEYS[2 * i], KEYS[2 * i + 1]
  local id, token = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ARGV[2])
    redis.call('ZADD', leased, 'XX', expiry, id)
  else
    lost[#lost + 1] = id
  end
  if redis.call('ZREM', KEYS[1], id) == 1 then
    aborted[#aborted + 1] = id
  end
end
return {lost, aborted}
