-- Claim up to N due jobs for one worker, in one call: only jobs of the listeners it runs.
--
-- Each listener has, on its queue, a ready set (jobs no worker holds, by run time) and a
-- leased set (jobs a worker holds, by lease expiry). arq's queue keeps every job as well,
-- so stock arq workers and arq's Job API still see them; the lease is arq's in-progress
-- key, so a stock arq worker leaves a claimed job alone, and the other way round.
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
-- KEYS[1]      the receipt of this call (a string)
-- KEYS[2..]    three keys per listener: its ready set, its leased set, its arq queue
-- ARGV[1]      now, ms
-- ARGV[2]      lease, ms
-- ARGV[3]      claim at most this many jobs (0: only report when work is next due)
-- ARGV[4]      the claim's token: the value of arq's in-progress key
-- ARGV[5]      start at this listener (0-based; rotated by the caller, for fairness)
-- ARGV[6..8]   arq's key prefixes: job, in-progress, retry
-- ARGV[9]      the namespace's sorted set of abort requests (taskemit abort, arq's Job.abort())
-- ARGV[10]     now + lease, ms: when the leases taken now run out
-- (arguments given to redis.call per job are strings: a Lua number is formatted on every call)
--
-- Returns {claimed, expired, next_due, aborted}: claimed is a list of {job id, listener index
-- (1-based), payload, try}; expired a list of {job id, listener index} whose payload expired in
-- the queue; next_due the earliest run time or lease expiry left (ms), or -1; aborted a list of
-- {job id, listener index, payload} of due jobs whose abort was asked for (not started). Every
-- job handed out holds a lease with the token (the expired and aborted ones too): the caller
-- settles each with finish.lua.
local receipt = KEYS[1]
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local token = ARGV[4]
local first = tonumber(ARGV[5])
local job_prefix, lease_prefix, try_prefix, abort_requests = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local lease_until = ARGV[10]
local listeners = (#KEYS - 1) / 3

local function keys_of(i)
  return KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
end

local function next_due()
  local due = -1
  for i = 1, listeners do
    local ready, leased = keys_of(i)
    for _, key in ipairs({ready, leased}) do
      local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      if head[2] then
        local score = tonumber(head[2])
        if due < 0 or score < due then
          due = score
        end
      end
    end
  end
  return tostring(due)
end

-- the same call again (its reply was lost): what it handed out, if still held by the token
local handed = redis.call('GET', receipt)
if handed then
  local claimed, expired, aborted = {}, {}, {}
  for kind, i, id in string.gmatch(handed, '(%a)(%d+) ([^\n]+)\n') do
    i = tonumber(i)
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
  return {claimed, expired, next_due(), aborted}
end

-- leases that ran out: a stopped worker's jobs become ready again, at their place in the queue
-- (their first run time, so they go before what was queued after them); renewed ones are re-scored
for i = 1, listeners do
  local ready, leased, queue = keys_of(i)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, 1000)) do
    local ttl = redis.call('PTTL', lease_prefix .. id)
    if ttl >= 0 then -- renewed, or in its last millisecond (PTTL reads 0 while the key is still there)
      redis.call('ZADD', leased, now + math.max(ttl, 1), id)
    elseif ttl == -1 then -- held with no expiry: not a lease; look again a lease later
      redis.call('ZADD', leased, now + lease, id)
    else -- gone: its worker stopped mid-try
      redis.call('ZREM', leased, id)
      redis.call('ZADD', ready, redis.call('ZSCORE', queue, id) or now, id)
      if redis.call('EXISTS', job_prefix .. id) == 1 then -- the try that worker was in counts
        redis.call('INCR', try_prefix .. id) -- (unless the job is gone: a stock arq worker finished it)
        redis.call('EXPIRE', try_prefix .. id, '88400')
      end
    end
  end
end

local claimed, expired, aborted = {}, {}, {}
local handed_out = {} -- the receipt's lines: kind, listener index, id
local aborts_asked = redis.call('ZCARD', abort_requests) > 0
for k = 0, listeners - 1 do
  if #claimed >= limit then
    break
  end
  local i = (first + k) % listeners + 1
  local ready, leased, queue = keys_of(i)
  local ids = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, limit - #claimed)
  if #ids > 0 then
    -- the due jobs are the first of the ready set: one command takes them all out
    redis.call('ZREMRANGEBYRANK', ready, 0, #ids - 1)
    local job_keys, try_keys = {}, {}
    for n, id in ipairs(ids) do
      job_keys[n] = job_prefix .. id
      try_keys[n] = try_prefix .. id
    end
    local payloads = get_many(job_keys)
    local tries = get_many(try_keys)
    local leases = {} -- lease expiry, id, ... for the leased set
    for n, id in ipairs(ids) do
      local payload = payloads[n]
      local kind = nil
      if not payload then
        if redis.call('ZSCORE', queue, id) then
          kind = 'e' -- expired while it waited
        end
        -- else: finished elsewhere (a stock arq worker removed it from the queue)
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
        end
        handed_out[#handed_out + 1] = kind .. i .. ' ' .. id .. '\n'
      elseif kind or payload then
        -- a stock arq worker (or an older lease) holds it: look again when that runs out (a lease
        -- in its last millisecond reads 0: look again soon, not a whole lease later)
        local held = redis.call('PTTL', lease_prefix .. id)
        local wait = lease
        if held >= 0 then
          wait = math.max(held, 50)
        end
        redis.call('ZADD', leased, now + wait, id)
      end
    end
    each_slice('ZADD', leased, leases)
  end
end
if #handed_out > 0 then
  redis.call('SET', receipt, table.concat(handed_out), 'PX', ARGV[2])
end
return {claimed, expired, next_due(), aborted}
