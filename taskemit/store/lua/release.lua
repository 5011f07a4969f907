-- Give back jobs a stopping worker holds but will not finish: they become ready at once
-- for another worker, and the interrupted attempt is not counted.
--
-- KEYS      four keys per job: arq's in-progress key, try counter, the listener's leased
--           set, its ready set
-- ARGV[1]   the lease holder (worker id)
-- ARGV[2]   now, ms
-- ARGV[3..] the job ids, in KEYS order
--
-- Returns the number of jobs released.
local released = 0
for i = 1, #KEYS / 4 do
  local k = 4 * i - 3
  local id = ARGV[2 + i]
  if redis.call('GET', KEYS[k]) == ARGV[1] then
    redis.call('DEL', KEYS[k])
    if tonumber(redis.call('GET', KEYS[k + 1]) or '0') > 0 then
      redis.call('DECR', KEYS[k + 1])
    end
    redis.call('ZREM', KEYS[k + 2], id)
    redis.call('ZADD', KEYS[k + 3], ARGV[2], id)
    released = released + 1
  end
end
return released
