/** Yielding to the event loop, and coalescing redraws into animation frames. */

const channel = typeof MessageChannel !== 'undefined' ? new MessageChannel() : null;
const waiting: (() => void)[] = [];
if (channel) {
  channel.port1.onmessage = () => waiting.shift()?.();
}

/** Resolves on a fresh macrotask (input events get to run first). */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    if (channel) {
      waiting.push(resolve);
      channel.port2.postMessage(0);
    } else {
      setTimeout(resolve, 0);
    }
  });
}

/** Calls `fn` once per animation frame at most, however often `request` is called. */
export class FrameTask {
  private pending = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private delayed: ReturnType<typeof setTimeout> | null = null;
  private last = 0;

  constructor(private readonly fn: () => void) {}

  request(): void {
    if (this.pending) return;
    if (this.delayed !== null) {
      clearTimeout(this.delayed);
      this.delayed = null;
    }
    this.pending = true;
    requestAnimationFrame(this.run);
    // Hidden tabs get no frames: run anyway, later.
    this.timer = setTimeout(this.run, 250);
  }

  /**
   * Like `request`, but no sooner than `ms` after the last run: a page following a
   * live run redraws a few times a second, not at every batch of events, so it leaves
   * the machine's cores to the workers it watches.
   */
  requestWithin(ms: number): void {
    if (this.pending || this.delayed !== null) return;
    const wait = this.last + ms - performance.now();
    if (wait <= 0) return this.request();
    this.delayed = setTimeout(() => {
      this.delayed = null;
      this.request();
    }, wait);
  }

  private run = (): void => {
    if (!this.pending) return;
    this.pending = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.last = performance.now();
    this.fn();
  };
}

/** How often a page following a live run redraws its canvases (ms). */
export const LIVE_REDRAW_MS = 250;

/** Calls `fn` at most every `ms` milliseconds (trailing call included). */
export function throttle(fn: () => void, ms: number): () => void {
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  return () => {
    const now = performance.now();
    const wait = last + ms - now;
    if (wait <= 0 && timer === null) {
      last = now;
      fn();
    } else if (timer === null) {
      timer = setTimeout(() => {
        timer = null;
        last = performance.now();
        fn();
      }, Math.max(0, wait));
    }
  };
}
