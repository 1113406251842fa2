-- Append events of one run to the event log and index them, atomically, once.
--
-- Several writers (the client, each worker) log one run at once. Appending the entries
-- and indexing them in one call means that a reader woken by the new entries (XREAD)
-- finds the run's record already counting them and its list already naming them, and a
-- writer that dies between the two steps cannot leave entries unindexed. Each call
-- carries its writer's sequence number: a call sent again (its reply never came, so the
-- writer cannot know it was applied) is applied once.
--
-- KEYS[1] the event log (stream)   KEYS[2] the run's record (hash)
-- KEYS[3] the run's entry ids (list) KEYS[4] the runs index (sorted set)
-- KEYS[5] the writer's last applied sequence number
-- ARGV[1] run id ("" for events of no run, worker events: appended, not indexed)
-- ARGV[2] the writer's sequence number for this call
-- ARGV[3] number of entries, then for each: number of events, packed events
-- then: number of counters, then (field, increment) pairs for the record
-- then: number of fields, then (field, value) pairs set on the record
-- then: a time to list the run under in the runs index, and how: "S" (its submission:
--   set), "N" (its first events: only if not listed yet), "" (neither)
-- Reply: the entry ids written (none: applied before)

local seq = tonumber(ARGV[2])
if seq <= tonumber(redis.call('GET', KEYS[5]) or '0') then
  return {}
end
redis.call('SET', KEYS[5], seq, 'EX', 86400)
local run = ARGV[1]
local pos = 3
local n_entries = tonumber(ARGV[pos])
pos = pos + 1
local ids = {}
for i = 1, n_entries do
  ids[i] = redis.call('XADD', KEYS[1], '*', 'r', run, 'n', ARGV[pos], 'd', ARGV[pos + 1])
  pos = pos + 2
end
if run ~= '' and n_entries > 0 then
  -- The record's range (each call writes later ids than every call before it).
  if not redis.call('HGET', KEYS[2], 'first') then
    redis.call('HSET', KEYS[2], 'first', ids[1])
  end
  redis.call('HSET', KEYS[2], 'last', ids[n_entries])
  for i = 1, n_entries, 1000 do  -- unpack() spreads a bounded number of values
    redis.call('RPUSH', KEYS[3], unpack(ids, i, math.min(i + 999, n_entries)))
  end
end
local n_counters = tonumber(ARGV[pos])
pos = pos + 1
for i = 1, n_counters do
  redis.call('HINCRBY', KEYS[2], ARGV[pos], ARGV[pos + 1])
  pos = pos + 2
end
local n_fields = tonumber(ARGV[pos])
pos = pos + 1
if n_fields > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, pos, pos + 2 * n_fields - 1))
  pos = pos + 2 * n_fields
end
if ARGV[pos + 1] == 'S' then
  redis.call('ZADD', KEYS[4], ARGV[pos], run)
elseif ARGV[pos + 1] == 'N' then
  redis.call('ZADD', KEYS[4], 'NX', ARGV[pos], run)
end
return ids
