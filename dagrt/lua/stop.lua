-- Stop a run that is still running (cancellation): later completions dispatch nothing.
--
-- KEYS[1] meta hash   KEYS[2] events stream
-- ARGV[1] the new status ("cancelled")
-- ARGV[2] the tag of its event ("" without a secret: dagrt.outcomes)
-- Reply: 1 if the run was stopped now, 0 if it was not running.

if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if (ARGV[2] or '') ~= '' then
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[1], 'm', ARGV[2])
else
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
end
return 1
