-- Take entries of the tasks stream for a worker, screened: a worker runs an entry only
-- if its task may run now. An entry that names a task completed before (a redelivery, a
-- duplicate written by hand) or a task of a run that ended is acknowledged here, and the
-- worker never sees it run; one that names a task whose parents are not all done is
-- answered "early" (the worker dead-letters it: dagrt never writes one).
--
-- KEYS[1] the tasks stream
-- ARGV[1] the consumer group   ARGV[2] the consumer   ARGV[3] how many entries to read
--   from the tasks stream and as many notes from the consumer's inbox (0: read none;
--   the entries a blocking read has just delivered follow ARGV[9], each as its id, its
--   run id, its task index and, for a note of the inbox, the note's id, else "")
-- ARGV[4] a run's keys up to its id ("dagrt:{"); ARGV[5], ARGV[6], ARGV[7] after it,
--   of its meta, done and deps hashes ("}:meta", "}:done", "}:deps")
-- ARGV[8] the key of a live worker up to its id ("dagrt:worker:")
-- ARGV[9] the consumer's inbox: notes {r, t, e} that an entry of the tasks stream, e,
--   is pending for it now (a task it waited for became ready: delayed I/O). A note is
--   acknowledged and deleted as it is read, and its entry screened in its stead. ""
--   when the consumer waits for no task: the inbox is not read (it costs 2-3% of a
--   tree reduction's time to read two streams every time).
-- Reply: six values per entry: its id, its verdict, its run id, its task index (false
-- if it has none), and the input that came inline in the entry (``complete``'s mode
-- "V": the index of the parent and its output key's value; false and false if none). Verdicts: "run"; "ended" (the run is not running: acked);
-- "done" (the task's completion is remembered: acked); "early" (parents not done);
-- "unknown" (no such run, or a run id dagrt never makes: the worker decides); "odd"
-- (fields other than the run and the task, in that order: the worker reads them whole);
-- "claimed" (fan-out clustering: the worker that made the task's large input claimed
-- it, and its deps field says "@<worker>"): the entry is that worker's, handed back to
-- it (XCLAIM) when another reads it, unless that worker is gone (its live key expired):
-- then the reader runs it ("run"); "woken": the entry of a note of this worker's inbox,
-- claimed for it (run it: a task it waited for); "gone": an entry a blocking read
-- delivered that was deleted before this call (given back: its new entry runs it).
-- Two entries of one task not done yet both run (the second completion answers "dup").
-- Cost: every read of a worker goes through here, so it is kept lean: six flat values
-- per entry (the fields as XREADGROUP gives them cost the server a third more), one
-- HGET per run and two per entry.

local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local head, meta, done, deps, alive = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local inbox = ARGV[9]
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
local function screen(id, run, task, woken, parent, value)
  local r = runs[run]
  if r == nil then
    local status = redis.pcall('HGET', head .. run .. meta, 'status')
    r = type(status) == 'string' and {status, head .. run .. done, head .. run .. deps}
    runs[run] = r
  end
  local v = 'run'
  if not r then
    v = 'unknown' -- (or a meta that is not a hash, or a run id dagrt never makes)
  elseif r[1] ~= 'running' then
    v = 'ended'
  elseif type(redis.pcall('HGET', r[2], task)) == 'string' then
    v = 'done'
  else
    local d = redis.pcall('HGET', r[3], task)
    if type(d) == 'string' and string.byte(d, 1) == 64 then -- "@<worker>": claimed
      local owner = string.sub(d, 2)
      if owner == me then
        v = woken and 'woken' or 'claimed' -- (else it runs here already, or its note will)
      elseif redis.call('EXISTS', alive .. owner) == 1 then
        redis.call('XCLAIM', stream, group, owner, 0, id, 'JUSTID')
        v = 'claimed'
      end
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
  if #f == 6 and f[1] == 'r' and f[3] == 't' and f[5] == 'e' then
    screen(f[6], f[2], f[4], true)
  end
end

if tonumber(ARGV[3]) > 0 then
  local read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', ARGV[3], 'STREAMS', stream, '>'}
  if inbox ~= '' then
    read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', ARGV[3], 'STREAMS', stream, inbox,
      '>', '>'}
  end
  local reply = redis.pcall(unpack(read))
  if type(reply) == 'table' and reply.err and inbox ~= '' then
    -- No inbox group (a new worker, a flushed server): make it, then read again (a
    -- missing tasks group is for the worker to make: the error goes to it).
    redis.pcall('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
    reply = redis.call(unpack(read))
  end
  for _, read in ipairs(reply or {}) do
    if read[1] == inbox then
      for _, entry in ipairs(read[2]) do note(entry[1], entry[2]) end
    else
      for _, entry in ipairs(read[2]) do
        local f = entry[2]
        if #f == 4 and f[1] == 'r' and f[3] == 't' then -- the shape dagrt writes
          screen(entry[1], f[2], f[4], false)
        elseif #f == 8 and f[1] == 'r' and f[3] == 't' and f[5] == 'i' and f[7] == 'v' then
          screen(entry[1], f[2], f[4], false, f[6], f[8]) -- (with an input inline)
        else -- the worker reads it whole and dead-letters it
          answer(entry[1], 'odd', false, false)
        end
      end
    end
  end
else
  for i = 10, #ARGV, 4 do
    if ARGV[i + 3] ~= '' then
      note(ARGV[i + 3], {'r', ARGV[i + 1], 't', ARGV[i + 2], 'e', ARGV[i]})
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
