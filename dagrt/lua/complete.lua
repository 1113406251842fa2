-- Complete tasks of one run, atomically: dagrt's readiness step.
--
-- KEYS[1] meta hash     KEYS[2] deps hash        KEYS[3] done hash
-- KEYS[4] progress      KEYS[5] events stream    KEYS[6] tasks stream
-- KEYS[6 + j]           the output key of the j-th task completed here
-- ARGV[1] run id        ARGV[2] worker id (its consumer name)        ARGV[3] consumer group
-- ARGV[4] number of tasks, then for each task:
--   index, keep mode [, location], n children, the children,
--   n entries, the stream entries to acknowledge if no child is kept
-- A location (after a keep mode ending in "@": "0@", "1@", "C8@") says the output is
-- in a host's object store: it is written to the output key here (with the run's
-- TTL), in the step that counts the task, so the key holds either the value or where
-- the value is.
-- Keep modes: "0" dispatch every ready child; "1" the worker may keep one ready
-- child; "C<n>" (fan-out clustering: a large output) the worker may keep one ready
-- child and claim up to n - 1 more: each claimed child gets its own stream entry,
-- pending for this worker at once (XCLAIM ... FORCE), and its deps field says who
-- claimed it ("@<worker>": ``take`` hands the entry back to that worker if another
-- reads it); "L" the output was NOT stored (it stays in the worker's memory): count
-- the task only if its one child becomes ready now, and keep that child, marking
-- the decision "<child>*" (a re-run after a crash recomputes this task first);
-- otherwise answer "upload" and change nothing.
--
-- One progress entry lists the tasks counted by this call ("t": "3,5,8").
-- Reply: one {code, kept, claimed entry id, claimed child, ...} per task: code "ok" (counted now), "dup" (counted
-- before: the same decision again), "stop" (the run is not running; the output
-- is deleted), "missing" (no output stored: nothing counted), "upload" (mode "L"
-- and the child is not ready: store the output and complete again); kept is the
-- child the worker must run next ("*" appended: its input is in memory only), or "";
-- then, for mode "C" on "ok", the entry and index of each child claimed (a "dup" does
-- not repeat them: their entries are pending, and reclaimed if the worker died).

local status = redis.call('HGET', KEYS[1], 'status')
local running = status == 'running'
local replies = {}
local acks = {}    -- entries to acknowledge, in one XACK at the end
local counted = {} -- tasks counted now, in one progress entry at the end
local pos = 5

for j = 1, tonumber(ARGV[4]) do
  local index = ARGV[pos]
  local may_keep = ARGV[pos + 1]
  local location = ''
  local after = pos + 2
  if string.byte(may_keep, -1) == 64 then -- "0@", "1@", "C8@": a location follows
    location = ARGV[after]
    may_keep = string.sub(may_keep, 1, -2)
    after = after + 1
  end
  local cluster = 0 -- children this worker may claim besides the one it keeps
  if string.byte(may_keep, 1) == 67 then -- "C<n>"
    cluster = (tonumber(string.sub(may_keep, 2)) or 1) - 1
    may_keep = '1'
  end
  local n_children = tonumber(ARGV[after])
  local first_child = after + 1
  local n_acks = tonumber(ARGV[first_child + n_children])
  local first_ack = first_child + n_children + 1
  pos = first_ack + n_acks
  local output = KEYS[6 + j]

  local function ack()
    for a = first_ack, first_ack + n_acks - 1 do
      acks[#acks + 1] = ARGV[a]
    end
  end

  if not running then
    -- The run ended (or was cleaned up) while this task ran: its output is not wanted.
    redis.call('DEL', output)
    ack()
    replies[j] = {'stop', status or 'gone'}
  else
    local previous = redis.call('HGET', KEYS[3], index)
    if previous then
      if previous == '' then ack() end
      replies[j] = {'dup', previous}
    elseif may_keep == 'L' then
      local child = ARGV[first_child]
      if n_children == 1 and tonumber(redis.call('HGET', KEYS[2], child)) == 1 then
        redis.call('HSET', KEYS[2], child, 0)
        redis.call('HSET', KEYS[3], index, child .. '*')
        counted[#counted + 1] = index
        replies[j] = {'ok', child .. '*'}
      else
        replies[j] = {'upload', ''}
      end
    else
      if location ~= '' then
        -- The output is in a host's store: its key records where, with the run's TTL.
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl > 0 then
          redis.call('SET', output, location, 'PX', ttl)
        else
          redis.call('SET', output, location)
        end
      end
      if redis.call('EXISTS', output) == 0 then
        -- Invariant: a counter only counts a parent whose output is stored.
        replies[j] = {'missing', ''}
      else
        local kept = ''
        local reply = {'ok', ''}
        for c = first_child, first_child + n_children - 1 do
          if redis.call('HINCRBY', KEYS[2], ARGV[c], -1) == 0 then
            if kept == '' and may_keep == '1' then
              kept = ARGV[c]
            else
              local id = redis.call('XADD', KEYS[6], '*', 'r', ARGV[1], 't', ARGV[c])
              if cluster > 0 then -- claimed: pending for this worker from now on
                redis.call('XCLAIM', KEYS[6], ARGV[3], ARGV[2], 0, id, 'FORCE', 'JUSTID')
                redis.call('HSET', KEYS[2], ARGV[c], '@' .. ARGV[2])
                reply[#reply + 1] = id
                reply[#reply + 1] = ARGV[c]
                cluster = cluster - 1
              end
            end
          end
        end
        redis.call('HSET', KEYS[3], index, kept)
        counted[#counted + 1] = index
        if kept == '' then ack() end
        reply[2] = kept
        replies[j] = reply
      end
    end
  end
end

if #acks > 0 then
  redis.call('XACK', KEYS[6], ARGV[3], unpack(acks))
end
if #counted > 0 then
  redis.call('XADD', KEYS[4], '*', 't', table.concat(counted, ','), 'w', ARGV[2])
  if redis.call('HINCRBY', KEYS[1], 'left', -#counted) == 0 then
    redis.call('HSET', KEYS[1], 'status', 'finished')
    redis.call('XADD', KEYS[5], '*', 'e', 'finished')
  end
end
return replies
