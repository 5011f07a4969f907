-- Shared by the scripts that park a job as a dead letter (finish.lua for taskemit's worker,
-- dead_letter.lua for the stock arq path): the dead letter keeps the job's payload and its whole
-- attempt history, indexed by time, listener and event id; the indexes forget entries past the
-- retention so they never outgrow it.
--
-- dead_key        the dead letter (hash)
-- indexes         {all, by listener, by event id} (sorted sets)
-- attempts_key    the job's attempts (list)
-- final_attempt   the final attempt, JSON ('' when the job never ran)
-- fields          field, value, ... of the dead letter (a table)
local function park_dead(dead_key, indexes, attempts_key, job_id, died_at, retention, final_attempt, attempts_ttl,
                         fields)
  if final_attempt ~= '' then
    redis.call('RPUSH', attempts_key, final_attempt)
    redis.call('EXPIRE', attempts_key, attempts_ttl)
  end
  local attempts = redis.call('LRANGE', attempts_key, 0, -1)
  redis.call('DEL', dead_key)
  redis.call('HSET', dead_key, 'attempts', '[' .. table.concat(attempts, ',') .. ']', unpack(fields))
  redis.call('EXPIRE', dead_key, retention)
  local horizon = '(' .. (tonumber(died_at) - tonumber(retention) * 1000)
  for _, index in ipairs(indexes) do
    redis.call('ZADD', index, died_at, job_id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', horizon)
  end
end
