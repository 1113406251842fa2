import { describe, expect, it } from 'vitest';
import type { RawEvent, WireEvent } from '../api';
import { NameTable, toChunk } from './events';
import { failures, nodeRecord, transferEdges, transferTotals } from './derive';
import { graphData } from './graph';
import { RunStore } from './runstore';

// a → b, a → c, (b, c) → d
const GRAPH = {
  keys: ['a', 'b', 'c', 'd'],
  names: ['load', 'inc', 'inc', 'sum'],
  parents: [[], [0], [0], [1, 2]],
  outputs: [3],
};
const T0 = 1_700_000_000;

function ev(kind: string, fields: Record<string, unknown>): RawEvent {
  return { kind, ts: T0, run_id: 'r', worker_id: '', ...fields } as RawEvent;
}

function finished(task: number, worker: string, start: number, end: number, extra: Record<string, unknown> = {}): RawEvent {
  return ev('task-finished', {
    ts: T0 + end, worker_id: worker, task, key: GRAPH.keys[task], name: GRAPH.names[task], attempt: 1,
    start: T0 + start, end: T0 + end, execution_time: end - start, input_bytes: 10, output_bytes: 20,
    download_time: 0, upload_time: 0, kept: false, ...extra,
  });
}

function transfer(producer: number, consumer: number | null, bytes: number, direction: string, worker: string, at: number): RawEvent {
  return ev('transfer', {
    ts: T0 + at, worker_id: worker, key: `o:${producer}`, bytes, seconds: 0.001, direction,
    producer, consumer, local: direction === 'local',
  });
}

/** The run's events: one per entry, k = 0 (ids "1000-<i>/0"), unless grouped. */
const EVENTS: RawEvent[] = [
  ev('run-submitted', { ts: T0, n_tasks: 4 }),
  ev('task-started', { ts: T0 + 1, worker_id: 'w1', task: 0, key: 'a', name: 'load', attempt: 1 }),
  finished(0, 'w1', 1, 2),
  transfer(0, null, 20, 'upload', 'w1', 2),
  finished(1, 'w1', 2.5, 3.5),
  transfer(0, 1, 20, 'local', 'w1', 2.5),
  finished(2, 'w2', 2.6, 4),
  transfer(0, 2, 20, 'download', 'w2', 2.6),
  ev('task-failed', {
    ts: T0 + 5, worker_id: 'w2', task: 3, key: 'd', name: 'sum', attempt: 1,
    exc_type: 'ValueError', message: 'boom', traceback: 'Traceback...\nValueError: boom\n', final: true,
  }),
  ev('run-finished', { ts: T0 + 5.5, status: 'failed', makespan: 5.5, failed_task: 'd' }),
];

function wire(events: RawEvent[], firstSeq = 0): WireEvent[] {
  return events.map((e, i) => [`1000-${firstSeq + i}`, 0, e]);
}

function makeStore(): { store: RunStore; names: NameTable } {
  const store = new RunStore(graphData(GRAPH), null);
  return { store, names: new NameTable() };
}

function feed(store: RunStore, names: NameTable, events: WireEvent[]): void {
  store.receive(toChunk(events, names, events.length ? events[events.length - 1][0] : '0-0'));
  store.applySome(Infinity);
}

const stateOf = (store: RunStore) => ['a', 'b', 'c', 'd'].map((k) => nodeRecord(store, store.keyIndex(k))!.state);

describe('reducer: states over a sequence of events', () => {
  it('moves nodes through waiting, ready, running, done, failed', () => {
    const { store, names } = makeStore();
    const all = wire(EVENTS);
    const seen: string[][] = [];
    for (const event of all) {
      feed(store, names, [event]);
      seen.push(stateOf(store));
    }
    expect(seen[0]).toEqual(['ready', 'waiting', 'waiting', 'waiting']); // submitted
    expect(seen[1]).toEqual(['running', 'waiting', 'waiting', 'waiting']); // a started
    expect(seen[2]).toEqual(['done', 'ready', 'ready', 'waiting']); // a finished
    expect(seen[4]).toEqual(['done', 'done', 'ready', 'waiting']); // b finished
    expect(seen[6]).toEqual(['done', 'done', 'done', 'ready']); // c finished
    expect(seen[8]).toEqual(['done', 'done', 'done', 'failed']); // d failed (final)
    expect(store.status()).toBe('failed');
    expect(store.counts()).toEqual({ waiting: 0, ready: 0, running: 0, done: 3, failed: 1 });
    expect(store.workerCounts()).toEqual({ w1: 2, w2: 1 });
    expect(store.reducer.appliedCount).toBe(EVENTS.length);
    expect(store.log.id(store.lastApplied)).toBe(`1000-${EVENTS.length - 1}/0`);
  });

  it('keeps the error record, worker and timings of a node', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    const d = nodeRecord(store, 3)!;
    expect(d.error).toEqual({ exc_type: 'ValueError', message: 'boom', traceback: 'Traceback...\nValueError: boom\n' });
    expect(d.worker).toBe('w2');
    const c = nodeRecord(store, 2)!;
    expect(c.start).toBeCloseTo(2.6);
    expect(c.end).toBeCloseTo(4);
    expect(c.inputBytes).toBe(10);
    expect(failures(store).map((f) => [f.key, f.exc_type, f.message])).toEqual([['d', 'ValueError', 'boom']]);
  });

  it('a non-final failure waits for its retry', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS.slice(0, 7)));
    feed(store, names, wire([
      ev('task-started', { ts: T0 + 4.1, worker_id: 'w1', task: 3, key: 'd', name: 'sum', attempt: 1 }),
      ev('task-failed', { ts: T0 + 4.2, worker_id: 'w1', task: 3, key: 'd', name: 'sum', attempt: 1,
        exc_type: 'OSError', message: 'flaky', traceback: '', final: false }),
    ], 100));
    expect(nodeRecord(store, 3)!.state).toBe('ready');
    expect(failures(store)).toEqual([]);
    feed(store, names, wire([finished(3, 'w2', 4.5, 4.8, { attempt: 2 })], 200));
    const d = nodeRecord(store, 3)!;
    expect([d.state, d.attempt, d.worker, d.error]).toEqual(['done', 2, 'w2', null]);
    expect(d.lastError?.message).toBe('flaky');
  });

  it('sums transfers: network, local, per worker, per edge', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    const t = transferTotals(store);
    expect(t.network).toBe(40);
    expect(t.local).toBe(20);
    expect(t.perWorker).toEqual({ w1: 40, w2: 20 });
    expect(transferEdges(store).sort((x, y) => x.consumer - y.consumer)).toEqual([
      { producer: 0, consumer: 1, bytes: 20, local: true },
      { producer: 0, consumer: 2, bytes: 20, local: false },
    ]);
  });
});

describe('reducer: bytes by the path they took', () => {
  // a's output: mapped by b from the host's store, fetched by c from another host,
  // computed again for d; an upload; an output written to the host's store; a
  // direction this page does not know
  const PATHS: RawEvent[] = [
    ev('run-submitted', { ts: T0, n_tasks: 4 }),
    transfer(0, null, 1000, 'upload', 'w1', 1),
    transfer(3, null, 11, 'store', 'w2', 3),
    transfer(0, 1, 1000, 'map', 'w1', 2),
    transfer(0, 2, 1000, 'direct', 'w2', 2),
    transfer(1, 3, 7, 'recompute', 'w2', 3),
    transfer(2, 3, 5, 'teleport', 'w2', 3),
  ];

  it('counts each path as the report does: mapped, stored and computed again on the host', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(PATHS));
    const t = transferTotals(store);
    expect(t.byPath).toEqual({ upload: 1000, map: 1000, direct: 1000, recompute: 7, store: 11, other: 5 });
    expect(t.local).toBe(1018);
    expect(t.network).toBe(2005);
    const edges = transferEdges(store).sort((x, y) => x.consumer - y.consumer || x.producer - y.producer);
    expect(edges.map((e) => [e.producer, e.consumer, e.local])).toEqual([
      [0, 1, true], [0, 2, false], [1, 3, true], [2, 3, false],
    ]);
  });

  it('reads the same from a batch of transfers (directions as indexes)', () => {
    const { store, names } = makeStore();
    const batch = ev('transfers', {
      ts: T0 + 2, worker_id: 'w2', n: 6, bytes: [1000, 1000, 1000, 7, 5, 11],
      seconds: [0, 0, 0, 0, 0, 0], direction: [0, 3, 4, 5, 42, 6], producer: [0, 0, 0, 1, 2, 3],
      consumer: [-1, 1, 2, 3, 3, -1], local: [0, 0, 0, 0, 0, 0],
    });
    feed(store, names, wire([PATHS[0], batch]));
    const t = transferTotals(store);
    expect(t.byPath).toEqual({ upload: 1000, map: 1000, direct: 1000, recompute: 7, store: 11, other: 5 });
    expect([t.local, t.network]).toEqual([1018, 2005]);
  });
});

describe('reducer: why tasks ran where they did', () => {
  it('says each placement and the bytes kept from moving by it', () => {
    const { store, names } = makeStore();
    const batch = ev('tasks-finished', {
      ts: T0 + 3, worker_id: 'w1', n: 2, task: [1, 2], attempt: [1, 1], start: [T0 + 2, T0 + 2],
      end: [T0 + 3, T0 + 3], execution_time: [1, 1], input_bytes: [20, 20], output_bytes: [8, 8],
      download_time: [0, 0], upload_time: [0, 0], kept: [1, 1], placed: [3, 3], // cluster
    });
    feed(store, names, wire([
      ev('run-submitted', { ts: T0, n_tasks: 4 }),
      finished(0, 'w1', 1, 2, { placed: 'dispatched' }),
      transfer(0, 1, 20, 'local', 'w1', 2),
      transfer(0, 2, 20, 'local', 'w1', 2),
      batch,
      finished(3, 'w2', 4, 5, { placed: 'delayed' }),
      transfer(1, 3, 8, 'local', 'w2', 4),
      transfer(2, 3, 8, 'download', 'w2', 4),
    ]));
    expect([0, 1, 2, 3].map((i) => nodeRecord(store, i)!.placed)).toEqual(['dispatched', 'cluster', 'cluster', 'delayed']);
    expect(transferTotals(store).avoidedBy).toEqual({ cluster: 40, delayed: 8 });
  });

  it('says nothing for a log that does not say', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    expect(nodeRecord(store, 1)!.placed).toBe('');
    expect(transferTotals(store).avoidedBy).toEqual({ 'not said': 20 });
  });
});

describe('reducer: attempts that did not run because the run ended', () => {
  it('are not failures of their tasks (as the report counts)', () => {
    const { store, names } = makeStore();
    feed(store, names, wire([
      ev('run-submitted', { ts: T0, n_tasks: 4 }),
      ev('task-started', { ts: T0 + 1, worker_id: 'w1', task: 1, key: 'b', name: 'inc', attempt: 1 }),
      ev('task-failed', {
        ts: T0 + 2, worker_id: 'w1', task: 0, key: 'a', name: 'load', attempt: 1,
        exc_type: 'ValueError', message: 'boom', traceback: '', final: true,
      }),
      ev('task-failed', {
        ts: T0 + 2.1, worker_id: 'w1', task: 1, key: 'b', name: 'inc', attempt: 1,
        exc_type: 'dagrt.RunEnded', message: 'its run ended', traceback: '', final: true,
      }),
      ev('run-finished', { ts: T0 + 2.2, status: 'failed', makespan: 2.2, failed_task: 'a' }),
    ]));
    expect(store.counts().failed).toBe(1);
    expect(failures(store).map((f) => f.key)).toEqual(['a']);
    expect(nodeRecord(store, 1)!.state).not.toBe('failed');
  });
});

describe('reducer: replay to a time t', () => {
  it('shows a task running between its start and end, done after', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    store.seek(0.5);
    expect(stateOf(store)).toEqual(['ready', 'waiting', 'waiting', 'waiting']);
    store.seek(1.5); // a started at 1 (task-started) and finishes at 2
    expect(stateOf(store)).toEqual(['running', 'waiting', 'waiting', 'waiting']);
    store.seek(3);
    expect(stateOf(store)).toEqual(['done', 'running', 'running', 'waiting']);
    expect(store.status()).toBe('running');
    store.seek(2); // backwards: recomputed from the start
    expect(stateOf(store)).toEqual(['done', 'ready', 'ready', 'waiting']);
    expect(store.counts()).toEqual({ waiting: 1, ready: 2, running: 0, done: 1, failed: 0 });
    store.seek(100);
    expect(stateOf(store)).toEqual(['done', 'done', 'done', 'failed']);
    expect(store.replayTime).toBe(100);
    store.goLive();
    expect(store.live).toBe(true);
    expect(store.replayTime).toBeCloseTo(5.5);
    expect(store.duration).toBeCloseTo(5.5);
  });

  it('applies exactly the events at or before t, and counts them', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    store.seek(2.55);
    // times: 0, 1, 1 (start of a), 2, 2.5 (start of b), 2.5 → 6 events
    expect(store.reducer.appliedCount).toBe(6);
    expect(transferTotals(store).local).toBe(20);
    expect(transferTotals(store).network).toBe(20);
  });

  it('steps one event at a time, forward and back', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    store.seek(0);
    expect(store.reducer.appliedCount).toBe(1);
    const ids: string[] = [];
    while (store.stepForward()) ids.push(store.log.id(store.lastApplied));
    expect(ids.length).toBe(EVENTS.length - 1);
    expect(new Set(ids).size).toBe(ids.length);
    expect(store.reducer.appliedCount).toBe(EVENTS.length);
    expect(stateOf(store)).toEqual(['done', 'done', 'done', 'failed']);
    const back: number[] = [];
    while (store.stepBack()) back.push(store.reducer.appliedCount);
    expect(back).toEqual(Array.from({ length: EVENTS.length }, (_, i) => EVENTS.length - 1 - i));
  });

  it('stepping forward gives the same state as seeking', () => {
    const { store, names } = makeStore();
    feed(store, names, wire(EVENTS));
    const other = makeStore();
    feed(other.store, other.names, wire(EVENTS));
    store.seek(0);
    while (store.stepForward()) {
      other.store.seek(store.replayTime);
      expect(stateOf(store)).toEqual(stateOf(other.store));
      expect(store.counts()).toEqual(other.store.counts());
    }
  });

  it('tolerates any apply order (late task-started, early finish)', () => {
    const events = wire(EVENTS);
    const reference = makeStore();
    feed(reference.store, reference.names, events);
    const shuffled = makeStore();
    shuffled.store.receive(toChunk(events, shuffled.names, 'x'));
    shuffled.store.considered = events.length;
    const order = [9, 2, 1, 0, 8, 6, 4, 3, 5, 7];
    for (const p of order) shuffled.store.reducer.apply(shuffled.store.log, p);
    shuffled.store.changed();
    expect(stateOf(shuffled.store)).toEqual(stateOf(reference.store));
  });
});

describe('reducer: every event once', () => {
  it('drops events it already has (resent entries, overlapping batches)', () => {
    const { store, names } = makeStore();
    const all = wire(EVENTS);
    feed(store, names, all.slice(0, 5));
    feed(store, names, all.slice(3, 8)); // overlaps 3, 4
    feed(store, names, all.slice(0, 8)); // all seen
    feed(store, names, all.slice(5));
    expect(store.log.length).toBe(EVENTS.length);
    expect(store.log.duplicates).toBe(2 + 8 + 3);
    expect(store.reducer.appliedCount).toBe(EVENTS.length);
    const ids = Array.from({ length: store.log.length }, (_, p) => store.log.id(p));
    expect(ids).toEqual(all.map(([e, k]) => `${e}/${k}`));
  });

  it('orders ids as (ms, seq) pairs, then k within an entry', () => {
    const { store, names } = makeStore();
    const events: WireEvent[] = [
      ['999-5', 0, EVENTS[0]],
      ['1000-0', 0, EVENTS[1]],
      ['1000-0', 1, EVENTS[2]],
      ['1000-10', 0, EVENTS[3]],
    ];
    feed(store, names, events);
    // "1000-2" sorts after "1000-10" as text but before it as a pair: a resend, dropped.
    feed(store, names, [['1000-2', 0, EVENTS[4]], ['1000-10', 0, EVENTS[3]], ['1000-10', 1, EVENTS[5]]]);
    expect(Array.from({ length: store.log.length }, (_, p) => store.log.id(p))).toEqual([
      '999-5/0', '1000-0/0', '1000-0/1', '1000-10/0', '1000-10/1',
    ]);
  });
});

describe('batch events (columns standing for several events)', () => {
  // the same facts as EVENTS' finished and transfer events, as the server sends batches
  const tasksFinished = ev('tasks-finished', {
    ts: T0 + 4, worker_id: '', n: 3, task: [0, 1, 2], attempt: [1, 1, 1],
    start: [T0 + 1, T0 + 2.5, T0 + 2.6], end: [T0 + 2, T0 + 3.5, T0 + 4],
    execution_time: [1, 1, 1.4], input_bytes: [10, 10, 10], output_bytes: [20, 20, 20],
    download_time: [0, 0, 0], upload_time: [0, 0, 0], kept: [0, 1, 0], lane: [0, 0, 1],
    workers: ['w1', 'w2'],
  });
  const transfers = ev('transfers', {
    ts: T0 + 2.5, worker_id: 'w1', n: 2, bytes: [20, 20], seconds: [0.001, 0], direction: [0, 2],
    producer: [0, 0], consumer: [-1, 1], local: [0, 1],
  });
  const expanded: RawEvent[] = [
    finished(0, 'w1', 1, 2),
    finished(1, 'w1', 2.5, 3.5, { kept: true }),
    finished(2, 'w2', 2.6, 4),
    transfer(0, null, 20, 'upload', 'w1', 2.5),
    { ...transfer(0, 1, 20, 'local', 'w1', 2.5), seconds: 0 } as RawEvent,
  ];

  it('make the same rows as the events one by one', () => {
    const batch = toChunk([['7-0', 0, tasksFinished], ['7-0', 3, transfers]], new NameTable(), '7-0');
    const single = toChunk(expanded.map((e, k) => ['7-0', k, e] as WireEvent), new NameTable(), '7-0');
    expect(batch.length).toBe(5);
    expect(batch.columns).toEqual(single.columns);
    expect(batch.newWorkers).toEqual(['w1', 'w2']);
  });

  it('skip the rows already received', () => {
    const batch = toChunk([['7-0', 0, tasksFinished, 2]], new NameTable(), '7-0');
    expect(batch.length).toBe(1);
    expect(Array.from(batch.columns.k)).toEqual([2]);
    expect(Array.from(batch.columns.task)).toEqual([2]);
  });

  it('drive the reducer like their expanded events', () => {
    const { store, names } = makeStore();
    feed(store, names, [
      ['1000-0', 0, EVENTS[0]], ['1000-1', 0, tasksFinished], ['1000-1', 3, transfers],
    ]);
    expect(stateOf(store)).toEqual(['done', 'done', 'done', 'ready']);
    expect(store.workerCounts()).toEqual({ w1: 2, w2: 1 });
    expect(transferTotals(store)).toMatchObject({ network: 20, local: 20 });
    expect(store.log.id(store.lastApplied)).toBe('1000-1/4');
  });
});
