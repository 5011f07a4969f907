-- Give back jobs a stopping worker holds but will not finish: they become ready at once
-- for another worker, at their place in the queue, and the interrupted attempt is not counted
-- (arq's try counter counts tries that ended: it is left as it is). Only a lease that still has
-- the token of the claim that took the job is given back.
--
-- KEYS      four keys per job: arq's in-progress key, the listener's leased set, its ready
--           set, arq's queue
-- ARGV[1]   now, ms
-- ARGV[2..] per job: its id, its claim's token (in KEYS order)
--
-- Returns the number of jobs released.
local released = 0
for i = 1, #KEYS / 4 do
  local k = 4 * i - 3
  local id, token = ARGV[2 * i], ARGV[2 * i + 1]
  if redis.call('GET', KEYS[k]) == token then
    redis.call('DEL', KEYS[k])
    redis.call('ZREM', KEYS[k + 1], id)
    redis.call('ZADD', KEYS[k + 2], redis.call('ZSCORE', KEYS[k + 3], id) or ARGV[1], id)
    released = released + 1
  end
end
return released
