-- The floor of a finish (every job done at its first try): the leases checked against the
-- token, the jobs out of the leased set (and arq's queue), each outcome on its event record,
-- the payloads and leases deleted, one counter.
-- ARGV: arq layout ('1' or '0'), token, then per job: job id, event uuid, outcome JSON
local arq, token = ARGV[1] == '1', ARGV[2]
local ids, lease_keys, gone = {}, {}, {}
for a = 3, #ARGV, 3 do
  ids[#ids + 1] = ARGV[a]
  lease_keys[#lease_keys + 1] = 'arq:in-progress:' .. ARGV[a]
end
local held
if arq then
  held = redis.call('MGET', unpack(lease_keys))
else
  held = redis.call('HMGET', 'floor:leases', unpack(ids))
end
local done = {}
for n, id in ipairs(ids) do
  if held[n] == token then
    done[#done + 1] = id
    if arq then
      gone[#gone + 1] = lease_keys[n]
    end
    gone[#gone + 1] = 'arq:job:' .. id
    local record = 'floor:event:' .. ARGV[3 * n + 1]
    if redis.call('EXISTS', record) == 1 then
      redis.call('HSET', record, 'job:' .. id, ARGV[3 * n + 2])
    end
  end
end
redis.call('ZREM', 'floor:leased', unpack(done))
if arq then
  redis.call('ZREM', 'arq:queue:floor', unpack(done))
else
  redis.call('HDEL', 'floor:leases', unpack(done))
end
redis.call('DEL', unpack(gone))
redis.call('HINCRBY', 'floor:stats', 'succeeded', #done)
return #done
