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
-- KEYS[3..]   eight per route (a listener on a queue) of these jobs: the listener's counters, its
--             flow hash, its hash of job flow records, its sorted set of keys, its delayed set,
--             arq's queue, the listener's leased set, its ready set;
--             then the event records (on a queue's own tag: its outcome hashes) the outcomes go to;
--             then per job: arq's in-progress key (the lease) and job key, then the keys its flags
--             name, in this order: 'a' its attempts (list), 't' arq's try counter, 'r' arq's result;
--             then three per dead job (in order): the dead letter, the index by listener, the
--             index by event id
-- ARGV[1]     TTL of the attempts lists, seconds
-- ARGV[2]     the number of jobs
-- ARGV[3]     now, ms
-- ARGV[4]     dead letter retention, seconds
-- ARGV[5]     the number of routes; their listeners' names follow, then the prefix of each
--             one's groups' lists
-- then        the number of event records
-- then per job: job id, the claim's token, mode, flags, its route (1-based), its event record
--             (1-based), the attempt for the job's history (JSON; '' for none), the outcome for the
--             event record (JSON), its counted outcomes ('a,b'), the attempt's duration (seconds,
--             '' if it did not run), its histogram bucket, then
--             retry: the next attempt's payload, its TTL (and the counter's) in ms, the retry time in ms
--             dead: the number of the dead letter's field/value pairs
--             and with flag 'r' (done, dead): arq's result and its TTL in ms
-- then per dead job: the dead letter's field/value pairs
-- (Only what a job needs is sent: a first try's job has no try counter to delete, and no
-- history or arq result unless asked for; the keys its route shares are sent once.)
--
-- Returns {applied, refused}: how many attempts were applied, and {job id, 'taken' | 'gone'}
-- per refused one.
local jobs = tonumber(ARGV[2])
local now, retention = ARGV[3], ARGV[4]
local routes = tonumber(ARGV[5])
local first_record = 3 + 8 * routes

-- a route's counters, flow hash, job flow records, keys, delayed set, arq queue, leased and ready sets
local function route_keys(r)
  local k = 3 + 8 * (r - 1)
  return KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6], KEYS[k + 7]
end

local function stats_key_of(r)
  return KEYS[3 + 8 * (r - 1)]
end

local function name_of(r)
  return ARGV[5 + r]
end

-- where each job's keys and arguments start, its route, and each dead job's keys and fields
local at_key, at_arg, route_of, dead_keys, dead_fields = {}, {}, {}, {}, {}
do
  local k, a = first_record + tonumber(ARGV[6 + 2 * routes]), 7 + 2 * routes
  local dead = {}
  for j = 1, jobs do
    at_key[j], at_arg[j], route_of[j] = k, a, tonumber(ARGV[a + 4])
    local mode, flags = ARGV[a + 2], ARGV[a + 3]
    k = k + 2 + #flags
    a = a + 11
    if mode == 'retry' then
      a = a + 3
    elseif mode == 'dead' then
      dead[#dead + 1] = j
      a = a + 1
    end
    if string.find(flags, 'r', 1, true) then
      a = a + 2
    end
  end
  for _, j in ipairs(dead) do
    dead_keys[j], dead_fields[j] = k, a
    k = k + 3
    a = a + 2 * tonumber(ARGV[at_arg[j] + 11])
  end
end

-- job j's key named by ``flag`` (see above), or nil
local function flagged(j, flag)
  local at = string.find(ARGV[at_arg[j] + 3], flag, 1, true)
  return at and KEYS[at_key[j] + 1 + at]
end

-- 1. which attempts still hold their job
local lease_keys = {}
for j = 1, jobs do
  lease_keys[j] = KEYS[at_key[j]]
end
local leases = get_many(lease_keys)
local applies, refused, fenced = {}, {}, {}
for j = 1, jobs do
  local a = at_arg[j]
  local id, token, held = ARGV[a], ARGV[a + 1], leases[j]
  if held == token then
    applies[j] = true
  elseif not held and redis.call('ZSCORE', select(7, route_keys(route_of[j])), id)
      and redis.call('EXISTS', KEYS[at_key[j] + 1]) == 1 then
    applies[j] = true -- the lease ran out, but no claim took the job since: it is still ours to settle
  elseif held then
    refused[#refused + 1] = {id, 'taken'}
    fenced[route_of[j]] = (fenced[route_of[j]] or 0) + 1
  else
    refused[#refused + 1] = {id, 'gone'}
  end
end

-- 2. out of the leased sets first (see above)
local removed = {} -- sorted set -> ids leaving it
for j = 1, jobs do
  if applies[j] then
    push(removed, select(7, route_keys(route_of[j])), ARGV[at_arg[j]])
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
local has_flow = {} -- route -> whether any of its jobs has a flow record
for j = 1, jobs do
  if applies[j] then
    applied = applied + 1
    local a = at_arg[j]
    local id, mode, r = ARGV[a], ARGV[a + 2], route_of[j]
    local _, flow, jobs_key, keys_key, delayed, queue, _, ready = route_keys(r)
    local record = KEYS[first_record + tonumber(ARGV[a + 5]) - 1]
    local lease, job = KEYS[at_key[j]], KEYS[at_key[j] + 1]
    local attempt = ARGV[a + 6]
    if mode == 'dead' then
      local d, f = dead_keys[j], dead_fields[j]
      local fields = {}
      for n = f, f + 2 * tonumber(ARGV[a + 11]) - 1 do
        fields[#fields + 1] = ARGV[n]
      end
      park_dead(KEYS[d], {KEYS[1], KEYS[d + 1], KEYS[d + 2]}, flagged(j, 'a'), id, now, retention, attempt, ARGV[1],
        fields)
    elseif attempt ~= '' then
      local attempts = flagged(j, 'a')
      redis.call('RPUSH', attempts, attempt)
      redis.call('EXPIRE', attempts, ARGV[1])
    end
    push(outcomes, record, 'job:' .. id)
    push(outcomes, record, ARGV[a + 7])
    tally(tallies, r, ARGV[a + 8], ARGV[a + 9], ARGV[a + 10])
    gone[#gone + 1] = lease
    -- flow control: the job's flow record, if it has one
    if has_flow[r] == nil then
      has_flow[r] = redis.call('EXISTS', jobs_key) == 1
    end
    local flow_record = has_flow[r] and redis.call('HGET', jobs_key, id)
    if mode == 'retry' then
      local try = flagged(j, 't')
      redis.call('SET', job, ARGV[a + 11], 'PX', ARGV[a + 12])
      redis.call('INCR', try) -- the try that ended (claims read the counter, add nothing)
      redis.call('PEXPIRE', try, ARGV[a + 12])
      redis.call('ZADD', queue, ARGV[a + 13], id)
      if flow_record and job_flow(flow_record) > 0 then -- ahead of its run time once due: not before
        redis.call('ZADD', delayed, ARGV[a + 13], id)
      else
        redis.call('ZADD', ready, ARGV[a + 13], id)
      end
    else
      if flow_record then
        local _, flow_mode = job_flow(flow_record)
        if mode == 'dead' and flow_mode == 'O' then -- it keeps its key while its dead letter lasts
          redis.call('ZADD', delayed, tonumber(now) + 1000 * tonumber(retention), id)
        elseif release_flow(jobs_key, keys_key, ARGV[5 + routes + r], ready, queue, id, tonumber(now)) then
          redis.call('HSET', flow, 'wanted', '1')
        end
      end
      local result = flagged(j, 'r')
      if result then
        local at = a + (mode == 'dead' and 12 or 11)
        redis.call('SET', result, ARGV[at], 'PX', ARGV[at + 1])
      end
      gone[#gone + 1] = job
      local try = flagged(j, 't')
      if try then
        gone[#gone + 1] = try
      end
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
for r, n in pairs(fenced) do
  redis.call('HINCRBY', stats_key_of(r), 'fenced', n)
end
return {applied, refused}
