-- Record how one listener job ended on its event's record, unless the record has expired
-- (writing to an expired record would recreate it without a TTL).
--
-- KEYS[1]   the event record (hash)
-- ARGV[1]   field name (one per job)
-- ARGV[2]   the outcome, JSON
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
