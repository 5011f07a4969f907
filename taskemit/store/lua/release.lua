-- Give back jobs a stopping worker holds but will not finish: they become ready at once
-- for another worker, at their place in the queue, and the interrupted attempt is not counted.
--
-- KEYS      five keys per job: arq's in-progress key, try counter, the listener's leased
--           set, its ready set, arq's queue
-- ARGV[1]   the lease holder (worker id)
-- ARGV[2]   now, ms
-- ARGV[3..] the job ids, in KEYS order
--
-- Returns the number of jobs released.
local released = 0
for i = 1, #KEYS / 5 do
  local k = 5 * i - 4
  local id = ARGV[2 + i]
  if redis.call('GET', KEYS[k]) == ARGV[1] then
    redis.call('DEL', KEYS[k])
    if tonumber(redis.call('GET', KEYS[k + 1]) or '0') > 0 then
      redis.call('DECR', KEYS[k + 1])
    end
    redis.call('ZREM', KEYS[k + 2], id)
    redis.call('ZADD', KEYS[k + 3], redis.call('ZSCORE', KEYS[k + 4], id) or ARGV[2], id)
    released = released + 1
  end
end
return released
