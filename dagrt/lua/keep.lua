-- Keep the outputs of a run that did not finish, for a resumed run (dagrt.caching):
-- each output key is copied to its cache entry, which lives for the time given, unless
-- it holds a location (the output is in a host's store, whose file goes with the run)
-- or nothing (never stored: it stayed in a worker's memory). A value may be sealed
-- (dagrt.sealing: its seal's magic, then a tag, before what it holds).
--
-- KEYS: pairs of an output key and the cache entry to copy it to
-- ARGV[1] the entries' time to live (ms)   ARGV[2] a location's first bytes ("DGL1")
-- ARGV[3] what a sealed value starts with ("DGS")   ARGV[4] the bytes a seal puts first
-- Reply: how many outputs were kept.

local kept = 0
local magic, sealed, head = ARGV[2], ARGV[3], tonumber(ARGV[4])
for i = 1, #KEYS, 2 do
  local first = redis.call('GETRANGE', KEYS[i], 0, head + #magic - 1)
  if string.sub(first, 1, #sealed) == sealed then
    first = string.sub(first, head + 1)
  end
  if first ~= '' and string.sub(first, 1, #magic) ~= magic then
    redis.call('COPY', KEYS[i], KEYS[i + 1], 'REPLACE')
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
    kept = kept + 1
  end
end
return kept
