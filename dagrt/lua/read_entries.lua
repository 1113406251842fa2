-- Read entries of a stream by id, in one call (a run's entries of the event log, which
-- other runs' entries interleave).
--
-- KEYS[1] the stream   ARGV the entry ids
-- Reply: for each id, the entry as XRANGE gives it ({} once it was trimmed)

local out = {}
for i, id in ipairs(ARGV) do
  out[i] = redis.call('XRANGE', KEYS[1], id, id)
end
return out
