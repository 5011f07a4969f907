-- Store a batch of emitted events: per event, one arq job per listener and the event record.
-- Each event is stored on its own: an error in one (a key of the wrong type, say) is that
-- event's reply, and the others are stored. The caller trims the event indexes to the
-- retention and wakes the workers (PUBLISH on the queues' wake channels) once per batch,
-- after this call.
--
-- KEYS[1]      the index of events (sorted set of event uuids, scored by emit time in ms)
-- KEYS[2]      emitted-events counters (hash: event id -> count)
-- KEYS[3..]    the batch's routes, two keys each: an arq queue (sorted set of job ids by run
--              time, ms) and a listener's ready set on that queue (the same scores)
-- ARGV[1..3]   key prefixes: arq's job key, the event record, the index of one event id's events
-- ARGV[4]      job key TTL in ms (arq's expiry: score - now + expires_extra_ms)
-- ARGV[5]      event record TTL in seconds
-- ARGV[6..]    the events, each as:
--                uuid, event id, emitted at (ms since the epoch; also when its jobs may run),
--                JSON object {listener name: job id},
--                '1': store nothing if this event uuid is already recorded (exactly-once emits),
--                JSON object {listener name: queue key} when a listener is not on the default
--                queue, else '',
--                the uuid of the event whose listener emitted this one (its cause), else '',
--                the number of jobs, then per job: its id, its payload, the position in KEYS
--                of its route's queue (its ready set is the key after)
--
-- Returns one reply per event: the number of jobs stored (0 when its '1' made it a no-op), or
-- an error.
local job_prefix, event_prefix, by_id_prefix = ARGV[1], ARGV[2], ARGV[3]
local job_ttl, event_ttl = ARGV[4], ARGV[5]

local function store(i, record)
  local uuid, event_id, emitted = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if ARGV[i + 4] == '1' and redis.call('EXISTS', record) == 1 then
    return 0
  end
  local jobs = tonumber(ARGV[i + 7])
  for j = i + 8, i + 5 + 3 * jobs, 3 do
    local job_id, route = ARGV[j], tonumber(ARGV[j + 2])
    redis.call('SET', job_prefix .. job_id, ARGV[j + 1], 'PX', job_ttl)
    redis.call('ZADD', KEYS[route], emitted, job_id)
    redis.call('ZADD', KEYS[route + 1], emitted, job_id)
  end
  if ARGV[i + 5] ~= '' then
    redis.call('HSET', record, 'event', event_id, 'emitted_at', emitted, 'jobs', ARGV[i + 3], 'queues', ARGV[i + 5])
  else
    redis.call('HSET', record, 'event', event_id, 'emitted_at', emitted, 'jobs', ARGV[i + 3])
  end
  if ARGV[i + 6] ~= '' then
    redis.call('HSET', record, 'cause', ARGV[i + 6])
  end
  redis.call('EXPIRE', record, event_ttl)
  redis.call('ZADD', KEYS[1], emitted, uuid)
  redis.call('ZADD', by_id_prefix .. event_id, emitted, uuid)
  redis.call('HINCRBY', KEYS[2], event_id, 1)
  return jobs
end

local replies = {}
local i = 6
while i <= #ARGV do
  local ok, stored = pcall(store, i, event_prefix .. ARGV[i])
  if ok then
    replies[#replies + 1] = stored
  else
    replies[#replies + 1] = {err = type(stored) == 'table' and stored.err or tostring(stored)}
  end
  i = i + 8 + 3 * tonumber(ARGV[i + 7])
end
return replies
