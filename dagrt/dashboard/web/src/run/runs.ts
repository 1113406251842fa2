/**
 * The runs list's model: `/api/runs`, kept current by the live socket (`run: null`:
 * run-submitted and run-finished of every run) and by re-fetching at most every second
 * while a run is running.
 */
import { fetchRuns, wsUrl, type LiveMessage, type RunSummary } from '../api';
import { LiveSocket, type ConnectionState } from '../live';
import { compareEntryIds } from '../ids';
import { Emitter } from '../util/emitter';

const REFRESH_MS = 1000;
const IDLE_REFRESH_MS = 10_000;

export class RunsModel extends Emitter {
  runs: RunSummary[] = [];
  connection: ConnectionState = 'connecting';
  ready = false;
  error: string | null = null;
  private socket: LiveSocket;
  private resumeFrom: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerDue = 0;
  private fetching = false;
  private again = false;
  private lastFetch = 0;
  private stopped = false;

  constructor(private readonly base: string) {
    super();
    this.socket = new LiveSocket({
      url: wsUrl(base),
      run: null,
      resumeFrom: () => this.resumeFrom,
      onState: (state) => {
        this.connection = state;
        if (state === 'live') this.refresh();
        this.emit();
      },
      onMessage: (message) => this.onMessage(message),
    });
    this.socket.start();
    void this.refresh();
  }

  stop(): void {
    this.stopped = true;
    this.socket.stop();
    if (this.timer !== null) clearTimeout(this.timer);
  }

  private onMessage(message: LiveMessage): void {
    if (message.type !== 'batch') return;
    if (!this.resumeFrom || compareEntryIds(message.last, this.resumeFrom) > 0) {
      this.resumeFrom = message.last;
    }
    let changed = false;
    let unknown = false; // an event of a run without a row: the index has it, fetch it
    for (const [, , event] of message.events) {
      const runId = event.run_id;
      if (!runId) continue;
      const row = this.runs.find((r) => r.run_id === runId);
      if (event.kind === 'run-submitted' && !row) {
        this.runs = [{
          run_id: runId, status: 'running', n_tasks: Number(event.n_tasks) || 0, done: 0,
          failed: 0, submitted: event.ts, finished: null, makespan: null, bytes_moved: 0,
          workers: [],
        }, ...this.runs];
        changed = true;
      } else if (event.kind === 'run-finished' && row) {
        row.status = String(event.status);
        row.finished = event.ts;
        row.makespan = Number(event.makespan);
        this.runs = [...this.runs];
        changed = true;
      } else if (!row) {
        unknown = true;
      }
    }
    if (changed) this.emit();
    if (changed || unknown) this.refreshSoon();
  }

  /** Re-fetch now or, if one was fetched less than a second ago, a second after it. */
  private refreshSoon(): void {
    const wait = this.lastFetch + REFRESH_MS - performance.now();
    if (wait <= 0) void this.refresh();
    else this.schedule(wait);
  }

  /** Re-fetch in `ms`, unless a re-fetch is already due sooner (never put one off). */
  private schedule(ms: number): void {
    if (this.stopped) return;
    const due = performance.now() + ms;
    if (this.timer !== null) {
      if (this.timerDue <= due) return;
      clearTimeout(this.timer);
    }
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, ms);
  }

  async refresh(): Promise<void> {
    if (this.stopped) return;
    if (this.timer !== null) { // this fetch is the one it was waiting for
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.fetching = true;
    this.lastFetch = performance.now();
    try {
      const runs = await fetchRuns(this.base, 100);
      // Keep rows the socket announced that the index does not list yet.
      const listed = new Set(runs.map((r) => r.run_id));
      const announced = this.runs.filter((r) => !listed.has(r.run_id) && r.status === 'running');
      this.runs = [...announced, ...runs];
      this.error = null;
      this.ready = true;
    } catch (error) {
      this.error = String(error);
    } finally {
      this.fetching = false;
    }
    this.emit();
    if (this.again) {
      this.again = false;
      this.refreshSoon();
      return;
    }
    const running = this.runs.some((r) => r.status === 'running');
    this.schedule(running ? REFRESH_MS : IDLE_REFRESH_MS);
  }
}
