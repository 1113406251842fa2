-- Give stream entries back: a worker that read more tasks than it should run now (a
-- wide read, taken while its last tasks were tiny, that brought heavy ones) puts them
-- at the end of the stream for the other workers, atomically: each new entry exists
-- before the old one is acknowledged and deleted, so no task is lost or doubled. A
-- worker also gives back children it claimed (fan-out clustering) and has not started
-- when waiting for them costs more than moving their input: their claim ("@<worker>"
-- in the deps hash) is cleared, so that whoever reads the new entry runs it.
--
-- KEYS[1] the tasks stream   ARGV[1] the consumer group
-- ARGV[2] a run's keys up to its id ("dagrt:{")   ARGV[3] its deps hash after it
-- ARGV[4] the lane streams' names up to the lane (dagrt.resources)
-- then, per entry: its id, its run id, its task index, its lane ("" for none: the new
-- entry of a task in a lane goes to its lane's stream)
-- Reply: the number of entries given back

local n = 0
for i = 5, #ARGV, 4 do
  local deps = ARGV[2] .. ARGV[i + 1] .. ARGV[3]
  local d = redis.pcall('HGET', deps, ARGV[i + 2])
  if type(d) == 'string' and string.byte(d, 1) == 64 then
    redis.call('HSET', deps, ARGV[i + 2], 0)
  end
  local to = ARGV[i + 3] == '' and KEYS[1] or ARGV[4] .. ARGV[i + 3]
  redis.call('XADD', to, '*', 'r', ARGV[i + 1], 't', ARGV[i + 2])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
  n = n + 1
end
return n
