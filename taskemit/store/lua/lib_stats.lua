-- Shared by the scripts that finish an attempt: per-listener counters and a duration
-- histogram. Every key is passed in KEYS by the calling script. (Recent rates come from the
-- history's time buckets, which workers write once per interval: history.lua.)
--
-- stats_key   hash: succeeded, failed, retried, dead, duration_sum, duration_count, le:<bucket>
-- names_key   set of listener names that have counters
local function count_outcome(stats_key, names_key, listener, outcomes, duration, bucket)
  for outcome in string.gmatch(outcomes, '[^,]+') do
    redis.call('HINCRBY', stats_key, outcome, 1)
  end
  if duration ~= '' then
    redis.call('HINCRBYFLOAT', stats_key, 'duration_sum', duration)
    redis.call('HINCRBY', stats_key, 'duration_count', 1)
    redis.call('HINCRBY', stats_key, 'le:' .. bucket, 1)
  end
  redis.call('SADD', names_key, listener)
end

-- The same counts for a batch of attempts, summed per listener first (one command per counter,
-- not per attempt): tally() each attempt into ``tallies`` (listener index -> sums), then
-- count_tallies() once. ``stats_key_of(index)`` gives a listener's stats key, ``name_of(index)`` its
-- name.
local function tally(tallies, index, outcomes, duration, bucket)
  local t = tallies[index]
  if t == nil then
    t = {outcomes = {}, sum = 0, n = 0, buckets = {}}
    tallies[index] = t
  end
  if string.find(outcomes, ',', 1, true) then
    for outcome in string.gmatch(outcomes, '[^,]+') do
      t.outcomes[outcome] = (t.outcomes[outcome] or 0) + 1
    end
  elseif outcomes ~= '' then -- (one outcome, the usual case: no iterator)
    t.outcomes[outcomes] = (t.outcomes[outcomes] or 0) + 1
  end
  if duration ~= '' then
    t.sum = t.sum + tonumber(duration)
    t.n = t.n + 1
    t.buckets[bucket] = (t.buckets[bucket] or 0) + 1
  end
end

local function count_tallies(tallies, stats_key_of, name_of, names_key)
  for index, t in pairs(tallies) do
    local stats_key = stats_key_of(index)
    local rated = false
    for outcome, n in pairs(t.outcomes) do
      redis.call('HINCRBY', stats_key, outcome, n)
      rated = true
    end
    if t.n > 0 then
      redis.call('HINCRBYFLOAT', stats_key, 'duration_sum', string.format('%.6f', t.sum))
      redis.call('HINCRBY', stats_key, 'duration_count', t.n)
      for bucket, n in pairs(t.buckets) do
        redis.call('HINCRBY', stats_key, 'le:' .. bucket, n)
      end
    end
    if rated then
      redis.call('SADD', names_key, name_of(index))
    end
  end
end
