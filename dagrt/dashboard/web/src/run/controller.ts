/**
 * A run page's model: starts the feed worker (graph, backlog, live batches) and the
 * layout worker, applies received events in slices (yielding between them so input stays
 * responsive), drives replay (seek, step, play at 1/10/100x) and keeps `#/run/<id>?t=`.
 */
import type { Layout, LayoutInput } from '../layout';
import { Feed, type FeedOut } from '../feed';
import type { ConnectionState } from '../live';
import { RunStore } from '../store/runstore';
import { LaneModel } from '../stream/lanes';
import { Emitter } from '../util/emitter';
import { yieldToEvents } from '../util/schedule';

/** Events applied per slice before yielding to input events. */
const SLICE = 40_000;

export type Speed = 1 | 10 | 100;

export class RunController extends Emitter {
  store: RunStore | null = null;
  lanes: LaneModel | null = null;
  layout: Layout | null = null;
  connection: ConnectionState = 'connecting';
  waiting: string | null = null;
  error: string | null = null;
  backlogDone = false;
  drawn = false;
  playing = false;
  speed: Speed = 1;
  selected = -1;
  /** Replay time asked for by the URL, applied once the backlog is in. */
  private initialTime: number | null;
  private feed: Feed | null = null;
  private layoutWorker: Worker | null = null;
  private pumping = false;
  private stopped = false;
  private lastFrame = 0;
  private playHandle = 0;
  private playTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly base: string, readonly runId: string, initialTime: number | null) {
    super();
    this.initialTime = initialTime;
    this.feed = new Feed(base, runId, (message) => this.onFeed(message));
    // Load the layout worker now; it gets the graph when that arrives.
    this.layoutWorker = new Worker(new URL('../layout.worker.ts', import.meta.url), { type: 'module' });
  }

  private loaded = false;

  /** The view loaded its data: graph, backlog applied, layout drawn (stays true). */
  get ready(): boolean {
    if (!this.loaded) {
      this.loaded = this.backlogDone && this.store !== null && this.store.pending === 0 &&
        this.initialTime === null && this.drawn;
      if (this.loaded) performance.mark('dagrt:ready');
    }
    return this.loaded;
  }

  stop(): void {
    this.stopped = true;
    this.pause(false);
    this.feed?.stop();
    this.layoutWorker?.terminate();
  }

  private onFeed(message: FeedOut): void {
    if (this.stopped) return;
    switch (message.type) {
      case 'graph':
        performance.mark('dagrt:graph');
        this.store = new RunStore(message.graph, message.summary);
        this.lanes = new LaneModel(this.store);
        this.waiting = null;
        this.startLayout();
        break;
      case 'chunk':
        this.store?.receive(message.chunk);
        this.pump();
        return; // the pump emits
      case 'backlog-done':
        performance.mark('dagrt:backlog');
        this.backlogDone = true;
        this.pump();
        break;
      case 'connection':
        this.connection = message.state;
        break;
      case 'waiting':
        this.waiting = message.reason;
        break;
      case 'error':
        this.error = message.message;
        break;
      default:
        break;
    }
    this.emit();
  }

  private startLayout(): void {
    const graph = this.store!.graph;
    const worker = this.layoutWorker;
    if (!worker) return;
    worker.onmessage = (event: MessageEvent<{ layout: Layout }>) => {
      performance.mark('dagrt:layout');
      this.layout = event.data.layout;
      worker.terminate();
      this.layoutWorker = null;
      this.emit();
    };
    worker.onerror = (event) => {
      this.error = `layout failed: ${event.message}`;
      this.emit();
    };
    const input: LayoutInput & { id: number } = {
      id: 1,
      n: graph.n,
      parentOff: graph.parentOff.slice(),
      parentIdx: graph.parentIdx.slice(),
    };
    worker.postMessage(input, [input.parentOff.buffer, input.parentIdx.buffer]);
  }

  /** Apply received events in slices, yielding between slices. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.stopped && this.store && this.store.pending > 0) {
        this.store.applySome(SLICE);
        if (this.store.pending > 0) {
          this.emit();
          await yieldToEvents();
        }
      }
    } finally {
      this.pumping = false;
    }
    if (this.backlogDone && this.initialTime !== null && this.store) {
      const t = this.initialTime;
      this.initialTime = null;
      this.store.seek(t);
    }
    this.emit();
  }

  markDrawn(): void {
    if (this.drawn) return;
    this.drawn = true;
    this.emit();
  }

  /** Notified when the selected node changes (the details panel follows at once). */
  readonly selection = new Emitter();

  select(index: number): void {
    this.selected = index;
    this.selection.emit();
    this.emit();
  }

  // -- replay ---------------------------------------------------------------------------

  seek(t: number, updateUrl = true): void {
    const store = this.store;
    if (!store) return;
    store.seek(Math.max(0, Math.min(t, store.duration)));
    if (updateUrl) this.writeUrl();
    this.emit();
  }

  goLive(): void {
    this.pause(false);
    this.store?.goLive();
    this.writeUrl();
    this.emit();
  }

  stepForward(): void {
    this.pause(false);
    const store = this.store;
    if (!store) return;
    if (store.live) {
      // Leave live at the newest event: nothing after it yet.
      store.seek(store.duration);
    } else {
      store.stepForward();
    }
    this.writeUrl();
    this.emit();
  }

  stepBack(): void {
    this.pause(false);
    this.store?.stepBack();
    this.writeUrl();
    this.emit();
  }

  setSpeed(speed: Speed): void {
    this.speed = speed;
    this.emit();
  }

  play(): void {
    const store = this.store;
    if (!store || this.playing) return;
    if (store.live || store.replayTime >= store.duration - 1e-9) store.seek(0);
    this.playing = true;
    this.lastFrame = performance.now();
    this.scheduleTick();
    this.emit();
  }

  /** Advance by wall time × speed, once per frame (or every 100 ms without frames). */
  private scheduleTick(): void {
    let done = false;
    const tick = () => {
      if (done) return;
      done = true;
      cancelAnimationFrame(this.playHandle);
      clearTimeout(this.playTimer);
      this.tick();
    };
    this.playHandle = requestAnimationFrame(tick);
    this.playTimer = setTimeout(tick, 100);
  }

  private tick(): void {
    const s = this.store;
    if (!this.playing || !s) return;
    const now = performance.now();
    const dt = (now - this.lastFrame) / 1000;
    this.lastFrame = now;
    const t = Math.min(s.duration, s.replayTime + dt * this.speed);
    s.seek(t);
    if (t >= s.duration) {
      this.pause();
    } else {
      this.emit();
      this.scheduleTick();
    }
  }

  pause(writeUrl = true): void {
    if (!this.playing) {
      if (!writeUrl) return;
      // Paused while following a live run: freeze at the newest event.
      if (this.store?.live) this.store.seek(this.store.duration);
      this.writeUrl();
      this.emit();
      return;
    }
    this.playing = false;
    cancelAnimationFrame(this.playHandle);
    clearTimeout(this.playTimer);
    // Stop on a millisecond, so that the URL reads back as exactly this moment.
    const store = this.store;
    if (store && !store.live && store.replayTime < store.duration) {
      store.seek(Math.round(store.replayTime * 1000) / 1000);
    }
    if (writeUrl) this.writeUrl();
    this.emit();
  }

  /** `#/run/<id>` while live, `#/run/<id>?t=<s>` while replaying. */
  private writeUrl(): void {
    if (this.stopped || !this.store) return;
    const hash = this.store.live
      ? `#/run/${this.runId}`
      : `#/run/${this.runId}?t=${formatTime(this.store.replayTime)}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }
}

/** Shortest text that reads back as the same number. */
function formatTime(t: number): string {
  for (let digits = 3; digits <= 9; digits++) {
    const text = t.toFixed(digits);
    if (Number(text) === t) return text.replace(/\.?0+$/, '') || '0';
  }
  return String(t);
}
