/** The dashboard server's API (dagrt/dashboard/server.py): types and fetchers. */

export type RunStatus = 'running' | 'finished' | 'failed' | 'cancelled';

export interface RunSummary {
  run_id: string;
  status: RunStatus | string;
  n_tasks: number;
  done: number;
  failed: number;
  submitted: number;
  finished: number | null;
  makespan: number | null;
  bytes_moved: number;
  workers: string[];
  /** tasks not run: the cache had them, or only such tasks needed them */
  spared?: number;
  /** a sub-run (the graph a task returned): that task's run and key */
  parent_run?: string;
  parent_task?: string;
  /** the run's priority, added to its tasks' (dagrt.resources); absent: 0 */
  priority?: number;
  /** its tasks per lane (those that need resources or have a priority) */
  lanes?: Record<string, number>;
  first?: string;
  last?: string;
}

export interface RunGraphJson {
  keys: string[];
  names: string[];
  parents: number[][];
  outputs: number[];
}

export interface RunDetail {
  summary: RunSummary;
  graph: RunGraphJson | null;
}

/**
 * `[entry id, index in the entry, event]`. A batch event (`tasks-finished`, `transfers`)
 * holds `n` events as columns and stands for the indexes `k .. k + n - 1`; an optional
 * fourth item says how many of its first rows to skip (already received).
 */
export type WireEvent = [string, number, RawEvent] | [string, number, RawEvent, number];

/** How many events a wire event stands for. */
export function eventCount(event: RawEvent): number {
  return typeof event.n === 'number' ? event.n : 1;
}

export interface RawEvent {
  kind: string;
  ts: number;
  run_id: string;
  worker_id: string;
  [field: string]: unknown;
}

export interface EventsPage {
  events: WireEvent[];
  last: string;
  done: boolean;
}

export interface WorkerInfo {
  id: string;
  pid?: number;
  host?: string;
  status?: string;
  ts?: number;
  age?: number;
  alive?: boolean;
  in_flight?: number;
  done?: number;
  failed?: number;
  [field: string]: unknown;
}

/** Messages of `WS /api/live`. */
export type LiveMessage =
  | { type: 'batch'; last: string; events: WireEvent[] }
  | { type: 'live'; last: string }
  | { type: 'ping' };

/** The directory the page was served from ("http://host:port/"), for API URLs. */
export function apiBase(): string {
  return new URL('.', document.baseURI).href;
}

export function wsUrl(base: string): string {
  const url = new URL('api/live', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(url, { signal, cache: 'no-store' });
  if (!response.ok) {
    throw new HttpError(response.status, `GET ${url}: ${response.status}`);
  }
  return (await response.json()) as T;
}

export function fetchRuns(base: string, limit = 100, signal?: AbortSignal): Promise<RunSummary[]> {
  return getJson(`${base}api/runs?limit=${limit}`, signal);
}

export function fetchRun(base: string, runId: string, signal?: AbortSignal): Promise<RunDetail> {
  return getJson(`${base}api/runs/${encodeURIComponent(runId)}`, signal);
}

export function fetchEvents(
  base: string, runId: string, after: string | null, count = 2000, signal?: AbortSignal,
): Promise<EventsPage> {
  const query = `count=${count}` + (after ? `&after=${encodeURIComponent(after)}` : '');
  return getJson(`${base}api/runs/${encodeURIComponent(runId)}/events?${query}`, signal);
}

export function fetchWorkers(base: string, signal?: AbortSignal): Promise<WorkerInfo[]> {
  return getJson(`${base}api/workers`, signal);
}

export function traceUrl(base: string, runId: string): string {
  return `${base}api/runs/${encodeURIComponent(runId)}/trace.json`;
}
