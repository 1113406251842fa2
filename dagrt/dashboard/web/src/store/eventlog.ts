/** The events of one run as received, in log order, as growable typed columns. */
import { formatEntryId } from '../ids';
import {
  COLUMN_NAMES, COLUMN_TYPES, allocateColumns, Kind,
  type Chunk, type Columns, type ExtraRecord,
} from './events';

export class EventLog {
  length = 0;
  columns: Columns = allocateColumns(1024);
  readonly extras = new Map<number, ExtraRecord>();
  readonly workers: string[] = [];
  /** Positions by kind, for the readers that only need some kinds. */
  readonly transfers: number[] = [];
  readonly finishes: number[] = [];
  readonly failures: number[] = [];
  readonly starts: number[] = [];
  /** Position of the run-submitted event, or -1. */
  submittedAt = -1;
  /** Events skipped because they were already in the log. */
  duplicates = 0;
  private capacity = 1024;

  /**
   * Append a chunk. Rows not after the last row held (already received: a resent entry)
   * are skipped, so no event is ever in the log twice.
   */
  append(chunk: Chunk): { from: number; to: number } {
    for (const name of chunk.newWorkers) this.workers.push(name);
    const from = this.length;
    const src = chunk.columns;
    const keep = this.newRows(src, chunk.length);
    const count = keep === null ? chunk.length : keep.length;
    this.duplicates += chunk.length - count;
    if (count === 0) return { from, to: from };
    this.reserve(this.length + count);
    for (const name of COLUMN_NAMES) {
      const column = src[name];
      const target = this.columns[name];
      if (keep === null) {
        target.set(column.subarray(0, count), from);
      } else {
        for (let j = 0; j < count; j++) target[from + j] = column[keep[j]];
      }
    }
    if (keep === null) {
      for (const [row, record] of chunk.extras) this.extras.set(from + row, record);
    } else {
      const at = new Map<number, number>();
      keep.forEach((row, j) => at.set(row, from + j));
      for (const [row, record] of chunk.extras) {
        const p = at.get(row);
        if (p !== undefined) this.extras.set(p, record);
      }
    }
    const kind = this.columns.kind;
    for (let p = from, end = from + count; p < end; p++) {
      switch (kind[p]) {
        case Kind.Transfer: this.transfers.push(p); break;
        case Kind.TaskFinished: this.finishes.push(p); break;
        case Kind.TaskFailed: this.failures.push(p); break;
        case Kind.TaskStarted: this.starts.push(p); break;
        case Kind.RunSubmitted: if (this.submittedAt < 0) this.submittedAt = p; break;
        default: break;
      }
    }
    this.length += count;
    return { from, to: this.length };
  }

  /** null: every row is new and in order; else the rows to keep. */
  private newRows(src: Columns, n: number): number[] | null {
    let ms = this.length > 0 ? this.columns.ms[this.length - 1] : -Infinity;
    let seq = this.length > 0 ? this.columns.seq[this.length - 1] : -Infinity;
    let k = this.length > 0 ? this.columns.k[this.length - 1] : -Infinity;
    let keep: number[] | null = null;
    for (let row = 0; row < n; row++) {
      const after = (src.ms[row] - ms || src.seq[row] - seq || src.k[row] - k) > 0;
      if (after) {
        ms = src.ms[row];
        seq = src.seq[row];
        k = src.k[row];
        keep?.push(row);
      } else if (keep === null) {
        keep = [];
        for (let j = 0; j < row; j++) keep.push(j);
      }
    }
    return keep;
  }

  /** "entryId/k" of the event at `p`. */
  id(p: number): string {
    const c = this.columns;
    return `${formatEntryId(c.ms[p], c.seq[p])}/${c.k[p]}`;
  }

  entryId(p: number): string {
    return formatEntryId(this.columns.ms[p], this.columns.seq[p]);
  }

  workerName(index: number): string | null {
    return index >= 0 && index < this.workers.length ? this.workers[index] : null;
  }

  private reserve(size: number): void {
    if (size <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < size) capacity *= 2;
    const next = {} as Record<string, unknown>;
    for (const name of COLUMN_NAMES) {
      const grown = new COLUMN_TYPES[name](capacity);
      grown.set(this.columns[name].subarray(0, this.length));
      next[name] = grown;
    }
    this.columns = next as unknown as Columns;
    this.capacity = capacity;
  }
}
