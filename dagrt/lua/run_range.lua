-- Widen a run's range of entries in the event log (the runs index's first and last ids).
--
-- Several writers (the client, each worker) log a run's events; each appends its entries,
-- then records their range. Setting "first" only if absent and "last" unconditionally lost
-- entries when two writers interleaved (an older id overwrote a newer "last", or a newer
-- id became "first"), so the range only ever widens here, atomically.
--
-- KEYS[1] the run's record hash
-- ARGV[1] the first entry id written   ARGV[2] the last entry id written
-- Reply: 1

local function before(a, b)  -- stream ids "ms-seq", compared as numbers
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local first = redis.call('HGET', KEYS[1], 'first')
if not first or before(ARGV[1], first) then
  redis.call('HSET', KEYS[1], 'first', ARGV[1])
end
local last = redis.call('HGET', KEYS[1], 'last')
if not last or before(last, ARGV[2]) then
  redis.call('HSET', KEYS[1], 'last', ARGV[2])
end
return 1
