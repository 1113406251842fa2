-- Complete tasks of one run, atomically: dagrt's readiness step.
--
-- KEYS[1] meta hash     KEYS[2] deps hash        KEYS[3] done hash
-- KEYS[4] progress      KEYS[5] events stream    KEYS[6] tasks stream
-- KEYS[7] wait hash (task -> the worker waiting to run it: delayed I/O)
-- KEYS[8] lanes hash (task -> its lane: dagrt.resources)
-- KEYS[8 + j]           the output key of the j-th task completed here
-- ARGV[1] run id        ARGV[2] worker id (its consumer name)   ARGV[3] consumer group
-- ARGV[4] number of tasks   ARGV[5] a live worker's key up to its id ("dagrt:worker:")
-- ARGV[6] a worker's inbox key up to its id ("dagrt:inbox:")
-- ARGV[7] the tag of the run's "finished" event ("" without a secret: dagrt.outcomes),
--   written with it, and to the meta's end_tag (where a sub-run's end is read),
-- then for each task:
--   index, keep mode [, location], n children, the children,
--   n entries, the stream entries to acknowledge if no child is kept
-- A keep mode is "0", "1", "L" or "C<n>", then "W" if the worker may wait for children
-- (delayed I/O), then "V" if the output is small enough to travel inline, then "@" if a
-- location follows. "V": each child this call dispatches (a new entry for any worker)
-- gets the output key's value in its entry, as fields {i: this task, v: the value},
-- so the worker that reads it has that input without a read of its own (outputs are
-- written once: the value is what that read would give). A location says the output is in a
-- host's object store: it is written to the output key here (with the run's TTL), in
-- the step that counts the task, so the key holds either the value or where it is.
-- Keep modes: "0" dispatch every ready child; "1" the worker may keep one ready
-- child; "C<n>" (fan-out clustering: a large output) the worker may keep one ready
-- child and claim up to n - 1 more: each claimed child gets its own stream entry,
-- pending for this worker at once (XCLAIM ... FORCE), and its deps field says who
-- claimed it ("@<worker>": ``take`` hands the entry back to that worker if another
-- reads it); "L" the output was NOT stored (it stays in the worker's memory): count
-- the task only if its one child becomes ready now, and keep that child, marking
-- the decision "<child>*" (a re-run after a crash recomputes this task first);
-- otherwise answer "upload" and change nothing. With several children (fan-out
-- clustering of an output that is each child's one input) the same, when all of them
-- become ready now: the first kept, the others claimed for this worker (a worker that
-- gives one back stores the output first).
-- "W" (delayed I/O, a large output): each child that is not ready yet and has no
-- waiter gets this worker as its waiter (one per child, set here: two large parents
-- never wait for each other). When the completion of its last parent makes such a
-- child ready (here or in a later call, on any worker), it is claimed for its waiter,
-- if that worker lives (its live key), and a note {r, t, e: entry} on the waiter's
-- inbox stream wakes it; a child this worker waited for is kept or claimed here. Both
-- sides are in one script each, so no wake-up is lost between them.
--
-- Lanes: a run whose meta has "lanes" (the lane streams' names up to the lane) has
-- tasks that need resources or have a priority; the lanes hash names each one's lane.
-- Such a child, when ready, gets an entry in its lane's stream, always: it is never
-- kept, claimed, waited for or given an input inline (the worker that reads it may be
-- another one: it must be able to hold the task's resources), and an output kept in
-- memory (mode "L") whose child is in a lane is stored first ("upload").
--
-- One progress entry lists the tasks counted by this call ("t": "3,5,8"). The call
-- that counts a run's last task finishes it; a sub-run's end (its meta names the task
-- whose returned graph it is: then_run, then_task) also adds an entry {r, t, x: "1"}
-- to the tasks stream, which completes that task with the sub-run's result.
-- Reply: one {code, kept, entry, child, ...} per task: code "ok" (counted now), "dup"
-- (counted before: the same decision again), "stop" (the run is not running; the
-- output is deleted), "missing" (no output stored: nothing counted), "upload" (mode
-- "L" and the child is not ready: store the output and complete again); kept is the
-- child the worker must run next ("*" appended: its input is in memory only), or "";
-- then, on "ok", each child claimed for this worker with its entry, and each child it
-- now waits for with an empty entry (a "dup" repeats none of them: claimed entries are
-- pending, and taken over if the worker died; a dead waiter is passed over).

local meta = redis.call('HMGET', KEYS[1], 'status', 'waits', 'lanes')
local status, waits, lanes = meta[1], meta[2], meta[3]
local running = status == 'running'
local replies = {}
local acks = {}    -- entries to acknowledge, in one XACK at the end
local counted = {} -- tasks counted now, in one progress entry at the end
local worker, alive, inbox = ARGV[2], ARGV[5], ARGV[6]
local pos = 8

-- A new entry for a ready child, pending at once for worker ``w`` (it claims it).
local function claim(child, w)
  local id = redis.call('XADD', KEYS[6], '*', 'r', ARGV[1], 't', child)
  redis.call('XCLAIM', KEYS[6], ARGV[3], w, 0, id, 'FORCE', 'JUSTID')
  redis.call('HSET', KEYS[2], child, '@' .. w)
  return id
end

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
  local inline = string.byte(may_keep, -1) == 86 -- "V"
  if inline then may_keep = string.sub(may_keep, 1, -2) end
  local may_wait = string.byte(may_keep, -1) == 87 -- "W"
  if may_wait then may_keep = string.sub(may_keep, 1, -2) end
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
  local output = KEYS[8 + j]

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
      local ready = n_children > 0
      for c = first_child, first_child + n_children - 1 do
        if tonumber(redis.call('HGET', KEYS[2], ARGV[c])) ~= 1 then ready = false end
        if lanes and redis.call('HEXISTS', KEYS[8], ARGV[c]) == 1 then ready = false end
      end
      if ready then -- every child becomes ready now: the first kept, the others claimed
        local child = ARGV[first_child]
        local reply = {'ok', child .. '*'}
        redis.call('HSET', KEYS[2], child, 0)
        for c = first_child, first_child + n_children - 1 do
          if waits then redis.call('HDEL', KEYS[7], ARGV[c]) end -- (kept here instead)
          if c > first_child then
            reply[#reply + 1] = claim(ARGV[c], worker)
            reply[#reply + 1] = ARGV[c]
          end
        end
        redis.call('HSET', KEYS[3], index, child .. '*')
        counted[#counted + 1] = index
        replies[j] = reply
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
          local child = ARGV[c]
          local left = redis.call('HINCRBY', KEYS[2], child, -1)
          local lane = lanes and redis.call('HGET', KEYS[8], child)
          if lane then
            if left == 0 then redis.call('XADD', lanes .. lane, '*', 'r', ARGV[1], 't', child) end
          elseif left == 0 then
            local waiter = waits and redis.call('HGET', KEYS[7], child)
            if waiter then redis.call('HDEL', KEYS[7], child) end
            if waiter and waiter ~= worker and redis.call('EXISTS', alive .. waiter) == 1 then
              -- delayed I/O: the child runs where its large input waits for it
              local id = claim(child, waiter)
              redis.call('XADD', inbox .. waiter, 'MAXLEN', '~', 1000, '*',
                'r', ARGV[1], 't', child, 'e', id)
            elseif kept == '' and may_keep == '1' then
              kept = child
            elseif cluster > 0 or waiter == worker then
              reply[#reply + 1] = claim(child, worker)
              reply[#reply + 1] = child
              if waiter ~= worker then cluster = cluster - 1 end
            elseif inline then
              if inline == true then inline = redis.call('GET', output) end
              redis.call('XADD', KEYS[6], '*', 'r', ARGV[1], 't', child, 'i', index, 'v', inline)
            else
              redis.call('XADD', KEYS[6], '*', 'r', ARGV[1], 't', child)
            end
          elseif may_wait and left > 0 and redis.call('HSETNX', KEYS[7], child, worker) == 1 then
            if not waits then -- the run's first waiter: completions look from now on
              waits = '1'
              redis.call('HSET', KEYS[1], 'waits', 1)
              local ttl = redis.call('PTTL', KEYS[1])
              if ttl > 0 then redis.call('PEXPIRE', KEYS[7], ttl) end
            end
            reply[#reply + 1] = ''
            reply[#reply + 1] = child
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
    if ARGV[7] ~= '' then
      redis.call('HSET', KEYS[1], 'end_tag', ARGV[7]) -- (a sub-run's end is read here)
      redis.call('XADD', KEYS[5], '*', 'e', 'finished', 'm', ARGV[7])
    else
      redis.call('XADD', KEYS[5], '*', 'e', 'finished')
    end
    -- A sub-run (the graph a task returned): an entry {r, t, x} now completes that task.
    local parent = redis.call('HMGET', KEYS[1], 'then_run', 'then_task')
    if parent[1] then
      redis.call('XADD', KEYS[6], '*', 'r', parent[1], 't', parent[2], 'x', '1')
    end
  end
end
return replies
