-- Flow control, shared by the scripts that store, claim, settle, give back, abort, replay and
-- purge jobs (taskemit/flow.py says what the limits mean; claim.lua enforces them).
--
-- A job with a priority, an ordering key or a rate key has a flow record in its listener's
-- hash of them (KeySpace.flow_jobs): "<boost ms>\n<mode>\n<group>\n<rate key>" (flow.JobFlow).
-- Its place in the ready set is its run time less its boost. mode '' : no group. 'o', 'O':
-- ordered by the key <group>; the job is the first of its group's list (KeySpace.flow_group)
-- from the time it is ready until it finished ('o': or was dead-lettered; 'O': a dead job keeps
-- its key until its dead letter is replayed, purged or expires), and only the first of a list is
-- in the ready set. 'r': waits in the list of its rate key until it is the first and claimed
-- (so a rate key without tokens holds one job back, not all of them). The listener's sorted set
-- of keys (KeySpace.flow_keys) counts the jobs each list holds.

-- a flow record's parts: boost (ms), mode, group, rate key
local function job_flow(text)
  local boost, mode, group, rate_key = string.match(text, '^(%-?%d+)\n(%a?)\n([^\n]*)\n(.*)$')
  return tonumber(boost) or 0, mode or '', group or '', rate_key or ''
end

-- the boost of a job (0 without a flow record)
local function boost_of(jobs, id)
  local text = redis.call('HGET', jobs, id)
  if not text then
    return 0
  end
  return (job_flow(text))
end

-- a job's score in its ready set: its run time (its score in arq's queue; now without one) less its boost
local function ready_score(queue, id, boost, now)
  return (tonumber(redis.call('ZSCORE', queue, id)) or now) - boost
end

-- the tokens of a bucket at now: at most burst, count more per period ms, never refilled
-- backwards (flow.bucket_tokens is the same arithmetic); a bucket never written is full
local function refill(tokens, at, now, count, period, burst)
  if not tokens or not at then
    return burst
  end
  local elapsed = now - at
  if elapsed < 0 then
    elapsed = 0
  end
  return math.min(burst, tokens + elapsed * count / period)
end

-- when a bucket that holds tokens at now holds one (flow.next_token_ms)
local function next_token(tokens, now, count, period)
  if tokens >= 1 then
    return now
  end
  return now + math.ceil((1 - tokens) * period / count)
end

-- one job fewer in a group
local function count_down(keys, group)
  if tonumber(redis.call('ZINCRBY', keys, -1, group)) <= 0 then
    redis.call('ZREM', keys, group)
  end
end

-- the first job of a group's list leaves it; the next becomes ready. Returns the next one or nil.
local function advance(jobs, keys, list, group, ready, queue, now)
  redis.call('LPOP', list)
  count_down(keys, group)
  local next_id = redis.call('LINDEX', list, 0)
  if next_id then
    redis.call('ZADD', ready, ready_score(queue, next_id, boost_of(jobs, next_id), now), next_id)
  end
  return next_id
end

-- a new job enters flow control (emit.lua, replay.lua): its record, and its place at the end
-- of its group. Returns true when it is ready now (no group, or the group's first).
local function enter_flow(jobs, keys, list, group, id, record)
  redis.call('HSET', jobs, id, record)
  if list == '' then
    return true
  end
  redis.call('ZINCRBY', keys, 1, group)
  return redis.call('RPUSH', list, id) == 1
end

-- a job that will not run again (finished, dead and let pass, aborted, gone): its record goes,
-- and when it was its group's first, the next job of the group becomes ready. Returns true
-- when a job became ready.
local function release_flow(jobs, keys, group_prefix, ready, queue, id, now)
  local text = redis.call('HGET', jobs, id)
  if not text then
    return false
  end
  redis.call('HDEL', jobs, id)
  local _, mode, group = job_flow(text)
  if mode == '' then
    return false
  end
  local list = group_prefix .. group
  if redis.call('LINDEX', list, 0) == id then
    return advance(jobs, keys, list, group, ready, queue, now) ~= nil
  end
  if redis.call('LREM', list, 1, id) > 0 then -- it waited behind others (aborted, or taken back)
    count_down(keys, group)
  end
  return false
end
