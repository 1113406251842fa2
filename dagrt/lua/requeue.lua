-- Give stream entries back: a worker that read more tasks than it should run now (a
-- wide read, taken while its last tasks were tiny, that brought heavy ones) puts them
-- at the end of the stream for the other workers, atomically: each new entry exists
-- before the old one is acknowledged and deleted, so no task is lost or doubled.
--
-- KEYS[1] the tasks stream   ARGV[1] the consumer group
-- then, per entry: its id, its run id, its task index
-- Reply: the number of entries given back

local n = 0
for i = 2, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[i + 1], 't', ARGV[i + 2])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
  n = n + 1
end
return n
