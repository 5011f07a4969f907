-- Store a batch of emitted events: per event, one arq job per listener and the event record.
-- Each event's payloads and record are written on their own (an error there, a key of the
-- wrong type say, is that event's reply and the others go on); then the indexes and counters
-- take the whole batch, one command per key, and last the queues and ready sets take the jobs
-- of the events that have no error, one command per key. An error in a command for many
-- events is the reply of each of them, and their jobs are not queued: their records and
-- payloads are taken back, so that sending them again stores them whole. The caller trims the
-- event indexes to the retention and wakes the workers (PUBLISH on the queues' wake channels)
-- once per batch, after this call.
--
-- An event whose record exists is stored already: a batch sent again (its reply was lost, it
-- came back from the spool, a publish_once key was used before) stores nothing twice and never
-- queues a job again that ran. Its record's expiry is renewed instead, a write, so that a WAIT
-- after this call also covers the first store.
--
-- Redis refuses a script's first write of new data under maxmemory (OOM), and any write on a
-- replica (READONLY); once a script has written, it runs to its end. A new event's first write is
-- its first SET: such an error is then every event's reply, and nothing is written.
--
-- On a Redis Cluster each queue has a hash tag of its own (KeySpace), and an event whose jobs
-- go to several queues is stored by several calls, each on one slot: one on the control tag
-- with the record and the indexes (no jobs: each event's number of jobs is 0 there), and one
-- per queue tag with that tag's jobs (one key: then the record's place is taken by the tag's
-- hash of the event's outcomes, KeySpace.outcomes, with a field 'stored'; no indexes). Each
-- call is idempotent by its own record, so a resend completes an event stored in part.
--
-- KEYS[1]      the index of events (sorted set of event uuids, scored by emit time in ms); or,
--              alone, a key of the queue tag whose jobs this call stores (jobs only, see above)
-- KEYS[2]      emitted-events counters (hash: event id -> count)
-- ARGV[1..3]   key prefixes: arq's job key, the event record (jobs only: the outcomes hash),
--              the index of one event id's events
-- ARGV[4]      job key TTL in ms (arq's expiry: score - now + expires_extra_ms)
-- ARGV[5]      event record TTL in seconds
-- ARGV[6..]    the events, each as (first what all events of one fan-out share, then its own):
--                event id, the number of jobs,
--                JSON object {listener name: queue key} when a listener is not on the default
--                queue, else '',
--                uuid, emitted at (ms since the epoch; also when its jobs may run),
--                JSON object {listener name: job id},
--                the uuid of the event whose listener emitted this one (its cause), else '',
--                then per job: its route (an arq queue, a sorted set of job ids by run time in
--                ms, and its listener's ready set on that queue, the same scores), its id, its
--                payload, and its flow control: '' for none, else its listener's hash of flow
--                records, its sorted set of keys, its group's list ('' for none) and the job's
--                flow record, one per line (lib_flow.lua: the job waits in its group, and its
--                ready score is its run time less its boost)
--
-- Returns one reply per event: the number of jobs stored, at least 1 (0 when it was stored
-- already), or an error.
local job_prefix, event_prefix, by_id_prefix = ARGV[1], ARGV[2], ARGV[3]
local jobs_only = #KEYS == 1
local job_ttl, event_ttl = ARGV[4], ARGV[5]

local replies = {}
local starts = {} -- event -> its first ARGV
local members, members_of = {}, {} -- sorted set key -> {score, member, ...}, and for which events
local counts, counted = {}, {} -- event id -> events stored, and which
local written = {} -- event -> the number of jobs written, for the events stored by this call (0 or more)

local function add(key, score, member, event)
  local list = members[key]
  if list == nil then
    list = {}
    members[key] = list
    members_of[key] = {}
  end
  list[#list + 1] = score
  list[#list + 1] = member
  members_of[key][#members_of[key] + 1] = event
end

local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

local function error_of(failure)
  return {err = type(failure) == 'table' and failure.err or tostring(failure)}
end

-- an error for many events: each of them that has none yet
local function fail(events, failure)
  for _, event in ipairs(events) do
    if type(replies[event]) == 'number' then
      replies[event] = error_of(failure)
    end
  end
end

-- one ZADD per key of what add() collected since the last flush
local function flush_members()
  for key, list in pairs(members) do
    local reply = redis.pcall('ZADD', key, unpack(list))
    if failed(reply) then
      fail(members_of[key], reply)
    end
  end
  members, members_of = {}, {}
end

-- an event's arguments from ARGV[i]: event id, jobs, queues, uuid, emitted, jobs JSON, cause;
-- its first job's from ARGV[i + 7], five each
local function write(i, record)
  if redis.call('EXISTS', record) == 1 then
    redis.call('EXPIRE', record, event_ttl) -- (a read first: EXPIRE is a write Redis allows under OOM)
    return -1 -- stored already (see above)
  end
  local jobs = tonumber(ARGV[i + 1])
  for j = i + 7, i + 2 + 5 * jobs, 5 do
    redis.call('SET', job_prefix .. ARGV[j + 2], ARGV[j + 3], 'PX', job_ttl)
  end
  if jobs_only then
    redis.call('HSET', record, 'stored', '1')
  elseif ARGV[i + 2] ~= '' then
    redis.call('HSET', record, 'event', ARGV[i], 'emitted_at', ARGV[i + 4], 'jobs', ARGV[i + 5],
      'queues', ARGV[i + 2])
  else
    redis.call('HSET', record, 'event', ARGV[i], 'emitted_at', ARGV[i + 4], 'jobs', ARGV[i + 5])
  end
  if ARGV[i + 6] ~= '' then
    redis.call('HSET', record, 'cause', ARGV[i + 6])
  end
  redis.call('EXPIRE', record, event_ttl)
  return jobs
end

-- 1. the payloads and records, event by event
local i = 6
while i <= #ARGV do
  local event = #replies + 1
  starts[event] = i
  local ok, stored = pcall(write, i, event_prefix .. ARGV[i + 3])
  if not ok then
    replies[event] = error_of(stored)
  elseif stored < 0 then
    replies[event] = 0
  else
    replies[event] = math.max(stored, 1)
    written[event] = stored
  end
  if ok and stored >= 0 and not jobs_only then
    local event_id, uuid, emitted = ARGV[i], ARGV[i + 3], ARGV[i + 4]
    add(KEYS[1], emitted, uuid, event)
    add(by_id_prefix .. event_id, emitted, uuid, event)
    if counts[event_id] == nil then
      counts[event_id], counted[event_id] = 0, {}
    end
    counts[event_id] = counts[event_id] + 1
    counted[event_id][#counted[event_id] + 1] = event
  end
  i = i + 7 + 5 * tonumber(ARGV[i + 1])
end

-- 2. the indexes and counters
flush_members()
for event_id, count in pairs(counts) do
  local reply = redis.pcall('HINCRBY', KEYS[2], event_id, count)
  if failed(reply) then
    fail(counted[event_id], reply)
  end
end

-- a job's flow control argument: its listener's flow records, keys, its group's list, its record
local function flow_of(text)
  return string.match(text, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
end

-- 3. the jobs of the events without an error, on their queues and ready sets (a job with flow
-- control: its record, its place in its group, and in the ready set when it is its group's first)
local flowing = {} -- events with a job under flow control
for event, reply in ipairs(replies) do
  if type(reply) == 'number' and written[event] then
    local start, emitted = starts[event], ARGV[starts[event] + 4]
    for j = start + 7, start + 2 + 5 * written[event], 5 do
      add(ARGV[j], emitted, ARGV[j + 2], event)
      if ARGV[j + 4] == '' then
        add(ARGV[j + 1], emitted, ARGV[j + 2], event)
      else
        flowing[event] = true
        local jobs, keys, list, record = flow_of(ARGV[j + 4])
        local boost, _, group = job_flow(record)
        local ok, ready_now = pcall(enter_flow, jobs, keys, list, group, ARGV[j + 2], record)
        if not ok then
          fail({event}, ready_now)
        elseif ready_now then
          add(ARGV[j + 1], tonumber(emitted) - boost, ARGV[j + 2], event)
        end
      end
    end
  end
end
flush_members()

-- 4. events whose record was written but that failed on the way: take their record and payloads
-- back (what the indexes got only points at a record that is not there)
for event, reply in ipairs(replies) do
  if type(reply) ~= 'number' and written[event] then
    local start = starts[event]
    redis.pcall('DEL', event_prefix .. ARGV[start + 3])
    for j = start + 7, start + 2 + 5 * written[event], 5 do
      redis.pcall('DEL', job_prefix .. ARGV[j + 2])
      if flowing[event] and ARGV[j + 4] ~= '' then -- out of its group again
        local jobs, keys, list, record = flow_of(ARGV[j + 4])
        local _, _, group = job_flow(record)
        redis.pcall('ZREM', ARGV[j + 1], ARGV[j + 2])
        pcall(release_flow, jobs, keys, string.sub(list, 1, #list - #group), ARGV[j + 1], ARGV[j], ARGV[j + 2], 0)
      end
    end
  end
end
return replies
