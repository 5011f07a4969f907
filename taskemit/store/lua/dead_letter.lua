-- Park a job that will not be tried again (the stock arq path: arq settles the job's own keys;
-- taskemit's worker parks its dead jobs in finish.lua): see park_dead in lib_dead.lua.
--
-- KEYS[1]   the dead letter (hash)
-- KEYS[2]   index of all dead letters (sorted set)
-- KEYS[3]   index by listener (sorted set)
-- KEYS[4]   index by event id (sorted set)
-- KEYS[5]   the job's attempts (list)
-- KEYS[6]   the hash of the event's outcomes on the job's tag (KeySpace.outcomes: on one Redis,
--           the event record)
-- ARGV[1]   job id
-- ARGV[2]   died at, ms
-- ARGV[3]   retention, seconds
-- ARGV[4]   the final attempt, JSON ('' when the job never ran)
-- ARGV[5]   attempts list TTL, seconds
-- ARGV[6]   outcome field on the event record
-- ARGV[7]   the outcome, JSON
-- ARGV[8..11] counters (with KEYS[7..8]), see count_outcome in lib_stats.lua
-- ARGV[12..] field, value pairs of the dead letter
count_outcome(KEYS[7], KEYS[8], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
park_dead(KEYS[1], {KEYS[2], KEYS[3], KEYS[4]}, KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  {unpack(ARGV, 12)})
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
end
return 1
