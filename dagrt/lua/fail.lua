-- Fail a run because one of its tasks failed for good, atomically with its error record.
--
-- KEYS[1] meta hash   KEYS[2] events stream   KEYS[3] error key   KEYS[4] tasks stream
-- ARGV[1] task index  ARGV[2] worker id       ARGV[3] error record (JSON)
-- ARGV[4] consumer group   ARGV[5 ..] stream entries to acknowledge
--
-- Reply: "ok", or "stop" if the run was no longer running (nothing written). A sub-run
-- that fails adds an entry {r, t, x: "1"} for the task whose graph it is, as its
-- finishing does (complete.lua): that task fails with its failure.

for j = 5, #ARGV do
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[j])
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 'stop'
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[3], ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'failed_task', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'e', 'failed', 't', ARGV[1], 'w', ARGV[2], 'err', ARGV[3])
local parent = redis.call('HMGET', KEYS[1], 'then_run', 'then_task')
if parent[1] then
  redis.call('XADD', KEYS[4], '*', 'r', parent[1], 't', parent[2], 'x', '1')
end
return 'ok'
