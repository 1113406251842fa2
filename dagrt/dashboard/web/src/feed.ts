/** The feed worker's messages, and a typed handle on it. */
import type { RunSummary } from './api';
import type { ConnectionState } from './live';
import type { Chunk } from './store/events';
import type { GraphData } from './store/graph';

export type FeedIn = { type: 'start'; base: string; runId: string } | { type: 'stop' };

export type FeedOut =
  | { type: 'graph'; summary: RunSummary; graph: GraphData }
  | { type: 'chunk'; chunk: Chunk; phase: 'backlog' | 'live' }
  | { type: 'backlog-done' }
  | { type: 'caught-up' }
  | { type: 'connection'; state: ConnectionState }
  | { type: 'waiting'; reason: string }
  | { type: 'error'; message: string };

export class Feed {
  private readonly worker: Worker;

  constructor(base: string, runId: string, onMessage: (message: FeedOut) => void) {
    this.worker = new Worker(new URL('./feed.worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (event: MessageEvent<FeedOut>) => onMessage(event.data);
    this.worker.onerror = (event) => onMessage({ type: 'error', message: event.message });
    this.worker.postMessage({ type: 'start', base, runId } satisfies FeedIn);
  }

  stop(): void {
    this.worker.postMessage({ type: 'stop' } satisfies FeedIn);
    setTimeout(() => this.worker.terminate(), 1000);
  }
}
