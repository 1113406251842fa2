/**
 * The one reducer: `apply(log, p)` folds the event at position `p` of the log into typed
 * arrays indexed by task (and by edge). Live pages apply batches as they arrive; replay
 * resets and applies the events up to a time. Applying is order-tolerant (attempts
 * compare, a finish is never undone by a late start) so that the same events give the
 * same state whatever order a replay step applies them in.
 */
import { DIRECTION_NAMES, Direction, FLAG_FINAL, FLAG_LOCAL, FLAG_RUN_ENDED, Kind, type ErrorRecord } from './events';
import type { EventLog } from './eventlog';
import { EdgeIndex, type GraphData } from './graph';

export const enum State {
  Waiting = 0,
  Ready = 1,
  Running = 2,
  Done = 3,
  Failed = 4,
}

export const STATE_NAMES = ['waiting', 'ready', 'running', 'done', 'failed'] as const;
export type StateName = (typeof STATE_NAMES)[number];

export type Counts = Record<StateName, number>;

export const enum EdgeKind {
  Unknown = 0,
  Local = 1,
  Storage = 2,
}

const STARTED = 1;
const FINISHED = 2;
const FAILED = 4;

export class Reducer {
  readonly n: number;
  readonly flags: Uint8Array;
  readonly worker: Int32Array;
  readonly attempt: Int32Array;
  /** Epoch seconds; NaN when unknown. */
  readonly startedAt: Float64Array;
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly inputBytes: Float64Array;
  readonly outputBytes: Float64Array;
  readonly downloadTime: Float64Array;
  readonly uploadTime: Float64Array;
  readonly executionTime: Float64Array;
  /** Log position of the final failure, or -1. */
  readonly errorAt: Int32Array;
  /** Log position of the task-finished applied, or -1. */
  readonly finishAt: Int32Array;
  /** Log position of the latest failure (final or retried), or -1. */
  readonly lastFailureAt: Int32Array;
  readonly edgeBytes: Float64Array;
  readonly edgeKind: Uint8Array;
  /** Bytes each task read from a worker's memory (transfers 'local' to it). */
  readonly memoryRead: Float64Array;

  /** Transfer bytes in effect: over the network, kept local; per worker index. */
  networkBytes = 0;
  localBytes = 0;
  /** Transfer bytes in effect by how they came (indexed by Direction). */
  readonly pathBytes = new Float64Array(DIRECTION_NAMES.length);
  transferCount = 0;
  workerNetwork: number[] = [];
  workerLocal: number[] = [];

  appliedCount = 0;
  /** Position of the run-finished event applied, or -1. */
  finishedAt = -1;
  /** Positions of final failures, in the order applied. */
  failures: number[] = [];
  dropped = 0;
  private readonly edges: EdgeIndex;

  constructor(readonly graph: GraphData) {
    const n = graph.n;
    const m = graph.parentIdx.length;
    this.n = n;
    this.flags = new Uint8Array(n);
    this.worker = new Int32Array(n);
    this.attempt = new Int32Array(n);
    this.startedAt = new Float64Array(n);
    this.start = new Float64Array(n);
    this.end = new Float64Array(n);
    this.inputBytes = new Float64Array(n);
    this.outputBytes = new Float64Array(n);
    this.downloadTime = new Float64Array(n);
    this.uploadTime = new Float64Array(n);
    this.executionTime = new Float64Array(n);
    this.errorAt = new Int32Array(n);
    this.lastFailureAt = new Int32Array(n);
    this.finishAt = new Int32Array(n);
    this.edgeBytes = new Float64Array(m);
    this.edgeKind = new Uint8Array(m);
    this.memoryRead = new Float64Array(n);
    this.edges = new EdgeIndex(graph);
    this.reset();
  }

  reset(): void {
    this.flags.fill(0);
    this.worker.fill(-1);
    this.attempt.fill(0);
    this.startedAt.fill(NaN);
    this.start.fill(NaN);
    this.end.fill(NaN);
    this.inputBytes.fill(0);
    this.outputBytes.fill(0);
    this.downloadTime.fill(0);
    this.uploadTime.fill(0);
    this.executionTime.fill(0);
    this.errorAt.fill(-1);
    this.lastFailureAt.fill(-1);
    this.finishAt.fill(-1);
    this.edgeBytes.fill(0);
    this.edgeKind.fill(EdgeKind.Unknown);
    this.memoryRead.fill(0);
    this.networkBytes = 0;
    this.localBytes = 0;
    this.pathBytes.fill(0);
    this.transferCount = 0;
    this.workerNetwork = [];
    this.workerLocal = [];
    this.appliedCount = 0;
    this.finishedAt = -1;
    this.failures = [];
    this.dropped = 0;
  }

  /** Fold the event at position `p` of `log` into the state. */
  apply(log: EventLog, p: number): void {
    const c = log.columns;
    this.appliedCount++;
    const kind = c.kind[p];
    const i = c.task[p];
    switch (kind) {
      case Kind.TaskStarted: {
        if (i < 0 || i >= this.n) return;
        const a = c.attempt[p];
        if (this.flags[i] & (FINISHED | FAILED) || a < this.attempt[i]) return;
        this.attempt[i] = a;
        this.flags[i] |= STARTED;
        this.worker[i] = c.worker[p];
        this.startedAt[i] = c.time[p];
        return;
      }
      case Kind.TaskFinished: {
        if (i < 0 || i >= this.n) return;
        this.flags[i] = (this.flags[i] | FINISHED) & ~FAILED;
        this.attempt[i] = Math.max(this.attempt[i], c.attempt[p]);
        this.worker[i] = c.worker[p];
        this.start[i] = c.time[p];
        this.end[i] = c.end[p];
        this.inputBytes[i] = c.a[p];
        this.outputBytes[i] = c.b[p];
        this.downloadTime[i] = c.c[p];
        this.uploadTime[i] = c.d[p];
        this.executionTime[i] = c.e[p];
        this.finishAt[i] = p;
        if (Number.isNaN(this.startedAt[i])) this.startedAt[i] = c.time[p];
        return;
      }
      case Kind.TaskFailed: {
        if (i < 0 || i >= this.n) return;
        const a = c.attempt[p];
        if (c.flags[p] & FLAG_RUN_ENDED) {
          // its run ended before it ran: no failure of the task (it stays unfinished)
          if (a >= this.attempt[i] && !(this.flags[i] & (FINISHED | FAILED))) this.flags[i] &= ~STARTED;
          return;
        }
        this.lastFailureAt[i] = p;
        if (c.flags[p] & FLAG_FINAL) {
          if (this.flags[i] & FINISHED && a < this.attempt[i]) return; // an older attempt
          this.flags[i] = (this.flags[i] | FAILED) & ~FINISHED;
          this.attempt[i] = Math.max(this.attempt[i], a);
          this.worker[i] = c.worker[p];
          this.errorAt[i] = p;
          this.failures.push(p);
          if (Number.isNaN(this.end[i])) this.end[i] = c.time[p];
        } else if (a >= this.attempt[i] && !(this.flags[i] & (FINISHED | FAILED))) {
          this.attempt[i] = a;
          this.flags[i] &= ~STARTED; // waits for its retry
        }
        return;
      }
      case Kind.Transfer: {
        const bytes = c.a[p];
        const w = c.worker[p];
        this.transferCount++;
        this.pathBytes[c.c[p]] += bytes;
        if (c.flags[p] & FLAG_LOCAL) {
          this.localBytes += bytes;
          if (w >= 0) this.workerLocal[w] = (this.workerLocal[w] ?? 0) + bytes;
        } else {
          this.networkBytes += bytes;
          if (w >= 0) this.workerNetwork[w] = (this.workerNetwork[w] ?? 0) + bytes;
        }
        const consumer = c.d[p];
        if (consumer < 0) return;
        if (c.c[p] === Direction.Local && consumer < this.n) this.memoryRead[consumer] += bytes;
        const e = this.edges.get(i, consumer);
        if (e < 0) return;
        this.edgeBytes[e] += bytes;
        // An edge is local unless its object crossed a socket to its consumer (from
        // the server, or from another host).
        const how = c.c[p];
        if (how === Direction.Download || how === Direction.Direct || how === Direction.Other) {
          this.edgeKind[e] = EdgeKind.Storage;
        }
        else if (this.edgeKind[e] === EdgeKind.Unknown) this.edgeKind[e] = EdgeKind.Local;
        return;
      }
      case Kind.RunFinished:
        this.finishedAt = p;
        return;
      case Kind.EventsDropped:
        this.dropped += c.a[p];
        return;
      default:
        return;
    }
  }

  isFinished(i: number): boolean {
    return (this.flags[i] & FINISHED) !== 0;
  }

  /**
   * Node states at `t` seconds after `t0` (Infinity: everything applied is in effect):
   * a finished task is running until its end, then done; ready needs every parent done.
   * Writes `out` (indexed by task) and returns the counts.
   */
  states(t0: number, t: number, topo: Int32Array, out: Uint8Array): Counts {
    const { flags, end } = this;
    const { parentOff, parentIdx } = this.graph;
    const counts: Counts = { waiting: 0, ready: 0, running: 0, done: 0, failed: 0 };
    let waiting = 0, ready = 0, running = 0, done = 0, failed = 0;
    for (let j = 0; j < this.n; j++) {
      const i = topo[j];
      const f = flags[i];
      let s: State;
      if (f & FAILED) {
        s = State.Failed;
      } else if (f & FINISHED) {
        s = t === Infinity || end[i] - t0 <= t ? State.Done : State.Running;
      } else if (f & STARTED) {
        s = State.Running;
      } else {
        s = State.Ready;
        for (let e = parentOff[i]; e < parentOff[i + 1]; e++) {
          if (out[parentIdx[e]] !== State.Done) {
            s = State.Waiting;
            break;
          }
        }
      }
      out[i] = s;
      switch (s) {
        case State.Waiting: waiting++; break;
        case State.Ready: ready++; break;
        case State.Running: running++; break;
        case State.Done: done++; break;
        default: failed++; break;
      }
    }
    counts.waiting = waiting;
    counts.ready = ready;
    counts.running = running;
    counts.done = done;
    counts.failed = failed;
    return counts;
  }

  error(log: EventLog, i: number): ErrorRecord | null {
    const p = this.errorAt[i];
    return p >= 0 ? log.extras.get(p)?.error ?? null : null;
  }
}
