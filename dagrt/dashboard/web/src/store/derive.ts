/** Views of a run's state at the replay time: transfers, failures, a node's record. */
import { DIRECTION_NAMES, FLAG_FINAL, FLAG_KEPT, placementOf, type ErrorRecord } from './events';
import { EdgeKind, STATE_NAMES, type StateName } from './reducer';
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
  count: number;
  /** Bytes of every transfer by the worker that logged it. */
  perWorker: Record<string, number>;
  perWorkerNetwork: Record<string, number>;
  perWorkerLocal: Record<string, number>;
  /** Bytes by how they came ('upload', 'download', 'local', 'map', 'direct',
   *  'recompute', 'store', 'other'), the ways that moved any: as the report's bytes by path. */
  byPath: Record<string, number>;
  /** Bytes children read from the memory of the worker that made them (a read
   *  avoided), by why the child ran there ('become', 'cluster', 'delayed', 'chain';
   *  'dispatched': it found the input in that worker's cache; 'not said': a log that
   *  does not say): as the report's bytes kept from moving. */
  avoidedBy: Record<string, number>;
}

/** Totals at the replay time (kept by the reducer as events apply). */
export function transferTotals(store: RunStore): TransferTotals {
  return store.cached('transfer-totals', () => {
    const r = store.reducer;
    const out: TransferTotals = {
      network: r.networkBytes, local: r.localBytes, count: r.transferCount,
      perWorker: {}, perWorkerNetwork: {}, perWorkerLocal: {}, byPath: {}, avoidedBy: {},
    };
    DIRECTION_NAMES.forEach((name, d) => {
      if (r.pathBytes[d] > 0) out.byPath[name] = r.pathBytes[d];
    });
    const flags = store.log.columns.flags;
    for (let i = 0; i < r.n; i++) {
      const bytes = r.memoryRead[i];
      if (bytes <= 0) continue;
      const why = (r.finishAt[i] >= 0 && placementOf(flags[r.finishAt[i]])) || 'not said';
      out.avoidedBy[why] = (out.avoidedBy[why] ?? 0) + bytes;
    }
    const workers = Math.max(r.workerNetwork.length, r.workerLocal.length);
    for (let w = 0; w < workers; w++) {
      const net = r.workerNetwork[w] ?? 0;
      const loc = r.workerLocal[w] ?? 0;
      if (!(w in r.workerNetwork) && !(w in r.workerLocal)) continue;
      const name = store.log.workerName(w) ?? '';
      out.perWorker[name] = net + loc;
      out.perWorkerNetwork[name] = net;
      out.perWorkerLocal[name] = loc;
    }
    return out;
  });
}

/**
 * Graph edges that carried a transfer at the replay time: producer → consumer, bytes, and
 * whether it stayed local (no download).
 */
export function transferEdges(store: RunStore): TransferEdge[] {
  return store.cached('transfer-edges', () => {
    const { parentOff, parentIdx } = store.graph;
    const { edgeBytes, edgeKind } = store.reducer;
    const out: TransferEdge[] = [];
    for (let c = 0; c < store.graph.n; c++) {
      for (let e = parentOff[c]; e < parentOff[c + 1]; e++) {
        if (edgeKind[e] === EdgeKind.Unknown) continue;
        out.push({ producer: parentIdx[e], consumer: c, bytes: edgeBytes[e], local: edgeKind[e] !== EdgeKind.Storage });
      }
    }
    return out;
  });
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
  return store.cached('failures', () => computeFailures(store));
}

function computeFailures(store: RunStore): FailureRecord[] {
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
  /** Why it ran on its worker ('' if the log does not say, or it has not finished). */
  placed: string;
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
    placed: r.finishAt[i] >= 0 ? placementOf(log.columns.flags[r.finishAt[i]]) : '',
    parents: graph.parentOff[i + 1] - graph.parentOff[i],
    children: graph.childOff[i + 1] - graph.childOff[i],
    error: r.error(log, i),
    lastError: last >= 0 ? log.extras.get(last)?.error ?? null : null,
  };
}
