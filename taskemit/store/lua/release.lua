-- Give back jobs a stopping worker holds but will not finish: they become ready at once
-- for another worker, at their place in the queue (their run time less their priority boost),
-- and the interrupted attempt is not counted (arq's try counter counts tries that ended: it is
-- left as it is). Only a lease that still has the token of the claim that took the job is
-- given back. The workers of each listener given back are woken (its slots are free again).
--
-- KEYS      five keys per job: arq's in-progress key, the listener's leased set, its ready
--           set, arq's queue, the listener's hash of job flow records
-- ARGV[1]   now, ms
-- ARGV[2..] per job: its id, its claim's token, its queue's wake channel, its listener (in KEYS order)
--
-- Returns the number of jobs released.
local released = 0
local now = tonumber(ARGV[1])
local woken = {}
for i = 1, #KEYS / 5 do
  local k, a = 5 * i - 4, 4 * i - 2
  local id, token = ARGV[a], ARGV[a + 1]
  if redis.call('GET', KEYS[k]) == token then
    redis.call('DEL', KEYS[k])
    redis.call('ZREM', KEYS[k + 1], id)
    redis.call('ZADD', KEYS[k + 2], ready_score(KEYS[k + 3], id, boost_of(KEYS[k + 4], id), now), id)
    released = released + 1
    local wake = ARGV[a + 2] .. '\n' .. ARGV[a + 3]
    if not woken[wake] then
      woken[wake] = true
      redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3])
    end
  end
end
return released
