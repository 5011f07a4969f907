-- Claim up to N due jobs for one worker, in one call: only jobs of the listeners it runs, and
-- only as many as their flow control allows.
--
-- Each listener has, on its queue, a ready set (jobs no worker holds, by the time they may run
-- less their priority boost), a leased set (jobs a worker holds, by lease expiry) and a delayed
-- set (jobs that go to the ready set later, by when: see KeySpace.delayed). arq's queue keeps
-- every job as well, so stock arq workers and arq's Job API still see them; the lease is arq's
-- in-progress key, so a stock arq worker leaves a claimed job alone, and the other way round.
--
-- The lease's value is the claim's token: a worker's finish, renewal or release carries it,
-- and finish.lua, renew.lua and release.lua refuse a holder whose token is not the lease's
-- (fencing: a worker whose lease ran out and was taken over cannot settle the job).
--
-- A call can be sent again with the same token when its reply was lost: the receipt (KEYS[1],
-- kept for a lease) lists what it handed out, and the second call hands out the same jobs
-- again (those still held by the token) instead of claiming more, so a lost reply never
-- leaves claimed jobs to run out their leases.
--
-- arq's try counter holds the tries that ended: a claim reads it (this try is one more) and
-- writes nothing; a retry (finish.lua) and a lease that ran out (below: its worker stopped
-- mid-try) each add one. A stock arq worker adds one as it starts a try, so either counts a
-- try once.
--
-- Flow control (taskemit/flow.py, lib_flow.lua), from each listener's flow hash (the newest
-- declaration, written by catalog.lua):
-- - concurrency: at most that many of its jobs are held at once (its leased set, so a stopped
--   worker's slots come back when its leases run out);
-- - rate: a token bucket in the flow hash (or, per rate key, one hash per key) that every
--   claim of every worker takes from; a job whose rate key has no token waits in the delayed
--   set until its next token, while the jobs of other keys go on;
-- - ordering and rate keys: only the first job of a key's group is in the ready set;
-- - priority: a job's place in its ready set is its run time less its boost; when some due job
--   has a priority, the jobs with the earliest places go first across listeners too (else the
--   listeners take turns, starting with the one the caller rotated first).
-- A listener held back by its concurrency limit is not reported as due (its workers would
-- spin); the claim that turned a worker away marks the listener ("wanted"), and the next claim
-- that leaves free slots and due jobs behind (its worker was full) wakes the workers on the
-- queue's wake channel. A listener held back by its rate reports its next token as due.
--
-- KEYS[1]      the receipt of this call (a string)
-- KEYS[2..]    seven keys per listener: its ready set, its leased set, its arq queue, its delayed
--              set, its flow hash, its hash of job flow records, its sorted set of keys
-- ARGV[1]      now, ms
-- ARGV[2]      lease, ms
-- ARGV[3]      claim at most this many jobs (0: only report when work is next due)
-- ARGV[4]      the claim's token: the value of arq's in-progress key
-- ARGV[5]      start at this listener (0-based; rotated by the caller, for fairness)
-- ARGV[6..8]   arq's key prefixes: job, in-progress, retry
-- ARGV[9]      the namespace's sorted set of abort requests (taskemit abort, arq's Job.abort())
-- ARGV[10]     now + lease, ms: when the leases taken now run out
-- ARGV[11..]   four per listener: the prefix of its groups' lists, the prefix of its rate keys'
--              buckets, its queue's wake channel, its name
-- (arguments given to redis.call per job are strings: a Lua number is formatted on every call)
--
-- Returns {claimed, expired, next_due, aborted}: claimed is a list of {job id, listener index
-- (1-based), payload, try}; expired a list of {job id, listener index} whose payload expired in
-- the queue; next_due the earliest time work may be claimed (a run time, a lease expiry, a
-- token; ms), or -1; aborted a list of {job id, listener index, payload} of due jobs whose abort
-- was asked for (not started). Every job handed out holds a lease with the token (the expired
-- and aborted ones too): the caller settles each with finish.lua.
local receipt = KEYS[1]
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local token = ARGV[4]
local first = tonumber(ARGV[5])
local job_prefix, lease_prefix, try_prefix, abort_requests = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local lease_until = ARGV[10]
local listeners = (#KEYS - 1) / 7

local function keys_of(i)
  local k = 7 * i - 5
  return KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
end

local function args_of(i)
  local a = 7 + 4 * i
  return ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
end

-- each listener's limits, and what this call found: held back by its slots, or its next token
local limits = {}
local held_back, token_at = {}, {}

local function limits_of(i)
  local _, _, _, _, flow = keys_of(i)
  local f = redis.call('HMGET', flow, 'concurrency', 'rate_count', 'rate_ms', 'burst', 'rate_key', 'tokens',
    'tokens_at', 'wanted')
  local lim = {
    concurrency = tonumber(f[1]),
    count = tonumber(f[2]),
    period = tonumber(f[3]),
    burst = tonumber(f[4]) or 1,
    per_key = f[5] == '1',
    wanted = f[8],
  }
  if lim.count and lim.period and not lim.per_key then
    lim.tokens = refill(tonumber(f[6]), tonumber(f[7]), now, lim.count, lim.period, lim.burst)
  end
  return lim
end

-- how many jobs listener i may take now (at most want), noting what holds it back
local function allowance(i, want)
  local lim = limits[i]
  local _, leased = keys_of(i)
  if lim.concurrency then
    local free = lim.concurrency - redis.call('ZCARD', leased)
    if free <= 0 then
      held_back[i] = true
      return 0
    end
    want = math.min(want, free)
  end
  if lim.tokens then
    if lim.tokens < 1 then
      token_at[i] = next_token(lim.tokens, now, lim.count, lim.period)
      return 0
    end
    want = math.min(want, math.floor(lim.tokens))
  end
  return want
end

local function has_due(ready)
  return #redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, 1) > 0
end

-- the earliest score of a sorted set, or false when it is empty
local function head_of(key)
  return tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) or false
end

-- heads[i]: the earliest scores of listener i's leased and delayed sets ({leased, delayed}; false:
-- empty) as this call leaves them, when known without reading them again: read once at the
-- start (a set whose head is not due is not scanned), then lowered by what this call adds
local heads = {}

local function lower_head(i, which, score)
  local head = heads[i]
  if head and (not head[which] or score < head[which]) then
    head[which] = score
  end
end

local function next_due()
  local due = -1
  local function consider(score)
    if score and (due < 0 or score < due) then
      due = score
    end
  end
  for i = 1, listeners do
    local ready, leased, _, delayed = keys_of(i)
    local head = heads[i] or {head_of(leased), head_of(delayed)}
    consider(head[1])
    consider(head[2])
    if token_at[i] then
      if has_due(ready) then
        consider(token_at[i])
      end
    elseif not held_back[i] then
      consider(tonumber(redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')[2]))
    end
  end
  return tostring(due)
end

-- the same call again (its reply was lost): what it handed out, if still held by the token
local handed = redis.call('GET', receipt)
if handed then
  local claimed, expired, aborted = {}, {}, {}
  local at = 1
  while true do -- blocks of ids, each under a line "<kind><listener index> <count>"
    local kind, i, n, after = string.match(handed, '^(%a)(%d+) (%d+)\n()', at)
    if not kind then
      break
    end
    at, i = after, tonumber(i)
    for _ = 1, tonumber(n) do
      local stop = string.find(handed, '\n', at, true)
      local id = string.sub(handed, at, stop - 1)
      at = stop + 1
      if redis.call('GET', lease_prefix .. id) == token then
        local payload = redis.call('GET', job_prefix .. id)
        if kind == 'e' then
          expired[#expired + 1] = {id, i}
        elseif payload and kind == 'a' then
          aborted[#aborted + 1] = {id, i, payload}
        elseif payload then
          claimed[#claimed + 1] = {id, i, payload, (tonumber(redis.call('GET', try_prefix .. id)) or 0) + 1}
        end
      end
    end
  end
  for i = 1, listeners do
    limits[i] = limits_of(i)
    allowance(i, 1)
  end
  return {claimed, expired, next_due(), aborted}
end

-- 1. leases that ran out: a stopped worker's jobs become ready again, at their place (their run
-- time less their boost, so they go before what was queued after them); renewed ones are
-- re-scored. 2. delayed jobs whose time has come become ready.
local has_flow = {} -- listener -> whether any of its jobs has a flow record
for i = 1, listeners do
  local ready, leased, queue, delayed, _, jobs = keys_of(i)
  has_flow[i] = redis.call('EXISTS', jobs) == 1
  local leased_head, delayed_head = head_of(leased), head_of(delayed)
  -- (a set whose earliest score is not due has nothing to scan)
  for _, id in ipairs(leased_head and leased_head <= now and
      redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, 1000) or {}) do
    local ttl = redis.call('PTTL', lease_prefix .. id)
    if ttl >= 0 then -- renewed, or in its last millisecond (PTTL reads 0 while the key is still there)
      redis.call('ZADD', leased, now + math.max(ttl, 1), id)
    elseif ttl == -1 then -- held with no expiry: not a lease; look again a lease later
      redis.call('ZADD', leased, now + lease, id)
    else -- gone: its worker stopped mid-try
      redis.call('ZREM', leased, id)
      redis.call('ZADD', ready, ready_score(queue, id, has_flow[i] and boost_of(jobs, id) or 0, now), id)
      if redis.call('EXISTS', job_prefix .. id) == 1 then -- the try that worker was in counts
        redis.call('INCR', try_prefix .. id) -- (unless the job is gone: a stock arq worker finished it)
        redis.call('EXPIRE', try_prefix .. id, '88400')
      end
    end
  end
  if leased_head and leased_head <= now then
    leased_head = head_of(leased)
  end
  if delayed_head and delayed_head <= now then
    local later = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
    redis.call('ZREMRANGEBYRANK', delayed, 0, #later - 1)
    for _, id in ipairs(later) do
      redis.call('ZADD', ready, ready_score(queue, id, has_flow[i] and boost_of(jobs, id) or 0, now), id)
    end
    delayed_head = head_of(delayed)
  end
  heads[i] = {leased_head, delayed_head}
  limits[i] = limits_of(i)
end

local claimed, expired, aborted = {}, {}, {}
local handed_out = {} -- the receipt: kind ('c' claimed, 'e' expired, 'a' aborted) -> listener index -> ids
local aborts_asked = redis.call('ZCARD', abort_requests) > 0
local buckets = {} -- rate key bucket -> {tokens, count, period, burst}, written at the end
local again = {} -- listener -> a job became ready during the claim (the next of a rate key)

-- the token of a job's rate key: true and one token less, or false (the job waits for it)
local function take_token(i, rate_key, id)
  local lim = limits[i]
  local _, _, _, delayed = keys_of(i)
  local _, bucket_prefix = args_of(i)
  local key = bucket_prefix .. rate_key
  local bucket = buckets[key]
  if not bucket then
    local b = redis.call('HMGET', key, 'tokens', 'tokens_at')
    bucket = {refill(tonumber(b[1]), tonumber(b[2]), now, lim.count, lim.period, lim.burst), lim}
    buckets[key] = bucket
  end
  if bucket[1] < 1 then
    local at = next_token(bucket[1], now, lim.count, lim.period)
    redis.call('ZADD', delayed, at, id)
    lower_head(i, 2, at)
    return false
  end
  bucket[1] = bucket[1] - 1
  return true
end

-- take the first k due jobs of listener i (already out of its ready set): flow first, then the
-- lease; ``records``: their flow records, when read already
local function take(i, ids, records)
  local lim = limits[i]
  local ready, leased, queue, _, _, jobs, keys = keys_of(i)
  local group_prefix = args_of(i)
  if not records then
    records = has_flow[i] and redis.call('HMGET', jobs, unpack(ids)) or {}
  end
  local kept = {}
  for n, id in ipairs(ids) do
    local record = records[n]
    local keep = true
    local boost, mode, group, rate_key = 0, '', '', '' -- (a job without a record: the bucket of key '')
    if record then
      boost, mode, group, rate_key = job_flow(record)
    end
    if lim.per_key and lim.count and not take_token(i, rate_key, id) then
      keep = false
      again[i] = true -- another key's job may take its place
    elseif mode == 'r' then -- it leaves its rate key's group: the key's next job is ready now
      local list = group_prefix .. group
      if redis.call('LINDEX', list, 0) == id and advance(jobs, keys, list, group, ready, queue, now) then
        again[i] = true
      end
      redis.call('HSET', jobs, id, boost .. '\n\n\n' .. rate_key)
    end
    if keep then
      kept[#kept + 1] = id
    end
  end
  if #kept == 0 then
    return 0
  end
  local job_keys, try_keys = {}, {}
  for n, id in ipairs(kept) do
    job_keys[n] = job_prefix .. id
    try_keys[n] = try_prefix .. id
  end
  local payloads = get_many(job_keys)
  local tries = get_many(try_keys)
  local leases = {} -- lease expiry, id, ... for the leased set
  local started = 0
  for n, id in ipairs(kept) do
    local payload = payloads[n]
    local kind = nil
    if not payload then
      if redis.call('ZSCORE', queue, id) then
        kind = 'e' -- expired while it waited
      elseif has_flow[i] and release_flow(jobs, keys, group_prefix, ready, queue, id, now) then
        again[i] = true -- finished elsewhere (a stock arq worker): its key's next job is ready
      end
    elseif aborts_asked and redis.call('ZSCORE', abort_requests, id) then
      kind = 'a'
    end
    if (kind or payload) and redis.call('SET', lease_prefix .. id, token, 'NX', 'PX', ARGV[2]) then
      leases[#leases + 1] = lease_until
      leases[#leases + 1] = id
      if kind == 'e' then
        expired[#expired + 1] = {id, i}
      elseif kind == 'a' then
        redis.call('ZREM', abort_requests, id)
        aborted[#aborted + 1] = {id, i, payload}
      else
        kind = 'c'
        claimed[#claimed + 1] = {id, i, payload, (tonumber(tries[n]) or 0) + 1}
        started = started + 1
      end
      local lists = handed_out[kind]
      if lists == nil then
        lists = {}
        handed_out[kind] = lists
      end
      push(lists, i, id)
    elseif kind or payload then
      -- a stock arq worker (or an older lease) holds it: look again when that runs out (a lease
      -- in its last millisecond reads 0: look again soon, not a whole lease later)
      local held = redis.call('PTTL', lease_prefix .. id)
      local wait = lease
      if held >= 0 then
        wait = math.max(held, 50)
      end
      redis.call('ZADD', leased, now + wait, id)
      lower_head(i, 1, now + wait)
    end
  end
  each_slice('ZADD', leased, leases)
  if #leases > 0 then
    lower_head(i, 1, tonumber(lease_until))
  end
  if lim.tokens then
    lim.tokens = lim.tokens - started
    lim.taken = (lim.taken or 0) + started
  end
  return started
end

-- one round. Without a priority among the due jobs, the listeners take turns (the one the caller
-- rotated first takes what it may, then the next...), as they always did; when some due job has a
-- priority, the jobs with the earliest places (run time less boost) go first across listeners.
local function round(only)
  local order = {} -- the listeners of this round, in turn, with what each may take
  local wants = {}
  for k = 0, listeners - 1 do
    local i = (first + k) % listeners + 1
    if not only or only[i] then
      local want = allowance(i, limit - #claimed)
      if want > 0 then
        order[#order + 1] = i
        wants[i] = want
      end
    end
  end
  -- the due jobs of the listeners whose jobs may have a priority, with their places and records
  local candidates, records, boosted = {}, {}, false
  for _, i in ipairs(order) do
    if has_flow[i] then
      local due = redis.call('ZRANGEBYSCORE', (keys_of(i)), '-inf', now, 'WITHSCORES', 'LIMIT', 0, wants[i])
      local ids = {}
      for n = 1, #due, 2 do
        ids[#ids + 1] = due[n]
      end
      candidates[i] = due
      records[i] = #ids > 0 and redis.call('HMGET', select(6, keys_of(i)), unpack(ids)) or {}
      for _, record in ipairs(records[i]) do
        if record and job_flow(record) > 0 then
          boosted = true
        end
      end
    end
  end
  local function ids_of(i, k)
    local ids = {}
    for n = 1, k do
      ids[n] = candidates[i][2 * n - 1]
    end
    return ids
  end
  local taken = 0
  if not boosted then
    -- in turn, each listener first takes an even share of what is left (so that the jobs one
    -- event gave several listeners go out in one claim, and their outcomes are written together),
    -- then what the others left; a listener whose jobs were read with their records takes all it
    -- may at once (drained: nothing more to take this round)
    local took, drained = {}, {}
    for pass = 1, 2 do
      for n, i in ipairs(order) do
        local left = limit - #claimed
        if left <= 0 then
          break
        end
        local want = math.min(left, wants[i] - (took[i] or 0))
        if pass == 1 and not candidates[i] then
          want = math.min(want, math.ceil(left / (#order - n + 1)))
        end
        if want > 0 and not drained[i] then
          local ready = keys_of(i)
          local ids
          if candidates[i] then
            ids = ids_of(i, math.min(left, #candidates[i] / 2))
            drained[i] = true
          else
            ids = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, want)
            drained[i] = #ids < want
          end
          if #ids > 0 then
            -- the due jobs are the first of the ready set: one command takes them out
            redis.call('ZREMRANGEBYRANK', ready, 0, #ids - 1)
            took[i] = (took[i] or 0) + #ids
            taken = taken + take(i, ids, records[i])
          end
        end
      end
    end
    return taken
  end
  -- by place: each listener's due jobs are in order, so each takes a prefix of its own
  local left = limit - #claimed
  local at, takes = {}, {}
  for _, i in ipairs(order) do
    if not candidates[i] then
      candidates[i] = redis.call('ZRANGEBYSCORE', (keys_of(i)), '-inf', now, 'WITHSCORES', 'LIMIT', 0, wants[i])
    end
    at[i], takes[i] = 1, 0
  end
  for _ = 1, left do
    local best, best_score = nil, nil
    for _, i in ipairs(order) do
      local due = candidates[i]
      if 2 * at[i] <= #due then
        local score = tonumber(due[2 * at[i]])
        if not best or score < best_score then
          best, best_score = i, score
        end
      end
    end
    if not best then
      break
    end
    takes[best] = takes[best] + 1
    at[best] = at[best] + 1
  end
  for _, i in ipairs(order) do
    local k = takes[i]
    if k > 0 then
      redis.call('ZREMRANGEBYRANK', (keys_of(i)), 0, k - 1)
      taken = taken + take(i, ids_of(i, k), records[i])
    end
  end
  return taken
end

if limit > 0 then
  round(nil)
  -- a rate key's next job became ready, or jobs waited for their key's token: again for those (a
  -- few rounds at most: what is left waits for the next claim)
  for _ = 1, 20 do
    if #claimed >= limit or next(again) == nil then
      break
    end
    local only = again
    again = {}
    round(only)
  end
end

-- the buckets, as this claim left them (a bucket only read refills the same way next time)
for i = 1, listeners do
  local lim = limits[i]
  if lim.taken then
    local _, _, _, _, flow = keys_of(i)
    redis.call('HSET', flow, 'tokens', tostring(lim.tokens), 'tokens_at', ARGV[1])
  end
  if lim.tokens and lim.tokens < 1 then
    token_at[i] = next_token(lim.tokens, now, lim.count, lim.period)
  end
end
for key, bucket in pairs(buckets) do
  local lim = bucket[2]
  redis.call('HSET', key, 'tokens', tostring(bucket[1]), 'tokens_at', ARGV[1])
  -- a full bucket is the same as none: it goes once it would be full again
  redis.call('PEXPIRE', key, math.ceil((lim.burst - bucket[1]) * lim.period / lim.count) + 1000)
end

-- a listener whose slots are all taken: remember that due jobs wait for one ("wanted"), so that
-- the claim that leaves a free slot and due jobs behind (its worker was full) wakes the others
for i = 1, listeners do
  local lim = limits[i]
  if lim.concurrency or lim.wanted then
    local ready, leased, _, _, flow = keys_of(i)
    held_back[i] = held_back[i] or (lim.concurrency ~= nil and lim.concurrency <= redis.call('ZCARD', leased))
    if held_back[i] then
      if not lim.wanted and has_due(ready) then
        redis.call('HSET', flow, 'wanted', '1')
      end
    elseif lim.wanted then
      if not has_due(ready) then
        redis.call('HDEL', flow, 'wanted')
      elseif #claimed >= limit then
        local _, _, wake, name = args_of(i)
        redis.call('PUBLISH', wake, name)
        redis.call('HDEL', flow, 'wanted')
      end
    end
  end
end

local blocks = {}
for kind, lists in pairs(handed_out) do
  for i, ids in pairs(lists) do
    blocks[#blocks + 1] = kind .. i .. ' ' .. #ids .. '\n' .. table.concat(ids, '\n') .. '\n'
  end
end
if #blocks > 0 then
  redis.call('SET', receipt, table.concat(blocks), 'PX', ARGV[2])
end
return {claimed, expired, next_due(), aborted}
