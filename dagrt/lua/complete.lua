-- Complete one task of a run, atomically: dagrt's readiness step.
--
-- KEYS[1] meta hash     KEYS[2] deps hash        KEYS[3] done hash
-- KEYS[4] progress      KEYS[5] events stream    KEYS[6] tasks stream
-- KEYS[7] the task's output key
-- ARGV[1] run id        ARGV[2] task index       ARGV[3] worker id
-- ARGV[4] "1" if the worker may keep a ready child, else "0"
-- ARGV[5] consumer group of the tasks stream
-- ARGV[6] n, the number of children; ARGV[7 .. 6+n] the children
-- ARGV[7+n ..] stream entries to acknowledge if no child is kept
--
-- Reply: {code, kept}: code "ok" (counted now), "dup" (counted before: the same
-- decision again), "stop" (the run is not running), "missing" (no output stored:
-- nothing counted); kept is the child the worker must run next, or "".

local function ack(from)
  for j = from, #ARGV do
    redis.call('XACK', KEYS[6], ARGV[5], ARGV[j])
  end
end

local n = tonumber(ARGV[6])
local first_ack = 7 + n

local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  -- The run ended (or was cleaned up) while this task ran: its output is not wanted.
  redis.call('DEL', KEYS[7])
  ack(first_ack)
  return {'stop', status or 'gone'}
end

local previous = redis.call('HGET', KEYS[3], ARGV[2])
if previous then
  if previous == '' then ack(first_ack) end
  return {'dup', previous}
end

-- Invariant: a counter only counts a parent whose output is stored.
if redis.call('EXISTS', KEYS[7]) == 0 then
  return {'missing', ''}
end

local ready = {}
for j = 7, 6 + n do
  if redis.call('HINCRBY', KEYS[2], ARGV[j], -1) == 0 then
    ready[#ready + 1] = ARGV[j]
  end
end

local kept = ''
local first = 1
if ARGV[4] == '1' and #ready > 0 then
  kept = ready[1]
  first = 2
end
for j = first, #ready do
  redis.call('XADD', KEYS[6], '*', 'r', ARGV[1], 't', ready[j])
end

redis.call('HSET', KEYS[3], ARGV[2], kept)
redis.call('XADD', KEYS[4], '*', 't', ARGV[2], 'w', ARGV[3])
if kept == '' then ack(first_ack) end

if redis.call('HINCRBY', KEYS[1], 'left', -1) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'finished')
  redis.call('XADD', KEYS[5], '*', 'e', 'finished')
end
return {'ok', kept}
