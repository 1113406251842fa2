-- Unregister the lanes no running run uses (dagrt.resources): a worker reads every
-- registered lane it can hold, so a lane stays registered only while it may get work.
--
-- KEYS[1] the registry of a stream's lanes (lane -> when a run last registered it)
-- ARGV[1] the lane streams' names up to the lane   ARGV[2] the sets of a lane's runs,
--   up to the lane   ARGV[3] a run's keys up to its id ("dagrt:{")   ARGV[4] its meta
--   hash after it   ARGV[5] a run that ended ("" for none): it leaves its lanes' sets
--
-- A run joins its lanes' sets when it is submitted, after its meta is written (one
-- pipeline: a run in a set whose meta is gone has ended, or expired). A lane whose set
-- is empty and whose stream holds no entry is unregistered. Reply: lanes unregistered.

local dropped = 0
for _, lane in ipairs(redis.call('HKEYS', KEYS[1])) do
  local runs = ARGV[2] .. lane
  if ARGV[5] ~= '' then redis.call('SREM', runs, ARGV[5]) end
  for _, run in ipairs(redis.call('SMEMBERS', runs)) do
    if redis.call('EXISTS', ARGV[3] .. run .. ARGV[4]) == 0 then
      redis.call('SREM', runs, run)
    end
  end
  if redis.call('SCARD', runs) == 0 and redis.call('XLEN', ARGV[1] .. lane) == 0 then
    redis.call('HDEL', KEYS[1], lane)
    dropped = dropped + 1
  end
end
return dropped
