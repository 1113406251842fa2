-- Whether a run still has work in the tasks stream: an entry that names it and is
-- pending (read by a worker and not acknowledged: its task runs, waits for a retry,
-- or ran and holds the entry for the child it kept) or not delivered yet. A running
-- run with tasks left and no such entry can never finish: the client's watchdog asks
-- this when the run made no progress for a while. One call sees the stream at one
-- moment (a scan in pages could miss an entry delivered between two of them), so it
-- gives up beyond a number of entries.
--
-- KEYS[1] the tasks stream   KEYS[2] the run's meta hash
-- ARGV[1] the consumer group   ARGV[2] the run id   ARGV[3] entries to look at, at most
-- Reply: 2 when the run is not running or has no task left (nothing to watch), 1 when
-- an entry of the run is pending, else the id of its first entry not delivered yet,
-- 0 when there is none, -1 when there are more entries than that to look at.

local stream, group, run, cap = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'running' or (tonumber(redis.call('HGET', KEYS[2], 'left')) or 0) <= 0 then
  return 2
end
local PAGE = 1000
local seen = 0

local function names_run(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'r' then return fields[i + 1] == run end
  end
  return false
end

local last = nil -- the group's last delivered id
if redis.call('EXISTS', stream) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == group then last = info['last-delivered-id'] end
end

-- Pending entries (each read by id: XPENDING does not give the fields); with no group
-- yet (no worker ever started), none is pending and every entry is new.
local start = '-'
if last then
  repeat
    local page = redis.call('XPENDING', stream, group, start, '+', PAGE)
    for _, p in ipairs(page) do
      local entry = redis.call('XRANGE', stream, p[1], p[1])[1]
      if entry and names_run(entry[2]) then return 1 end
    end
    seen = seen + #page
    if seen > cap then return -1 end
    if #page > 0 then start = '(' .. page[#page][1] end
  until #page < PAGE
end

-- Entries not delivered yet: after the group's last delivered id (workers make the
-- group at id 0: before there is one, every entry is new).
start = last and ('(' .. last) or '-'
repeat
  local page = redis.call('XRANGE', stream, start, '+', 'COUNT', PAGE)
  for _, entry in ipairs(page) do
    if names_run(entry[2]) then return entry[1] end
  end
  seen = seen + #page
  if seen > cap then return -1 end
  if #page > 0 then start = '(' .. page[#page][1] end
until #page < PAGE
return 0
