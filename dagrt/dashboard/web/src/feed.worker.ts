/// <reference lib="webworker" />
/**
 * A run's data feed, off the main thread: the graph, the backlog of events (REST pages),
 * then live batches (WebSocket, resumed from the last entry received). JSON is parsed and
 * turned into typed columns here; the page receives transferable chunks, each event once.
 */
import {
  eventCount, fetchEvents, fetchRun, HttpError, wsUrl, type LiveMessage, type WireEvent,
} from './api';
import { compareEntryIds, parseEntryId } from './ids';
import { LiveSocket, type ConnectionState } from './live';
import { NameTable, toChunk, transferables, type Chunk } from './store/events';
import { graphData } from './store/graph';
import type { FeedIn, FeedOut } from './feed';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const workers = new NameTable();
let socket: LiveSocket | null = null;
/** Resume point (an entry id) and the last event passed on (ms, seq, k). */
let resumeFrom: string | null = null;
let lastMs = -Infinity;
let lastSeq = -Infinity;
let lastK = -Infinity;

function post(message: FeedOut, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Drop events already passed on (a resent entry); keep the rest in order. */
function fresh(events: WireEvent[]): WireEvent[] {
  const out: WireEvent[] = [];
  let entry = '';
  let ms = 0;
  let seq = 0;
  for (const event of events) {
    if (event[0] !== entry) {
      entry = event[0];
      ({ ms, seq } = parseEntryId(entry));
    }
    const k = event[1];
    const lastOf = k + eventCount(event[2]) - 1;
    const order = ms - lastMs || seq - lastSeq;
    if (order > 0 || (order === 0 && lastOf > lastK)) {
      // a batch seen in part keeps its rows after the last one passed on
      const skip = order === 0 && k <= lastK ? lastK - k + 1 : 0;
      lastMs = ms;
      lastSeq = seq;
      lastK = lastOf;
      out.push(skip > 0 ? [event[0], k, event[2], skip] : event);
    }
  }
  return out;
}

function advance(last: string | null): void {
  if (last && (resumeFrom === null || compareEntryIds(last, resumeFrom) > 0)) resumeFrom = last;
}

function sendEvents(events: WireEvent[], last: string, phase: 'backlog' | 'live'): void {
  const kept = fresh(events);
  advance(last);
  if (kept.length === 0 && phase === 'live') return;
  const chunk: Chunk = toChunk(kept, workers, resumeFrom ?? last);
  post({ type: 'chunk', chunk, phase }, transferables(chunk.columns));
}

/** The run's graph (retried while it is not written yet). */
async function loadGraph(base: string, runId: string): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      const detail = await fetchRun(base, runId);
      if (detail.graph) {
        const graph = graphData(detail.graph);
        post({ type: 'graph', summary: detail.summary, graph },
          [graph.fn.buffer, graph.parentOff.buffer, graph.parentIdx.buffer] as ArrayBuffer[]);
        return true;
      }
      post({ type: 'waiting', reason: 'the run graph is not written yet' });
    } catch (error) {
      if (error instanceof HttpError && error.status === 400) {
        post({ type: 'error', message: `invalid run id ${runId}` });
        return false;
      }
      const reason = error instanceof HttpError && error.status === 404
        ? `no run ${runId} in the event log (yet)` : String(error);
      post({ type: 'waiting', reason });
    }
    await sleep(Math.min(250 * (attempt + 1), 2000));
  }
}

/** Events per REST page aimed at: small pages let parsing overlap the server's work. */
const PAGE_EVENTS = 12_000;

/**
 * The backlog, page by page. Pages are fetched while the graph loads; they are passed on
 * once the graph is (the page needs the graph before events).
 */
async function loadBacklog(base: string, runId: string, graphReady: Promise<boolean>): Promise<void> {
  let after: string | null = null;
  let count = 2; // entries; adapted to the events per entry seen
  let missing = 0;
  for (;;) {
    let page;
    try {
      page = await fetchEvents(base, runId, after, count);
    } catch (error) {
      // No events indexed yet: retry a little, then let the socket send the backlog.
      if (error instanceof HttpError && error.status === 404 && after === null && missing++ < 10) {
        await sleep(300);
        continue;
      }
      if (after === null && error instanceof HttpError && error.status === 404) return;
      throw error;
    }
    // Entries hold from one to thousands of events: grow or shrink the page by halves.
    let events = 0;
    for (const event of page.events) events += eventCount(event[2]);
    if (events < PAGE_EVENTS / 2) count = Math.min(2000, count * 2);
    else if (events > PAGE_EVENTS * 2) count = Math.max(1, Math.floor(count / 2));
    if (!(await graphReady)) return;
    sendEvents(page.events, page.last, 'backlog');
    after = page.last;
    if (page.done) return;
  }
}

function connect(base: string, runId: string): void {
  socket = new LiveSocket({
    url: wsUrl(base),
    run: runId,
    resumeFrom: () => resumeFrom,
    onState: (state: ConnectionState) => post({ type: 'connection', state }),
    onMessage: (message: LiveMessage) => {
      if (message.type === 'batch') sendEvents(message.events, message.last, 'live');
      else if (message.type === 'live') post({ type: 'caught-up' });
    },
  });
  socket.start();
}

async function start(base: string, runId: string): Promise<void> {
  post({ type: 'connection', state: 'connecting' });
  const graphReady = loadGraph(base, runId);
  for (let attempt = 0; ; attempt++) {
    try {
      await loadBacklog(base, runId, graphReady);
      break;
    } catch (error) {
      post({ type: 'waiting', reason: `loading events: ${String(error)}` });
      await sleep(Math.min(500 * 2 ** attempt, 5000));
    }
  }
  if (!(await graphReady)) return;
  post({ type: 'backlog-done' });
  connect(base, runId);
}

scope.onmessage = (event: MessageEvent<FeedIn>) => {
  const message = event.data;
  if (message.type === 'start') {
    void start(message.base, message.runId);
  } else if (message.type === 'stop') {
    socket?.stop();
    scope.close();
  }
};
