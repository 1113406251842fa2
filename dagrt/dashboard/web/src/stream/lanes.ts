/**
 * Task-stream lanes: a bar per task attempt that finished (or failed after a start), a
 * lane per worker and slot. Within a worker, bars sorted by start go to the first slot
 * free at their start, so the bars of one slot never overlap. Built from the whole log
 * (stable while replaying); what is drawn at a replay time is the bars in effect.
 */
import { Kind } from '../store/events';
import type { RunStore } from '../store/runstore';

export interface Bar {
  /** Log position of the task-finished (or task-failed) event. */
  pos: number;
  task: number;
  worker: number;
  /** Epoch seconds. */
  start: number;
  end: number;
  failed: boolean;
  slot: number;
}

export interface Lane {
  worker: number;
  slot: number;
  /** Bars of this lane, by start. */
  bars: Bar[];
}

interface WorkerBars {
  bars: Bar[];
  /** When each slot is free again. */
  freeAt: number[];
  sorted: boolean;
}

export class LaneModel {
  private readonly perWorker = new Map<number, WorkerBars>();
  private seenFinishes = 0;
  private seenFailures = 0;
  private seenStarts = 0;
  /** task * 1024 + attempt → start time of a task-started (for failed attempts). */
  private readonly startedAt = new Map<number, number>();
  private lanesCache: Lane[] | null = null;

  constructor(private readonly store: RunStore) {}

  /** Take in the bars of events received since the last call. */
  update(): void {
    const { log } = this.store;
    const c = log.columns;
    let added = false;
    for (; this.seenStarts < log.starts.length; this.seenStarts++) {
      const p = log.starts[this.seenStarts];
      this.startedAt.set(c.task[p] * 1024 + (c.attempt[p] & 1023), c.time[p]);
    }
    for (; this.seenFinishes < log.finishes.length; this.seenFinishes++) {
      const p = log.finishes[this.seenFinishes];
      this.add({ pos: p, task: c.task[p], worker: c.worker[p], start: c.time[p], end: c.end[p], failed: false, slot: 0 });
      added = true;
    }
    for (; this.seenFailures < log.failures.length; this.seenFailures++) {
      const p = log.failures[this.seenFailures];
      if (c.kind[p] !== Kind.TaskFailed) continue;
      const started = this.startedAt.get(c.task[p] * 1024 + (c.attempt[p] & 1023));
      const start = started !== undefined && started <= c.time[p] ? started : c.time[p];
      this.add({ pos: p, task: c.task[p], worker: c.worker[p], start, end: c.time[p], failed: true, slot: 0 });
      added = true;
    }
    if (added) this.lanesCache = null;
  }

  private add(bar: Bar): void {
    let w = this.perWorker.get(bar.worker);
    if (!w) this.perWorker.set(bar.worker, (w = { bars: [], freeAt: [], sorted: true }));
    const last = w.bars[w.bars.length - 1];
    w.bars.push(bar);
    if (!w.sorted || (last && bar.start < last.start)) {
      w.sorted = false;
      return;
    }
    bar.slot = assign(w.freeAt, bar);
  }

  /** Lanes ordered by worker name, then slot. */
  lanes(): Lane[] {
    if (this.lanesCache) return this.lanesCache;
    const names = this.store.log.workers;
    const out: Lane[] = [];
    const workers = [...this.perWorker.keys()].sort((a, b) => {
      const x = names[a] ?? '';
      const y = names[b] ?? '';
      return x < y ? -1 : x > y ? 1 : 0;
    });
    for (const worker of workers) {
      const w = this.perWorker.get(worker)!;
      if (!w.sorted) {
        w.bars.sort((a, b) => a.start - b.start || a.pos - b.pos);
        w.freeAt = [];
        for (const bar of w.bars) bar.slot = assign(w.freeAt, bar);
        w.sorted = true;
      }
      const lanes: Lane[] = w.freeAt.map((_, slot) => ({ worker, slot, bars: [] }));
      for (const bar of w.bars) lanes[bar.slot].bars.push(bar);
      out.push(...lanes);
    }
    this.lanesCache = out;
    return out;
  }
}

function assign(freeAt: number[], bar: Bar): number {
  for (let s = 0; s < freeAt.length; s++) {
    if (freeAt[s] <= bar.start) {
      freeAt[s] = bar.end;
      return s;
    }
  }
  freeAt.push(bar.end);
  return freeAt.length - 1;
}
