-- The floor of an emit: per event its record (EXISTS, HSET, EXPIRE) and two index entries; per
-- job arq's payload (SET PX) and its place in the listener's ready set, and with the arq layout
-- in arq's queue too. Nothing else (no counters, no flow control, no error handling).
-- ARGV: arq layout ('1' or '0'), payload TTL ms, record TTL s, then per event: uuid, emitted
-- (ms), jobs JSON, and three (job id, payload)
local arq, ttl, record_ttl = ARGV[1] == '1', ARGV[2], ARGV[3]
local places, indexed = {}, {}
local i = 4
while i <= #ARGV do
  local record = 'floor:event:' .. ARGV[i]
  if redis.call('EXISTS', record) == 0 then
    redis.call('HSET', record, 'event', 'ev3', 'emitted_at', ARGV[i + 1], 'jobs', ARGV[i + 2])
    redis.call('EXPIRE', record, record_ttl)
    indexed[#indexed + 1] = ARGV[i + 1]
    indexed[#indexed + 1] = ARGV[i]
    for j = i + 3, i + 8, 2 do
      redis.call('SET', 'arq:job:' .. ARGV[j], ARGV[j + 1], 'PX', ttl)
      places[#places + 1] = ARGV[i + 1]
      places[#places + 1] = ARGV[j]
    end
  end
  i = i + 9
end
if arq then
  redis.call('ZADD', 'arq:queue:floor', unpack(places))
end
redis.call('ZADD', 'floor:ready', unpack(places))
redis.call('ZADD', 'floor:events', unpack(indexed))
redis.call('ZADD', 'floor:events:ev3', unpack(indexed))
redis.call('HINCRBY', 'floor:emitted', 'ev3', #indexed / 2)
return #places / 2
