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

  constructor(private readonly fn: () => void) {}

  request(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(this.run);
    // Hidden tabs get no frames: run anyway, later.
    this.timer = setTimeout(this.run, 250);
  }

  private run = (): void => {
    if (!this.pending) return;
    this.pending = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.fn();
  };
}

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
