-- Take entries of the tasks stream for a worker, screened: a worker runs an entry only
-- if its task may run now. An entry that names a task completed before (a redelivery, a
-- duplicate written by hand) or a task of a run that ended is acknowledged here, and the
-- worker never sees it run; one that names a task whose parents are not all done is
-- answered "early" (the worker dead-letters it: dagrt never writes one).
--
-- KEYS[1] the tasks stream
-- ARGV[1] the consumer group   ARGV[2] the consumer   ARGV[3] how many entries to read
--   from the tasks stream and as many notes from the consumer's inbox (0: read none;
--   the entries a blocking read has just delivered follow the lanes, each as its id,
--   its run id, its task index and, for a note of the inbox, the note's id, for an
--   entry of a lane's stream "@" and the lane (or "!" and the lane: one more than the
--   worker may take now, put back at the end of its lane), else "")
-- ARGV[4] a run's keys up to its id ("dagrt:{"); ARGV[5], ARGV[6], ARGV[7] after it,
--   of its meta, done and deps hashes ("}:meta", "}:done", "}:deps")
-- ARGV[8] the key of a live worker up to its id ("dagrt:worker:")
-- ARGV[10] the number of lanes the worker reads, n (dagrt.resources; 0: the tasks
--   stream only), ARGV[11] the lane streams' names up to the lane, then n pairs: a lane
--   ("" for the tasks stream) and how many of its entries to take at most, in the order
--   to read them (highest priority first). An entry read from a lane's stream is moved:
--   acknowledged and deleted there, and added to the tasks stream as {r, t, l: lane},
--   pending for this worker (its deps field "@<worker>", as a claim), so that it is
--   acknowledged, renewed and taken over as any other. An entry {r, t, l} whose claimer
--   is gone, read by a worker that does not read lane l, is left pending ("claimed"):
--   a reclaimer takes it over, and gives it back to its lane if it cannot hold it.
-- ARGV[9] the consumer's inbox: notes {r, t, e} that an entry of the tasks stream, e,
--   is pending for it now (a task it waited for became ready: delayed I/O). A note is
--   acknowledged and deleted as it is read, and its entry screened in its stead. ""
--   when the consumer waits for no task: the inbox is not read (it costs 2-3% of a
--   tree reduction's time to read two streams every time).
-- Reply: six values per entry: its id, its verdict, its run id, its task index (false
-- if it has none), and the input that came inline in the entry (``complete``'s mode
-- "V": the index of the parent and its output key's value; false and false if none).
-- Verdicts: "run"; "ended" (the run is not running: acked);
-- "done" (the task's completion is remembered: acked); "early" (parents not done);
-- "unknown" (no such run, or a run id dagrt never makes: the worker decides); "odd"
-- (fields other than the run and the task, in that order: the worker reads them whole);
-- "claimed" (fan-out clustering, a lane's entry moved, a delayed I/O's waiter: the
-- worker claimed it, and its deps field says "@<worker>"): the entry is that worker's
-- (it may hold it for a child its completion kept: a claim is looked at before the
-- task's remembered completion), handed back to it (XCLAIM) when another reads it,
-- unless that worker is gone (its live key expired): then the reader runs it ("run"),
-- or, if the task completed, acknowledges it ("done"); "lane": an entry moved from a
-- lane (run it; its lane in place of the inline input's parent); "woken": the entry of
-- a note of this worker's inbox, claimed for it (run it: a task it waited for); "gone":
-- an entry a blocking read delivered that was deleted before this call (given back:
-- its new entry runs it).
-- Two entries of one task not done yet both run (the second completion answers "dup").
-- Cost: every read of a worker goes through here, so it is kept lean: six flat values
-- per entry (the fields as XREADGROUP gives them cost the server a third more), one
-- HGET per run and two per entry.

local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local head, meta, done, deps, alive = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local inbox = ARGV[9]
local n_lanes, lane_head = tonumber(ARGV[10]), ARGV[11]
local mine = {} -- the lanes this worker reads
for i = 12, 11 + 2 * n_lanes, 2 do mine[ARGV[i]] = true end
local runs = {} -- run id -> {status, done key, deps key}, or false: no such run
local out, acks = {}, {}

-- One entry of the reply: its id, its verdict, its run id, its task index, and the
-- parent and value of an input inline in it (or false).
local function answer(id, v, run, task, parent, value)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, v, run, task
  out[n + 5], out[n + 6] = parent or false, value or false
end

-- ``woken``: the entry comes with a note of the inbox (a claim for this worker: run it);
-- ``parent``, ``value``: an input inline in the entry
local function screen(id, run, task, woken, parent, value, lane)
  local r = runs[run]
  if r == nil then
    local status = redis.pcall('HGET', head .. run .. meta, 'status')
    r = type(status) == 'string' and {status, head .. run .. done, head .. run .. deps}
    runs[run] = r
  end
  local v = 'run'
  local previous = r and r[1] == 'running' and redis.pcall('HGET', r[2], task)
  if not r then
    v = 'unknown' -- (or a meta that is not a hash, or a run id dagrt never makes)
  elseif r[1] ~= 'running' then
    v = 'ended'
  elseif previous == '' then
    v = 'done' -- (completed keeping no child: its entry holds nothing)
  else
    -- A task completed keeping a child may have its entry held for that child by the
    -- worker that claimed it: a claim is looked at first, so that the entry of a claimed
    -- task (a moved or clustered one a read delivers again) is never acknowledged here.
    local done_before = type(previous) == 'string'
    local d = redis.pcall('HGET', r[3], task)
    if type(d) == 'string' and string.byte(d, 1) == 64 then -- "@<worker>": claimed
      local owner = string.sub(d, 2)
      if owner == me then
        -- (it runs here already, or its note will)
        v = (woken and not done_before) and 'woken' or 'claimed'
      elseif redis.call('EXISTS', alive .. owner) == 1 then
        redis.call('XCLAIM', stream, group, owner, 0, id, 'JUSTID')
        v = 'claimed'
      elseif done_before then
        v = 'done'
      elseif lane and not mine[lane] then
        -- (its claimer is gone and this worker cannot hold it: left pending, for a
        -- reclaimer that can, or that gives it back to its lane)
        v = 'claimed'
      end
    elseif done_before then
      v = 'done'
    else
      local left = tonumber(d)
      if left and left > 0 then v = 'early' end
    end
  end
  if v == 'ended' or v == 'done' then acks[#acks + 1] = id end
  if v == 'run' then
    answer(id, v, run, task, parent, value)
  else
    answer(id, v, run, task)
  end
end

-- A note of the inbox: gone once read; its entry is screened instead.
local function note(id, f)
  redis.call('XACK', inbox, group, id)
  redis.call('XDEL', inbox, id)
  if #f == 6 and f[1] == 'r' and f[3] == 't' and f[5] == 'e' and f[6] ~= '' then
    screen(f[6], f[2], f[4], true)
  end
end

-- An entry of the tasks stream as it was read.
local function entry_of(id, f)
  if #f == 4 and f[1] == 'r' and f[3] == 't' then -- the shape dagrt writes
    screen(id, f[2], f[4], false)
  elseif #f == 8 and f[1] == 'r' and f[3] == 't' and f[5] == 'i' and f[7] == 'v' then
    screen(id, f[2], f[4], false, f[6], f[8]) -- (with an input inline)
  elseif #f == 6 and f[1] == 'r' and f[3] == 't' and f[5] == 'l' then
    screen(id, f[2], f[4], false, nil, nil, f[6]) -- (moved from a lane)
  else -- the worker reads it whole and dead-letters it
    answer(id, 'odd', false, false)
  end
end

-- An entry read from a lane's stream: moved to the tasks stream, pending for this
-- worker (claimed by it), then screened there.
local function move(id, lane, f)
  local from = lane_head .. lane
  redis.call('XACK', from, group, id)
  redis.call('XDEL', from, id)
  local shaped = #f == 4 and f[1] == 'r' and f[3] == 't'
  local new
  if shaped then
    new = redis.call('XADD', stream, '*', 'r', f[2], 't', f[4], 'l', lane)
  else
    new = redis.call('XADD', stream, '*', unpack(f))
  end
  redis.call('XCLAIM', stream, group, me, 0, new, 'FORCE', 'JUSTID')
  if not shaped then return answer(new, 'odd', false, false) end
  local at = #out
  screen(new, f[2], f[4], false)
  if out[at + 2] == 'run' then
    out[at + 2], out[at + 5] = 'lane', lane
    local deps = runs[f[2]][3]
    redis.call('HSET', deps, f[4], '@' .. me)
    if redis.call('PTTL', deps) == -1 then -- (a run of roots only had no deps hash)
      local ttl = redis.call('PTTL', head .. f[2] .. meta)
      if ttl > 0 then redis.call('PEXPIRE', deps, ttl) end
    end
  end
end

-- Read up to ``n`` entries of one lane's stream (making its group if need be).
local function read_lane(lane, n)
  local from = lane_head .. lane
  local read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', n, 'STREAMS', from, '>'}
  local reply = redis.pcall(unpack(read))
  if type(reply) == 'table' and reply.err then
    redis.pcall('XGROUP', 'CREATE', from, group, '0', 'MKSTREAM')
    reply = redis.call(unpack(read))
  end
  local got = 0
  for _, r in ipairs(reply or {}) do
    for _, entry in ipairs(r[2]) do
      move(entry[1], lane, entry[2])
      got = got + 1
    end
  end
  return got
end

-- Read up to ``n`` entries of the tasks stream, and as many notes of the inbox.
local function read_main(n)
  local read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', n, 'STREAMS', stream, '>'}
  if inbox ~= '' then
    read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', n, 'STREAMS', stream, inbox, '>', '>'}
  end
  local reply = redis.pcall(unpack(read))
  if type(reply) == 'table' and reply.err and inbox ~= '' then
    -- No inbox group (a new worker, a flushed server): make it, then read again (a
    -- missing tasks group is for the worker to make: the error goes to it).
    redis.pcall('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
    reply = redis.call(unpack(read))
  end
  local got = 0
  for _, r in ipairs(reply or {}) do
    if r[1] == inbox then
      for _, entry in ipairs(r[2]) do note(entry[1], entry[2]) end
    else
      for _, entry in ipairs(r[2]) do entry_of(entry[1], entry[2]) end
      got = #r[2]
    end
  end
  return got
end

local count = tonumber(ARGV[3])
if count > 0 and n_lanes == 0 then
  read_main(count)
elseif count > 0 then
  local main_read = false
  for i = 12, 11 + 2 * n_lanes, 2 do
    local n = math.min(count, tonumber(ARGV[i + 1]))
    if n > 0 then
      if ARGV[i] == '' then
        count = count - read_main(n)
        main_read = true
      else
        count = count - read_lane(ARGV[i], n)
      end
    end
    if count <= 0 then break end
  end
  if not main_read and inbox ~= '' then -- (the notes of the inbox are not kept waiting)
    local read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', ARGV[3], 'STREAMS', inbox, '>'}
    local reply = redis.pcall(unpack(read))
    if type(reply) == 'table' and reply.err then
      redis.pcall('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
      reply = redis.call(unpack(read))
    end
    for _, r in ipairs(reply or {}) do
      for _, entry in ipairs(r[2]) do note(entry[1], entry[2]) end
    end
  end
else
  for i = 12 + 2 * n_lanes, #ARGV, 4 do
    local tag = ARGV[i + 3]
    if tag ~= '' and string.byte(tag, 1) == 64 then -- "@<lane>": read from a lane
      local lane = string.sub(tag, 2)
      local found = redis.call('XRANGE', lane_head .. lane, ARGV[i], ARGV[i])[1]
      if found then move(ARGV[i], lane, found[2]) end
    elseif tag ~= '' and string.byte(tag, 1) == 33 then -- "!<lane>": more than it may take
      local from = lane_head .. string.sub(tag, 2)
      local found = redis.call('XRANGE', from, ARGV[i], ARGV[i])[1]
      redis.call('XACK', from, group, ARGV[i])
      if found then -- (to the end of its lane, for a worker with room)
        redis.call('XDEL', from, ARGV[i])
        redis.call('XADD', from, '*', unpack(found[2]))
      end
    elseif tag ~= '' then
      note(tag, {'r', ARGV[i + 1], 't', ARGV[i + 2], 'e', ARGV[i]})
    elseif #redis.call('XRANGE', stream, ARGV[i], ARGV[i]) == 0 then
      -- Deleted since the read delivered it (given back meanwhile, with its claim
      -- cleared: its new entry runs it): nothing to run.
      answer(ARGV[i], 'gone', ARGV[i + 1], ARGV[i + 2])
    else
      screen(ARGV[i], ARGV[i + 1], ARGV[i + 2], false)
    end
  end
end

if #acks > 0 then
  redis.call('XACK', stream, group, unpack(acks))
end
return out
