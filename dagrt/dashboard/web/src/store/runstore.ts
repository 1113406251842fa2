/**
 * One run's state: its graph, the log of its events, the reducer, and which of the events
 * are in effect (live: all of them; replay: those up to a cursor in time).
 *
 * Replay order: an event's time is `start` for task-finished and `ts` for the others, in
 * seconds since the run's run-submitted `ts`. The cursor (T, P) covers the events at times
 * before T, and those at T up to log position P (P = Infinity: all of them), so a step
 * applies exactly one event even when several share a time. Events in effect are applied
 * in log order after a reset; moving forward applies just the newly covered ones.
 */
import type { RunSummary } from '../api';
import { Kind, type Chunk } from './events';
import { EventLog } from './eventlog';
import { completeGraph, type Graph, type GraphData } from './graph';
import { Reducer, State, type Counts } from './reducer';

export type Listener = () => void;

export class RunStore {
  readonly graph: Graph;
  readonly log = new EventLog();
  readonly reducer: Reducer;
  summary: RunSummary | null;
  /** Following the newest events (not replaying). */
  live = true;
  /** Replay cursor (seconds since t0, log position). */
  cursorT = Infinity;
  cursorP = Infinity;
  /** Bumped on every change of what is shown. */
  version = 0;
  /** Log positions below this have been considered (applied if in effect). */
  considered = 0;
  /** The last applied event: largest log position (live) or (time, position) (replay). */
  lastApplied = -1;
  private maxEnd = -Infinity;
  private listeners = new Set<Listener>();
  private statesCache: Uint8Array;
  private countsCache: Counts = { waiting: 0, ready: 0, running: 0, done: 0, failed: 0 };
  private statesVersion = -1;

  constructor(graph: GraphData, summary: RunSummary | null) {
    this.graph = 'topo' in graph ? (graph as Graph) : completeGraph(graph);
    this.reducer = new Reducer(this.graph);
    this.summary = summary;
    this.statesCache = new Uint8Array(this.graph.n);
    this.updateT0();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }

  // -- time ---------------------------------------------------------------------------

  /** Epoch seconds of the run's submission (time 0 of the replay axis). */
  t0 = 0;

  private updateT0(): void {
    const log = this.log;
    if (log.submittedAt >= 0) this.t0 = log.columns.time[log.submittedAt];
    else if (this.summary?.submitted) this.t0 = this.summary.submitted;
    else this.t0 = log.length > 0 ? log.columns.time[0] : 0;
  }

  /** Seconds from submission to the last event's time (a task's end counts). */
  get duration(): number {
    return this.maxEnd === -Infinity ? 0 : Math.max(0, this.maxEnd - this.t0);
  }

  /** The replay axis position shown. */
  get replayTime(): number {
    if (this.live) return this.duration;
    return Math.min(Math.max(0, this.cursorT), Math.max(this.duration, this.cursorT));
  }

  /** Seconds since t0 at which the event at `p` happens on the replay axis. */
  eventTime(p: number): number {
    return this.log.columns.time[p] - this.t0;
  }

  /** Whether the event at `p` is in effect under the current cursor. */
  inEffect(p: number): boolean {
    if (this.live) return true;
    const rel = this.eventTime(p);
    return rel < this.cursorT || (rel === this.cursorT && p <= this.cursorP);
  }

  // -- receiving ------------------------------------------------------------------------

  /** Add received events to the log (applying them is `applySome`'s job). */
  receive(chunk: Chunk): void {
    const hadSubmitted = this.log.submittedAt >= 0;
    const { from, to } = this.log.append(chunk);
    const end = this.log.columns.end;
    for (let p = from; p < to; p++) if (end[p] > this.maxEnd) this.maxEnd = end[p];
    if (!hadSubmitted || from === 0) {
      const before = this.t0;
      this.updateT0();
      if (before !== this.t0 && this.considered > 0 && !this.live) this.recompute(); // the axis moved
    }
  }

  /** Events received but not yet considered. */
  get pending(): number {
    return this.log.length - this.considered;
  }

  /** Apply up to `budget` received events; returns how many were considered. */
  applySome(budget: number): number {
    const to = Math.min(this.log.length, this.considered + budget);
    const from = this.considered;
    if (this.live) {
      for (let p = from; p < to; p++) this.reducer.apply(this.log, p);
      if (to > from) this.lastApplied = Math.max(this.lastApplied, to - 1);
    } else {
      for (let p = from; p < to; p++) if (this.inEffect(p)) this.applyAt(p);
    }
    this.considered = to;
    if (to > from) this.changed();
    return to - from;
  }

  private applyAt(p: number): void {
    this.reducer.apply(this.log, p);
    if (this.lastApplied < 0 || this.isLater(p, this.lastApplied)) this.lastApplied = p;
  }

  /** Whether `p` comes after `q` in the current order (log order live, time order replay). */
  private isLater(p: number, q: number): boolean {
    if (this.live) return p > q;
    const tp = this.eventTime(p);
    const tq = this.eventTime(q);
    return tp > tq || (tp === tq && p > q);
  }

  // -- replay -----------------------------------------------------------------------------

  /** Follow the newest events again. */
  goLive(): void {
    this.live = true;
    this.cursorT = Infinity;
    this.cursorP = Infinity;
    this.recompute();
  }

  /** Show the run at `t` seconds (every event at or before `t`). */
  seek(t: number): void {
    this.moveTo(t, Infinity);
  }

  /** Apply exactly one more event (the next in time order). Returns false at the end. */
  stepForward(): boolean {
    if (this.live) return false;
    let best = -1;
    let bestT = Infinity;
    const n = this.considered;
    const time = this.log.columns.time;
    const t0 = this.t0;
    const T = this.cursorT;
    const P = this.cursorP;
    for (let p = 0; p < n; p++) {
      const rel = time[p] - t0;
      if (rel < T || (rel === T && p <= P)) continue;
      if (rel < bestT || (rel === bestT && p < best)) {
        best = p;
        bestT = rel;
      }
    }
    if (best < 0) return false;
    this.cursorT = bestT;
    this.cursorP = best;
    this.applyAt(best);
    this.changed();
    return true;
  }

  /** Undo the last event in time order. Returns false at the start. */
  stepBack(): boolean {
    const last = this.lastInEffect();
    if (last < 0) return false;
    const lastT = this.eventTime(last);
    let best = -1;
    let bestT = -Infinity;
    const n = this.considered;
    const time = this.log.columns.time;
    const t0 = this.t0;
    for (let p = 0; p < n; p++) {
      const rel = time[p] - t0;
      if (rel > lastT || (rel === lastT && p >= last)) continue;
      if (rel > bestT || (rel === bestT && p > best)) {
        best = p;
        bestT = rel;
      }
    }
    this.live = false;
    if (best < 0) {
      this.cursorT = -Infinity;
      this.cursorP = -1;
    } else {
      this.cursorT = bestT;
      this.cursorP = best;
    }
    this.recompute();
    return true;
  }

  /** The latest event in effect in time order, or -1. */
  private lastInEffect(): number {
    let best = -1;
    let bestT = -Infinity;
    const n = this.considered;
    const time = this.log.columns.time;
    const t0 = this.t0;
    for (let p = 0; p < n; p++) {
      if (!this.inEffect(p)) continue;
      const rel = time[p] - t0;
      if (rel > bestT || (rel === bestT && p > best)) {
        best = p;
        bestT = rel;
      }
    }
    return best;
  }

  private moveTo(t: number, p: number): void {
    const wasLive = this.live;
    const forward =
      !wasLive && (t > this.cursorT || (t === this.cursorT && p >= this.cursorP));
    const oldT = this.cursorT;
    const oldP = this.cursorP;
    this.live = false;
    this.cursorT = t;
    this.cursorP = p;
    if (!forward) {
      this.recompute();
      return;
    }
    const n = this.considered;
    const time = this.log.columns.time;
    const t0 = this.t0;
    for (let q = 0; q < n; q++) {
      const rel = time[q] - t0;
      const before = rel < oldT || (rel === oldT && q <= oldP);
      if (!before && (rel < t || (rel === t && q <= p))) this.applyAt(q);
    }
    this.changed();
  }

  /** Reset and apply every considered event in effect, in log order. */
  recompute(): void {
    this.reducer.reset();
    this.lastApplied = -1;
    const n = this.considered;
    if (this.live) {
      for (let p = 0; p < n; p++) this.reducer.apply(this.log, p);
      this.lastApplied = n - 1;
    } else {
      const time = this.log.columns.time;
      const t0 = this.t0;
      const T = this.cursorT;
      const P = this.cursorP;
      for (let p = 0; p < n; p++) {
        const rel = time[p] - t0;
        if (rel < T || (rel === T && p <= P)) this.applyAt(p);
      }
    }
    this.changed();
  }

  // -- derived state ----------------------------------------------------------------------

  /** Node states at the replay time (cached per version). */
  states(): Uint8Array {
    if (this.statesVersion !== this.version) {
      const t = this.live ? Infinity : this.cursorT;
      this.countsCache = this.reducer.states(this.t0, t, this.graph.topo, this.statesCache);
      this.statesVersion = this.version;
    }
    return this.statesCache;
  }

  counts(): Counts {
    this.states();
    return { ...this.countsCache };
  }

  /** The run's status at the replay time: that of a run-finished in effect, else running. */
  status(): string {
    const p = this.reducer.finishedAt;
    if (p >= 0) return this.log.extras.get(p)?.status || 'finished';
    // No run-finished in the log at all (trimmed?): the runs index knows the end.
    const indexed = this.summary?.status;
    if (this.live && indexed && indexed !== 'running' && indexed !== 'unknown') return indexed;
    return 'running';
  }

  /** The makespan when known (a run-finished anywhere in the log, or the summary). */
  makespan(): number | null {
    for (const [p, record] of this.log.extras) {
      if (record.makespan !== undefined && this.log.columns.kind[p] === Kind.RunFinished) return record.makespan;
    }
    return this.summary?.makespan ?? null;
  }

  /** Tasks done per worker at the replay time. */
  workerCounts(): Record<string, number> {
    const states = this.states();
    const worker = this.reducer.worker;
    const perIndex = new Map<number, number>();
    for (let i = 0; i < this.graph.n; i++) {
      if (states[i] === State.Done) perIndex.set(worker[i], (perIndex.get(worker[i]) ?? 0) + 1);
    }
    const out: Record<string, number> = {};
    for (const [w, count] of perIndex) out[this.log.workerName(w) ?? ''] = count;
    return out;
  }

  /** `compute()` once per version of the store. */
  cached<T>(name: string, compute: () => T): T {
    const hit = this.memo.get(name);
    if (hit && hit.version === this.version) return hit.value as T;
    const value = compute();
    this.memo.set(name, { version: this.version, value });
    return value;
  }
  private memo = new Map<string, { version: number; value: unknown }>();

  keyIndex(key: string): number {
    if (!this.keyMap) {
      this.keyMap = new Map();
      this.graph.keys.forEach((k, i) => this.keyMap!.set(k, i));
    }
    return this.keyMap.get(key) ?? -1;
  }
  private keyMap: Map<string, number> | null = null;
}
