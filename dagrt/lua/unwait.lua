-- A worker stops waiting for children of a large output it made (delayed I/O): its
-- time is up. Each child it still waits for is left to whichever worker completes its
-- last parent; one that was already handed to it (its note is on the way) is not here
-- any more, and runs on it all the same.
--
-- KEYS[1] the run's wait hash   ARGV[1] the worker   ARGV[2..] the children
-- Reply: the children it no longer waits for (a timeout)

local gone = {}
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
