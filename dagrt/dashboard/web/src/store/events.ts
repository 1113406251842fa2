/**
 * Events as columns. JSON events (`[entry id, k, event]`, a batch event standing for
 * several) become a `Chunk` of typed
 * arrays (one row per event) plus a few records kept as objects (errors, run-level
 * events). The feed worker converts; the page appends chunks to its `EventLog`.
 */
import { parseEntryId } from '../ids';
import { eventCount, type RawEvent, type WireEvent } from '../api';

export const enum Kind {
  Unknown = 0,
  RunSubmitted = 1,
  RunFinished = 2,
  TaskStarted = 3,
  TaskFinished = 4,
  TaskFailed = 5,
  Transfer = 6,
  WorkerStarted = 7,
  WorkerHeartbeat = 8,
  WorkerStopped = 9,
  EventsDropped = 10,
}

const KIND_CODES: Record<string, Kind> = {
  'run-submitted': Kind.RunSubmitted,
  'run-finished': Kind.RunFinished,
  'task-started': Kind.TaskStarted,
  'task-finished': Kind.TaskFinished,
  'task-failed': Kind.TaskFailed,
  transfer: Kind.Transfer,
  'worker-started': Kind.WorkerStarted,
  'worker-heartbeat': Kind.WorkerHeartbeat,
  'worker-stopped': Kind.WorkerStopped,
  'events-dropped': Kind.EventsDropped,
};

/** How a transfer's bytes came (the indexes of the log's DIRECTIONS; Other: a
 *  direction this page does not know). */
export const enum Direction {
  Upload = 0,
  Download = 1,
  Local = 2,
  Map = 3,
  Direct = 4,
  Recompute = 5,
  Store = 6,
  Other = 7,
}

/** Direction names, by index: the log's words ('other' for any it does not know). */
export const DIRECTION_NAMES = ['upload', 'download', 'local', 'map', 'direct', 'recompute', 'store', 'other'] as const;

/** Did bytes that came this way stay on the host (a worker's memory, the host's
 *  store, made again)? As the report counts them. */
export function onTheHost(d: number): boolean {
  return d === Direction.Local || d === Direction.Map || d === Direction.Recompute || d === Direction.Store;
}

/** A direction index from the wire: one this page knows, else Other. */
function directionOf(d: unknown): Direction {
  return typeof d === 'number' && Number.isInteger(d) && d >= 0 && d < Direction.Other ? (d as Direction) : Direction.Other;
}

/** Flag bits in the `flags` column. */
export const FLAG_KEPT = 1; // task-finished: ran where a parent's output was
export const FLAG_LOCAL = 2; // transfer: the bytes stayed on the worker
export const FLAG_FINAL = 4; // task-failed: no retry follows
/** task-finished: why the task ran on its worker, an index of PLACEMENT_NAMES, in the
 *  three bits from this one up. */
export const PLACED_SHIFT = 3;
/** task-failed: the attempt did not run because its run had ended (exc_type
 *  dagrt.RunEnded): not a failure of the task, as the report counts. */
export const FLAG_RUN_ENDED = 64;
/** The exc_type of such an attempt (dagrt.metrics.events.RUN_ENDED). */
export const RUN_ENDED = 'dagrt.RunEnded';

/** Why a task ran where it did, by the log's index ('' when the log does not say):
 *  as dagrt.metrics.events.PLACEMENTS. */
export const PLACEMENT_NAMES = [
  '', 'dispatched', 'become', 'cluster', 'delayed', 'chain', 'taken-over', 'recomputed',
  'expanded',
] as const;
const PLACEMENTS = new Map<string, number>(PLACEMENT_NAMES.map((name, i) => [name, i]));

/** What each placement means, in words (as the report and the docs say). */
export const PLACEMENT_TITLES: Record<string, string> = {
  dispatched: 'read from the tasks stream',
  become: "kept by its parent's completion on that worker",
  cluster: 'claimed with other children of a large output on that worker (fan-out clustering)',
  delayed: 'handed to the worker that waited for it with a large input (delayed I/O)',
  chain: 'run right after its one parent, from its value (chain fusion)',
  'taken-over': 'its first worker went silent',
  recomputed: 'made again: its output was lost with the worker that held it',
  expanded: 'it returned a graph: completed where the end of that graph\'s run was read',
  'not said': 'a log that does not say',
};

/** The flag bits of a placement index from the wire (0 for one this page does not know). */
function placedBits(code: unknown): number {
  const i = typeof code === 'number' && Number.isInteger(code) && code >= 0 && code < PLACEMENT_NAMES.length ? code : 0;
  return i << PLACED_SHIFT;
}

/** A task-finished row's placement name, from its flags. */
export function placementOf(flags: number): string {
  return PLACEMENT_NAMES[(flags >> PLACED_SHIFT) & 7] ?? '';
}

/**
 * Column meanings per kind:
 * - time: `start` for task-finished, else `ts` (epoch s); end: `end` for task-finished, else `ts`
 * - task: task index (transfer: producer); worker: index into the worker-name table
 * - a..e: task-finished: input_bytes, output_bytes, download_time, upload_time,
 *   execution_time; transfer: bytes, seconds, direction, consumer (-1: none), 0;
 *   events-dropped: count in a
 */
export interface Columns {
  ms: Float64Array;
  seq: Float64Array;
  k: Float64Array;
  kind: Uint8Array;
  flags: Uint8Array;
  task: Int32Array;
  worker: Int32Array;
  attempt: Int32Array;
  time: Float64Array;
  end: Float64Array;
  a: Float64Array;
  b: Float64Array;
  c: Float64Array;
  d: Float64Array;
  e: Float64Array;
}

export const COLUMN_TYPES = {
  ms: Float64Array,
  seq: Float64Array,
  k: Float64Array,
  kind: Uint8Array,
  flags: Uint8Array,
  task: Int32Array,
  worker: Int32Array,
  attempt: Int32Array,
  time: Float64Array,
  end: Float64Array,
  a: Float64Array,
  b: Float64Array,
  c: Float64Array,
  d: Float64Array,
  e: Float64Array,
} as const;

export type ColumnName = keyof Columns;
export const COLUMN_NAMES = Object.keys(COLUMN_TYPES) as ColumnName[];

export interface ErrorRecord {
  exc_type: string;
  message: string;
  traceback: string;
}

/** Fields kept as an object for the rare events that carry text. */
export interface ExtraRecord {
  error?: ErrorRecord;
  status?: string;
  makespan?: number;
  failedTask?: string | null;
  nTasks?: number;
}

export interface Chunk {
  length: number;
  columns: Columns;
  /** Row (in this chunk) → record. */
  extras: [number, ExtraRecord][];
  /** Worker names first seen in this chunk, appended to the table in order. */
  newWorkers: string[];
  /** The resume point after this chunk (an entry id). */
  last: string;
}

export function allocateColumns(length: number): Columns {
  const out = {} as Record<ColumnName, unknown>;
  for (const name of COLUMN_NAMES) out[name] = new COLUMN_TYPES[name](length);
  return out as unknown as Columns;
}

export function transferables(columns: Columns): ArrayBuffer[] {
  return COLUMN_NAMES.map((name) => columns[name].buffer as ArrayBuffer);
}

/** Worker ids → small integers, consistent between the feed worker and the page. */
export class NameTable {
  readonly names: string[] = [];
  private readonly index = new Map<string, number>();
  private pending: string[] = [];

  id(name: string): number {
    if (!name) return -1;
    let i = this.index.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.index.set(name, i);
      this.pending.push(name);
    }
    return i;
  }

  /** Names added since the last call. */
  takeNew(): string[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }
}

function num(value: unknown, fallback = 0): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : String(value);
}

/** The log's direction words to their indexes (every one this page knows). */
const DIRECTIONS = new Map<string, Direction>(
  DIRECTION_NAMES.slice(0, Direction.Other).map((name, d) => [name, d as Direction]),
);

/** JSON events → one chunk. `workers` assigns worker indexes (and remembers new names). */
export function toChunk(events: WireEvent[], workers: NameTable, last: string): Chunk {
  let n = 0;
  for (const event of events) n += eventCount(event[2]) - (event[3] ?? 0);
  const col = allocateColumns(n);
  const extras: [number, ExtraRecord][] = [];
  let entry = '';
  let ms = 0;
  let seq = 0;
  let i = 0;
  for (const [entryId, k, ev, skip = 0] of events) {
    if (entryId !== entry) {
      entry = entryId;
      ({ ms, seq } = parseEntryId(entryId));
    }
    const rows = eventCount(ev) - skip;
    col.ms.fill(ms, i, i + rows);
    col.seq.fill(seq, i, i + rows);
    for (let j = 0; j < rows; j++) col.k[i + j] = k + skip + j;
    if (ev.kind === 'tasks-finished') fillFinished(col, i, ev, skip, workers);
    else if (ev.kind === 'transfers') fillTransfers(col, i, ev, skip, workers);
    else fillRow(col, i, ev, workers, extras);
    i += rows;
  }
  return { length: n, columns: col, extras, newWorkers: workers.takeNew(), last };
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? (value as number[]) : [];
}

/** A `tasks-finished` batch's rows from `skip` on, written from row `i` of `col`. */
function fillFinished(col: Columns, i: number, ev: RawEvent, skip: number, workers: NameTable): void {
  const task = numbers(ev.task);
  const attempt = numbers(ev.attempt);
  const start = numbers(ev.start);
  const end = numbers(ev.end);
  const inBytes = numbers(ev.input_bytes);
  const outBytes = numbers(ev.output_bytes);
  const download = numbers(ev.download_time);
  const upload = numbers(ev.upload_time);
  const execution = numbers(ev.execution_time);
  const kept = numbers(ev.kept);
  const placed = numbers(ev.placed);
  const lane = numbers(ev.lane);
  const table = Array.isArray(ev.workers) ? (ev.workers as string[]).map((w) => workers.id(str(w))) : [];
  const own = workers.id(str(ev.worker_id));
  const byLane = lane.length > 0 && table.length > 0;
  for (let j = skip; j < task.length; j++, i++) {
    col.kind[i] = Kind.TaskFinished;
    col.worker[i] = byLane ? (table[lane[j]] ?? -1) : own;
    col.task[i] = num(task[j], -1);
    col.attempt[i] = num(attempt[j], 1);
    const s = num(start[j]);
    col.time[i] = s;
    col.end[i] = Math.max(s, num(end[j], s));
    col.a[i] = num(inBytes[j]);
    col.b[i] = num(outBytes[j]);
    col.c[i] = num(download[j]);
    col.d[i] = num(upload[j]);
    col.e[i] = num(execution[j]);
    if (kept[j]) col.flags[i] |= FLAG_KEPT;
    col.flags[i] |= placedBits(placed[j]);
  }
}

/** A `transfers` batch's rows from `skip` on (one worker, one time). */
function fillTransfers(col: Columns, i: number, ev: RawEvent, skip: number, workers: NameTable): void {
  const bytes = numbers(ev.bytes);
  const seconds = numbers(ev.seconds);
  const direction = numbers(ev.direction);
  const producer = numbers(ev.producer);
  const consumer = numbers(ev.consumer);
  const local = numbers(ev.local);
  const worker = workers.id(str(ev.worker_id));
  const ts = num(ev.ts);
  for (let j = skip; j < bytes.length; j++, i++) {
    col.kind[i] = Kind.Transfer;
    col.worker[i] = worker;
    col.attempt[i] = 1;
    col.time[i] = ts;
    col.end[i] = ts;
    col.task[i] = num(producer[j], -1);
    col.a[i] = num(bytes[j]);
    col.b[i] = num(seconds[j]);
    const d = directionOf(direction[j]);
    col.c[i] = d;
    col.d[i] = num(consumer[j], -1);
    if (local[j] || onTheHost(d)) col.flags[i] |= FLAG_LOCAL;
  }
}

function fillRow(
  col: Columns, i: number, ev: RawEvent, workers: NameTable, extras: [number, ExtraRecord][],
): void {
  const kind = KIND_CODES[ev.kind] ?? Kind.Unknown;
  const ts = num(ev.ts);
  col.kind[i] = kind;
  col.worker[i] = workers.id(str(ev.worker_id));
  col.task[i] = -1;
  col.time[i] = ts;
  col.end[i] = ts;
  col.attempt[i] = num(ev.attempt, 1);
  switch (kind) {
    case Kind.TaskStarted:
      col.task[i] = num(ev.task, -1);
      break;
    case Kind.TaskFinished: {
      col.task[i] = num(ev.task, -1);
      const start = num(ev.start, ts);
      col.time[i] = start;
      col.end[i] = Math.max(start, num(ev.end, ts));
      col.a[i] = num(ev.input_bytes);
      col.b[i] = num(ev.output_bytes);
      col.c[i] = num(ev.download_time);
      col.d[i] = num(ev.upload_time);
      col.e[i] = num(ev.execution_time);
      if (ev.kept) col.flags[i] |= FLAG_KEPT;
      col.flags[i] |= placedBits(PLACEMENTS.get(str(ev.placed)));
      break;
    }
    case Kind.TaskFailed:
      col.task[i] = num(ev.task, -1);
      if (ev.final !== false) col.flags[i] |= FLAG_FINAL;
      if (ev.exc_type === RUN_ENDED) col.flags[i] |= FLAG_RUN_ENDED;
      extras.push([i, {
        error: { exc_type: str(ev.exc_type), message: str(ev.message), traceback: str(ev.traceback) },
      }]);
      break;
    case Kind.Transfer:
      col.task[i] = num(ev.producer, -1);
      col.a[i] = num(ev.bytes);
      col.b[i] = num(ev.seconds);
      col.c[i] = DIRECTIONS.get(str(ev.direction)) ?? Direction.Other;
      col.d[i] = ev.consumer == null ? -1 : num(ev.consumer, -1);
      if (ev.local || onTheHost(col.c[i])) col.flags[i] |= FLAG_LOCAL;
      break;
    case Kind.RunSubmitted:
      extras.push([i, { nTasks: num(ev.n_tasks) }]);
      break;
    case Kind.RunFinished:
      extras.push([i, {
        status: str(ev.status),
        makespan: num(ev.makespan),
        failedTask: ev.failed_task == null ? null : str(ev.failed_task),
      }]);
      break;
    case Kind.EventsDropped:
      col.a[i] = num(ev.count);
      break;
    default:
      break;
  }
}
