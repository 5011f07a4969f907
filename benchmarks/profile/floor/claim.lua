-- The floor of a claim: due jobs out of the ready set, their payloads and try counters read, a
-- lease per job (arq layout: arq's in-progress key, SET NX PX; else a field of one hash) and the
-- leased set, a receipt.
-- ARGV: arq layout ('1' or '0'), now (ms), limit, token, lease expiry (ms)
local arq = ARGV[1] == '1'
local ids = redis.call('ZRANGEBYSCORE', 'floor:ready', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #ids == 0 then
  return {}
end
redis.call('ZREMRANGEBYRANK', 'floor:ready', 0, #ids - 1)
local job_keys, try_keys, leased, held, claimed = {}, {}, {}, {}, {}
for n, id in ipairs(ids) do
  job_keys[n] = 'arq:job:' .. id
  try_keys[n] = 'arq:retry:' .. id
end
local payloads = redis.call('MGET', unpack(job_keys))
local tries = redis.call('MGET', unpack(try_keys))
for n, id in ipairs(ids) do
  if arq then
    redis.call('SET', 'arq:in-progress:' .. id, ARGV[4], 'NX', 'PX', '30000')
  else
    held[#held + 1] = id
    held[#held + 1] = ARGV[4]
  end
  leased[#leased + 1] = ARGV[5]
  leased[#leased + 1] = id
  claimed[n] = {id, payloads[n], tries[n]}
end
if not arq then
  redis.call('HSET', 'floor:leases', unpack(held))
end
redis.call('ZADD', 'floor:leased', unpack(leased))
redis.call('SET', 'floor:claim:' .. ARGV[4], 'x', 'PX', '30000')
return claimed
