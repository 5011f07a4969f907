-- Finish a batch of attempts of claimed jobs: record each and settle the job in arq's keys.
--
-- mode 'done':    the attempt is recorded, arq's result stored (unless '' or TTL 0), and
--                 the job's keys deleted and its id taken out of the queue: finished for good.
-- mode 'retry':   the attempt is recorded, counted in arq's try counter, and the job goes
--                 back to its ready set and the queue at the retry time, with the next
--                 attempt's payload (arq's "t").
-- mode 'release': nothing is recorded (the dead letter script did that); the job is
--                 finished for good as in 'done'.
-- A job whose lease another worker holds by now (ours ran out during an outage) is only
-- recorded: that worker settles it.
--
-- KEYS        nine per job: its attempts (list), its event record (hash), arq's queue, the
--             listener's leased set, its ready set, arq's in-progress key (the lease), job
--             key, try counter and result key
-- ARGV[1]     the lease holder (worker id)
-- ARGV[2]     TTL of the attempts lists, seconds
-- ARGV[3..]   seven per job: job id, mode, the attempt for the job's history (JSON; '' for
--             none: mode 'release', or a first try that succeeded), the
--             outcome for the event record (JSON), then
--             done/release: arq's result ('' for none), its TTL in ms, ''
--             retry: the next attempt's payload, its TTL (and the counter's) in ms, the retry time in ms
--
-- Returns the number of jobs settled (the others were only recorded).
local holder = ARGV[1]
local jobs = #KEYS / 9
local lease_keys = {}
for j = 0, jobs - 1 do
  lease_keys[j + 1] = KEYS[9 * j + 6]
end
local leases = get_many(lease_keys)
local outcomes = {} -- event record -> field, outcome, ... (several jobs of one event: one HSET)
local removed = {} -- sorted set -> ids leaving it
local gone = {} -- keys of jobs finished for good
local settled = 0
for j = 0, jobs - 1 do
  local k, a = 9 * j, 2 + 7 * j
  local id, mode = ARGV[a + 1], ARGV[a + 2]
  if ARGV[a + 3] ~= '' then
    redis.call('RPUSH', KEYS[k + 1], ARGV[a + 3])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[2])
  end
  if mode ~= 'release' then
    push(outcomes, KEYS[k + 2], 'job:' .. id)
    push(outcomes, KEYS[k + 2], ARGV[a + 4])
  end
  local held = leases[j + 1]
  if not held or held == holder then
    settled = settled + 1
    push(removed, KEYS[k + 4], id)
    if mode == 'retry' then
      redis.call('DEL', KEYS[k + 6])
      redis.call('SET', KEYS[k + 7], ARGV[a + 5], 'PX', ARGV[a + 6])
      redis.call('INCR', KEYS[k + 8]) -- the try that ended (claims read the counter, add nothing)
      redis.call('PEXPIRE', KEYS[k + 8], ARGV[a + 6])
      redis.call('ZADD', KEYS[k + 3], ARGV[a + 7], id)
      redis.call('ZADD', KEYS[k + 5], ARGV[a + 7], id)
    else
      if ARGV[a + 5] ~= '' and tonumber(ARGV[a + 6]) > 0 then
        redis.call('SET', KEYS[k + 9], ARGV[a + 5], 'PX', ARGV[a + 6])
      end
      gone[#gone + 1] = KEYS[k + 6]
      gone[#gone + 1] = KEYS[k + 7]
      gone[#gone + 1] = KEYS[k + 8]
      push(removed, KEYS[k + 3], id)
    end
  end
end
-- an event record that expired stays gone
for record, fields in pairs(outcomes) do
  if redis.call('EXISTS', record) == 1 then
    each_slice('HSET', record, fields)
  end
end
for key, ids in pairs(removed) do
  each_slice('ZREM', key, ids)
end
each_slice('DEL', nil, gone)
return settled
