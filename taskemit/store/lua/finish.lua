-- Finish a batch of attempts of claimed jobs: settle each job, record it, count it, and park
-- the dead ones as dead letters, all in one atomic step.
--
-- mode 'done':  arq's result is stored (unless '' or TTL 0), the job's keys are deleted and
--               its id taken out of the queue: finished for good (complete, or aborted).
-- mode 'retry': the attempt is counted in arq's try counter, and the job goes back to its
--               ready set and the queue at the retry time, with the next attempt's payload
--               (arq's "t").
-- mode 'dead':  the job is parked as a dead letter with its whole history (lib_dead.lua) and
--               finished for good as in 'done' (arq's result says it failed).
-- Each applied attempt goes to the job's history (when given), its outcome to the event record
-- (unless that expired), and its counts to the listener's counters.
--
-- Flow control (lib_flow.lua): a job that finished for good gives its ordering key to the next
-- job of the key (which becomes ready), unless it died holding it ('O': it keeps the key until
-- its dead letter is replayed, purged, or expires: then it goes through the delayed set as a
-- job that is gone); a retry with a priority boost waits in the delayed set until it is due.
-- A job becoming ready marks its listener's flow hash ("wanted": see claim.lua).
--
-- Fencing: an attempt is applied only while its claim still holds the job: the lease (arq's
-- in-progress key) has the claim's token, or the lease ran out and no claim took the job since
-- (it is still in the leased set, and still exists). Otherwise it is refused and nothing of it is
-- written: another worker took the job over (the lease has another token; counted as 'fenced'
-- on the listener), or this very finish was applied before and is sent again after a lost reply.
--
-- Under maxmemory, Redis refuses a script's first write of new data; the first writes here
-- take the jobs out of their leased sets (no new data), so a finish, which frees memory, runs.
--
-- KEYS[1]     index of all dead letters
-- KEYS[2]     the set of listener names that have counters
-- KEYS[3..]   nine per job: its attempts (list), its event record (hash), arq's queue, the
--             listener's leased set, its ready set, arq's in-progress key (the lease), job
--             key, try counter and result key;
--             then three per dead job (in order): the dead letter, the index by listener,
--             the index by event id;
--             then five per listener counted: its counters, its flow hash, its hash of job flow
--             records, its sorted set of keys, its delayed set
-- ARGV[1]     TTL of the attempts lists, seconds
-- ARGV[2]     the number of jobs
-- ARGV[3]     now, ms
-- ARGV[4]     dead letter retention, seconds
-- ARGV[5]     the number of listeners counted; their names follow, then the prefix of each
--             one's groups' lists
-- then twelve per job: job id, the claim's token, mode, the attempt for the job's history
--             (JSON; '' for none), the outcome for the event record (JSON), then
--             done: arq's result ('' for none), its TTL in ms, ''
--             retry: the next attempt's payload, its TTL (and the counter's) in ms, the retry time in ms
--             dead: arq's result ('' for none), its TTL in ms, the number of the dead letter's
--                   field/value pairs
--             then the listener (its index among those counted, 1-based), its counted outcomes
--             ('a,b'), the attempt's duration (seconds, '' if it did not run), its histogram bucket
-- then per dead job: the dead letter's field/value pairs
--
-- Returns {applied, refused}: how many attempts were applied, and {job id, 'taken' | 'gone'}
-- per refused one.
local jobs = tonumber(ARGV[2])
local now, retention = ARGV[3], ARGV[4]
local listeners = tonumber(ARGV[5])
local first_job_arg = 6 + 2 * listeners
local first_stats_key = 3 + 9 * jobs -- moved past the dead jobs' keys below
local first_dead_arg = first_job_arg + 12 * jobs

-- where each dead job's keys and fields are
local dead_keys, dead_fields = {}, {}
do
  local field_arg = first_dead_arg
  for j = 0, jobs - 1 do
    local a = first_job_arg + 12 * j
    if ARGV[a + 2] == 'dead' then
      dead_keys[j] = first_stats_key
      dead_fields[j] = field_arg
      first_stats_key = first_stats_key + 3
      field_arg = field_arg + 2 * tonumber(ARGV[a + 7])
    end
  end
end

local function stats_key_of(index)
  return KEYS[first_stats_key + 5 * (index - 1)]
end

-- a listener's flow hash, its job flow records, its keys, its delayed set, its groups' prefix
local function flow_keys_of(index)
  local k = first_stats_key + 5 * (index - 1)
  return KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[5 + listeners + index]
end

local function name_of(index)
  return ARGV[5 + index]
end

-- 1. which attempts still hold their job
local lease_keys = {}
for j = 0, jobs - 1 do
  lease_keys[j + 1] = KEYS[3 + 9 * j + 5]
end
local leases = get_many(lease_keys)
local applies, refused, fenced = {}, {}, {}
for j = 0, jobs - 1 do
  local k, a = 3 + 9 * j, first_job_arg + 12 * j
  local id, token, held = ARGV[a], ARGV[a + 1], leases[j + 1]
  if held == token then
    applies[j] = true
  elseif not held and redis.call('ZSCORE', KEYS[k + 3], id) and redis.call('EXISTS', KEYS[k + 6]) == 1 then
    applies[j] = true -- the lease ran out, but no claim took the job since: it is still ours to settle
  elseif held then
    refused[#refused + 1] = {id, 'taken'}
    local index = tonumber(ARGV[a + 8])
    fenced[index] = (fenced[index] or 0) + 1
  else
    refused[#refused + 1] = {id, 'gone'}
  end
end

-- 2. out of the leased sets first (see above)
local removed = {} -- sorted set -> ids leaving it
for j = 0, jobs - 1 do
  if applies[j] then
    push(removed, KEYS[3 + 9 * j + 3], ARGV[first_job_arg + 12 * j])
  end
end
for key, ids in pairs(removed) do
  each_slice('ZREM', key, ids)
end

-- 3. settle, record, count
removed = {}
local outcomes = {} -- event record -> field, outcome, ... (several jobs of one event: one HSET)
local gone = {} -- keys of jobs finished for good
local tallies = {}
local applied = 0
local has_flow = {} -- listener index -> whether any of its jobs has a flow record
for j = 0, jobs - 1 do
  if applies[j] then
    applied = applied + 1
    local k, a = 3 + 9 * j, first_job_arg + 12 * j
    local attempts, record, queue, ready = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 4]
    local lease, job, try, result = KEYS[k + 5], KEYS[k + 6], KEYS[k + 7], KEYS[k + 8]
    local id, mode = ARGV[a], ARGV[a + 2]
    if mode == 'dead' then
      local d, f = dead_keys[j], dead_fields[j]
      local fields = {}
      for n = f, f + 2 * tonumber(ARGV[a + 7]) - 1 do
        fields[#fields + 1] = ARGV[n]
      end
      park_dead(KEYS[d], {KEYS[1], KEYS[d + 1], KEYS[d + 2]}, attempts, id, now, retention, ARGV[a + 3], ARGV[1],
        fields)
    elseif ARGV[a + 3] ~= '' then
      redis.call('RPUSH', attempts, ARGV[a + 3])
      redis.call('EXPIRE', attempts, ARGV[1])
    end
    push(outcomes, record, 'job:' .. id)
    push(outcomes, record, ARGV[a + 4])
    local index = tonumber(ARGV[a + 8])
    tally(tallies, index, ARGV[a + 9], ARGV[a + 10], ARGV[a + 11])
    gone[#gone + 1] = lease
    -- flow control: the job's flow record, if it has one
    local flow, jobs_key, keys_key, delayed, group_prefix = flow_keys_of(index)
    if has_flow[index] == nil then
      has_flow[index] = redis.call('EXISTS', jobs_key) == 1
    end
    local flow_record = has_flow[index] and redis.call('HGET', jobs_key, id)
    if mode == 'retry' then
      redis.call('SET', job, ARGV[a + 5], 'PX', ARGV[a + 6])
      redis.call('INCR', try) -- the try that ended (claims read the counter, add nothing)
      redis.call('PEXPIRE', try, ARGV[a + 6])
      redis.call('ZADD', queue, ARGV[a + 7], id)
      if flow_record and job_flow(flow_record) > 0 then -- ahead of its run time once due: not before
        redis.call('ZADD', delayed, ARGV[a + 7], id)
      else
        redis.call('ZADD', ready, ARGV[a + 7], id)
      end
    else
      if flow_record then
        local _, flow_mode = job_flow(flow_record)
        if mode == 'dead' and flow_mode == 'O' then -- it keeps its key while its dead letter lasts
          redis.call('ZADD', delayed, tonumber(now) + 1000 * tonumber(retention), id)
        elseif release_flow(jobs_key, keys_key, group_prefix, ready, queue, id, tonumber(now)) then
          redis.call('HSET', flow, 'wanted', '1')
        end
      end
      if ARGV[a + 5] ~= '' and tonumber(ARGV[a + 6]) > 0 then
        redis.call('SET', result, ARGV[a + 5], 'PX', ARGV[a + 6])
      end
      gone[#gone + 1] = job
      gone[#gone + 1] = try
      push(removed, queue, id)
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
count_tallies(tallies, stats_key_of, name_of, KEYS[2])
for index, n in pairs(fenced) do
  redis.call('HINCRBY', stats_key_of(index), 'fenced', n)
end
return {applied, refused}
