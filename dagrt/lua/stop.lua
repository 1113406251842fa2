-- Stop a run that is still running (cancellation): later completions dispatch nothing.
--
-- KEYS[1] meta hash   KEYS[2] events stream
-- ARGV[1] the new status ("cancelled")
-- Reply: 1 if the run was stopped now, 0 if it was not running.

if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
return 1
