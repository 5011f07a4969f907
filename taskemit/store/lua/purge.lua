-- Purge one dead letter: the letter, its place in the indexes, and, when the dead job holds its
-- ordering key (lib_flow.lua, mode 'O'), the key: its next job becomes ready, and the workers
-- of the listener are woken. Returns 1 if there was such a dead letter, else 0.
--
-- KEYS[1]    the dead letter (hash)
-- KEYS[2..4] dead letter indexes: all, by listener, by event id
-- KEYS[5]    the listener's hash of job flow records
-- KEYS[6]    the listener's sorted set of ordering keys
-- KEYS[7]    the listener's ready set on the queue the job died on
-- KEYS[8]    that queue
-- KEYS[9]    the listener's delayed set on it
-- ARGV[1]    the job id
-- ARGV[2]    the prefix of the listener's groups' lists
-- ARGV[3]    now, ms
-- ARGV[4]    the queue's wake channel
-- ARGV[5]    the listener
local existed = redis.call('DEL', KEYS[1])
for i = 2, 4 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('ZREM', KEYS[9], ARGV[1])
if release_flow(KEYS[5], KEYS[6], ARGV[2], KEYS[7], KEYS[8], ARGV[1], tonumber(ARGV[3])) then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return existed
