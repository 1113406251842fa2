/** Views of a run's state at the replay time: transfers, failures, a node's record. */
import { Direction, FLAG_FINAL, FLAG_KEPT, FLAG_LOCAL, type ErrorRecord } from './events';
import { STATE_NAMES, type StateName } from './reducer';
import type { RunStore } from './runstore';

export interface TransferEdge {
  producer: number;
  consumer: number;
  bytes: number;
  local: boolean;
}

export interface TransferTotals {
  network: number;
  local: number;
  /** Bytes of every transfer by the worker that logged it. */
  perWorker: Record<string, number>;
  perWorkerNetwork: Record<string, number>;
  perWorkerLocal: Record<string, number>;
  /** One per producer → consumer pair (uploads have no consumer and are not edges). */
  edges: TransferEdge[];
  count: number;
}

export function transfers(store: RunStore): TransferTotals {
  const { log } = store;
  const c = log.columns;
  let network = 0;
  let local = 0;
  let count = 0;
  const perWorker = new Map<number, [number, number]>();
  const edges = new Map<number, TransferEdge>();
  const n = store.graph.n;
  for (const p of log.transfers) {
    if (p >= store.considered || !store.inEffect(p)) continue;
    count++;
    const bytes = c.a[p];
    const isLocal = (c.flags[p] & FLAG_LOCAL) !== 0;
    if (isLocal) local += bytes;
    else network += bytes;
    let w = perWorker.get(c.worker[p]);
    if (!w) perWorker.set(c.worker[p], (w = [0, 0]));
    w[isLocal ? 1 : 0] += bytes;
    const consumer = c.d[p];
    if (consumer < 0) continue;
    const producer = c.task[p];
    const key = producer * n + consumer;
    let edge = edges.get(key);
    if (!edge) edges.set(key, (edge = { producer, consumer, bytes: 0, local: true }));
    edge.bytes += bytes;
    if (c.c[p] === Direction.Download) edge.local = false;
  }
  const out: TransferTotals = {
    network, local, perWorker: {}, perWorkerNetwork: {}, perWorkerLocal: {},
    edges: [...edges.values()], count,
  };
  for (const [w, [net, loc]] of perWorker) {
    const name = log.workerName(w) ?? '';
    out.perWorker[name] = net + loc;
    out.perWorkerNetwork[name] = net;
    out.perWorkerLocal[name] = loc;
  }
  return out;
}

export interface FailureRecord {
  task: number;
  key: string;
  name: string;
  worker: string | null;
  attempt: number;
  exc_type: string;
  message: string;
  traceback: string;
}

/** Final failures in effect, in the order applied. */
export function failures(store: RunStore): FailureRecord[] {
  const { log, graph } = store;
  const c = log.columns;
  return store.reducer.failures.map((p) => {
    const task = c.task[p];
    const error = log.extras.get(p)?.error ?? { exc_type: '', message: '', traceback: '' };
    return {
      task,
      key: graph.keys[task] ?? '',
      name: graph.fnNames[graph.fn[task]] ?? '',
      worker: log.workerName(c.worker[p]),
      attempt: c.attempt[p],
      ...error,
    };
  });
}

/** Retried (non-final) failures in effect, newest last. */
export function retriedFailures(store: RunStore): number {
  const c = store.log.columns;
  let count = 0;
  for (const p of store.log.failures) {
    if (p < store.considered && store.inEffect(p) && !(c.flags[p] & FLAG_FINAL)) count++;
  }
  return count;
}

export interface NodeRecord {
  index: number;
  key: string;
  name: string;
  state: StateName;
  worker: string | null;
  /** Seconds since submission, or null. */
  start: number | null;
  end: number | null;
  attempt: number;
  inputBytes: number;
  outputBytes: number;
  downloadTime: number;
  uploadTime: number;
  executionTime: number;
  kept: boolean;
  parents: number;
  children: number;
  error: ErrorRecord | null;
  /** The latest failure even if a retry followed. */
  lastError: ErrorRecord | null;
}

export function nodeRecord(store: RunStore, i: number): NodeRecord | null {
  const { graph, reducer: r, log } = store;
  if (!Number.isInteger(i) || i < 0 || i >= graph.n) return null;
  const t0 = store.t0;
  const states = store.states();
  const start = Number.isNaN(r.start[i]) ? r.startedAt[i] : r.start[i];
  const last = r.lastFailureAt[i];
  return {
    index: i,
    key: graph.keys[i],
    name: graph.fnNames[graph.fn[i]] ?? '',
    state: STATE_NAMES[states[i]],
    worker: log.workerName(r.worker[i]),
    start: Number.isNaN(start) ? null : start - t0,
    end: Number.isNaN(r.end[i]) ? null : r.end[i] - t0,
    attempt: r.attempt[i],
    inputBytes: r.inputBytes[i],
    outputBytes: r.outputBytes[i],
    downloadTime: r.downloadTime[i],
    uploadTime: r.uploadTime[i],
    executionTime: r.executionTime[i],
    kept: r.finishAt[i] >= 0 && (log.columns.flags[r.finishAt[i]] & FLAG_KEPT) !== 0,
    parents: graph.parentOff[i + 1] - graph.parentOff[i],
    children: graph.childOff[i + 1] - graph.childOff[i],
    error: r.error(log, i),
    lastError: last >= 0 ? log.extras.get(last)?.error ?? null : null,
  };
}
