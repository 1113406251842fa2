/**
 * The task stream on a Canvas2D: a lane per worker and slot, a bar per task attempt from
 * its start to its end (cut at the replay time), coloured by function; the download part
 * (at the start) and the upload part (at the end) in red; failed attempts dark.
 */
import { FAILED_BAR_COLOR, TRANSFER_COLOR, functionColor, workerColor } from '../colors';
import { formatSeconds } from '../format';
import type { RunStore } from '../store/runstore';
import type { Bar, Lane, LaneModel } from './lanes';

export const LABEL_WIDTH = 170;
const AXIS_HEIGHT = 22;
const MAX_HEIGHT = 420;

export class StreamRenderer {
  readonly ctx: CanvasRenderingContext2D;
  width = 0;
  dpr = 1;
  laneHeight = 16;
  /** Visible time window, seconds since submission (null: the whole run). */
  window: [number, number] | null = null;
  private lanesShown: Lane[] = [];

  constructor(
    readonly canvas: HTMLCanvasElement,
    readonly store: RunStore,
    readonly lanes: LaneModel,
  ) {
    this.ctx = canvas.getContext('2d', { alpha: false })!;
  }

  /** CSS height the canvas wants for the current lanes. */
  wantedHeight(): number {
    const count = Math.max(1, this.lanes.lanes().length);
    // Many slots: thinner lanes (down to a fraction of a pixel) rather than lanes cut off.
    const fit = (MAX_HEIGHT - AXIS_HEIGHT - 8) / count;
    this.laneHeight = fit >= 6 ? Math.min(18, Math.floor(fit)) : fit;
    return Math.ceil(Math.min(MAX_HEIGHT, count * this.laneHeight + AXIS_HEIGHT + 8));
  }

  /** [t0, t1] seconds since submission shown across the plot. */
  timeRange(): [number, number] {
    if (this.window) return this.window;
    return [0, Math.max(this.store.duration, 1e-3)];
  }

  private xOf(t: number): number {
    const [a, b] = this.timeRange();
    return LABEL_WIDTH + ((t - a) / (b - a)) * (this.width - LABEL_WIDTH - 8);
  }

  timeAt(x: number): number {
    const [a, b] = this.timeRange();
    return a + ((x - LABEL_WIDTH) / (this.width - LABEL_WIDTH - 8)) * (b - a);
  }

  draw(): void {
    const ctx = this.ctx;
    const d = this.dpr;
    const height = this.canvas.height / d;
    ctx.setTransform(d, 0, 0, d, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.width, height);
    this.lanes.update();
    const lanes = this.lanes.lanes();
    this.lanesShown = lanes;
    const store = this.store;
    const now = store.live ? Infinity : store.replayTime;
    const lh = this.laneHeight;
    const top = 4;
    const names = store.log.workers;
    const [ta, tb] = this.timeRange();

    // Lane backgrounds; per worker a colour stripe, its name, and slot numbers if room.
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    if (lh >= 4) {
      lanes.forEach((_, k) => {
        ctx.fillStyle = k % 2 ? '#f6f8fa' : '#ffffff';
        ctx.fillRect(LABEL_WIDTH, top + k * lh, this.width - LABEL_WIDTH, lh);
      });
    }
    for (let k = 0; k < lanes.length; ) {
      const worker = lanes[k].worker;
      let end = k;
      while (end < lanes.length && lanes[end].worker === worker) end++;
      const y0 = top + k * lh;
      const y1 = top + end * lh;
      ctx.fillStyle = '#d1d5db';
      ctx.fillRect(0, y0, this.width, 1);
      ctx.fillStyle = workerColor(worker);
      ctx.fillRect(4, y0 + 1, 4, Math.max(2, y1 - y0 - 2));
      if (y1 - y0 >= 11) {
        ctx.fillStyle = '#374151';
        const slots = end - k;
        const label = `${names[worker] ?? '?'}${slots > 1 ? ` (${slots} slots)` : ''}`;
        ctx.fillText(clipLeft(ctx, label, LABEL_WIDTH - 20), 12, y0 + Math.min(lh, y1 - y0) / 2 + 0.5);
      }
      if (lh >= 13) {
        ctx.fillStyle = '#9ca3af';
        ctx.textAlign = 'right';
        for (let j = k + 1; j < end; j++) ctx.fillText(`#${lanes[j].slot}`, LABEL_WIDTH - 6, top + j * lh + lh / 2 + 0.5);
        ctx.textAlign = 'start';
      }
      k = end;
    }

    // Bars, grouped by colour; neighbours closer than a pixel merge into one rect.
    const packed = this.pack(lanes);
    const compute = new Map<number, Path2D>();
    const transfer = new Path2D();
    const failed = new Path2D();
    const xmin = LABEL_WIDTH;
    const xmax = this.width - 8;
    const T = store.live ? Infinity : store.cursorT;
    const P = store.live ? Infinity : store.cursorP;
    const scale = (this.width - LABEL_WIDTH - 8) / (tb - ta);
    const X = (t: number) => LABEL_WIDTH + (t - ta) * scale;
    const limit = store.considered;
    for (let k = 0; k < packed.length; k++) {
      const lane = packed[k];
      const y = top + k * lh + (lh >= 6 ? 1 : 0);
      const h = lh >= 6 ? lh - 2 : Math.max(0.5, lh * 0.85);
      // Bars of a slot do not overlap: sorted by start, their ends are sorted too.
      let b = upperBound(lane.end, ta - 1e-12);
      let runFn = -1;
      let runX0 = 0;
      let runX1 = -Infinity;
      let redX0 = 0;
      let redX1 = -Infinity;
      const flush = () => {
        if (runFn >= 0) {
          let path = compute.get(runFn);
          if (!path) compute.set(runFn, (path = new Path2D()));
          path.rect(runX0, y, runX1 - runX0, h);
        }
        runFn = -1;
      };
      const red = (x0: number, x1: number) => {
        if (x0 > redX1 + 0.75) {
          if (redX1 > -Infinity) transfer.rect(redX0, y, redX1 - redX0, h);
          redX0 = x0;
        }
        redX1 = Math.max(redX1, x1);
      };
      for (; b < lane.count; b++) {
        const start = lane.start[b];
        if (start > tb || start > T || (start === T && lane.pos[b] > P)) break;
        if (lane.pos[b] >= limit) continue;
        const end = Math.min(lane.end[b], now);
        const x0 = Math.max(xmin, X(start));
        const x1 = Math.min(xmax, Math.max(X(end), x0 + 1));
        if (lane.failed[b]) {
          failed.rect(x0, y, x1 - x0, h);
          continue;
        }
        const fn = lane.fn[b];
        if (fn !== runFn || x0 > runX1 + 0.75) {
          flush();
          runFn = fn;
          runX0 = x0;
        }
        runX1 = Math.max(runX1, x1);
        const download = lane.download[b];
        if (download > 0) {
          const dx1 = Math.min(x1, X(Math.min(start + download, end)));
          if (dx1 - x0 >= 0.5) red(x0, dx1);
        }
        const upload = lane.upload[b];
        if (upload > 0 && lane.end[b] <= now) {
          const ux0 = Math.max(x0, X(lane.end[b] - upload));
          if (x1 - ux0 >= 0.5) red(ux0, x1);
        }
      }
      flush();
      if (redX1 > -Infinity) transfer.rect(redX0, y, redX1 - redX0, h);
    }
    for (const [fn, path] of compute) {
      ctx.fillStyle = functionColor(fn);
      ctx.fill(path);
    }
    ctx.fillStyle = TRANSFER_COLOR;
    ctx.fill(transfer);
    ctx.fillStyle = FAILED_BAR_COLOR;
    ctx.fill(failed);

    // Time axis and the replay cursor.
    const axisY = top + lanes.length * lh + 2;
    ctx.fillStyle = '#d1d5db';
    ctx.fillRect(LABEL_WIDTH, axisY, this.width - LABEL_WIDTH - 8, 1);
    ctx.fillStyle = '#6b7280';
    ctx.textBaseline = 'top';
    ctx.textAlign = 'center';
    const step = niceStep((tb - ta) / Math.max(2, Math.floor((this.width - LABEL_WIDTH) / 90)));
    for (let t = Math.ceil(ta / step) * step; t <= tb + 1e-12; t += step) {
      const x = this.xOf(t);
      ctx.fillRect(x, axisY, 1, 4);
      const label = formatSeconds(Number(t.toPrecision(6)));
      const half = ctx.measureText(label).width / 2;
      ctx.fillText(label, Math.min(x, this.width - half - 2), axisY + 6);
    }
    ctx.textAlign = 'start';
    ctx.textBaseline = 'alphabetic';
    if (!store.live) {
      const x = this.xOf(store.replayTime);
      if (x >= xmin && x <= xmax) {
        ctx.fillStyle = '#111827';
        ctx.fillRect(x - 0.5, top, 1, lanes.length * lh);
      }
    }
  }

  private packedFor: Lane[] | null = null;
  private packedT0 = NaN;
  private packed: PackedLane[] = [];

  /** The lanes' bars as typed columns (seconds since t0), rebuilt when the lanes change. */
  private pack(lanes: Lane[]): PackedLane[] {
    const t0 = this.store.t0;
    if (lanes === this.packedFor && t0 === this.packedT0) return this.packed;
    const c = this.store.log.columns;
    const fnOf = this.store.graph.fn;
    this.packed = lanes.map((lane) => {
      const n = lane.bars.length;
      const out: PackedLane = {
        count: n,
        start: new Float64Array(n), end: new Float64Array(n), pos: new Int32Array(n),
        fn: new Int32Array(n), download: new Float64Array(n), upload: new Float64Array(n),
        failed: new Uint8Array(n),
      };
      lane.bars.forEach((bar, k) => {
        out.start[k] = bar.start - t0;
        out.end[k] = bar.end - t0;
        out.pos[k] = bar.pos;
        out.fn[k] = fnOf[bar.task] ?? 0;
        out.failed[k] = bar.failed ? 1 : 0;
        out.download[k] = bar.failed ? 0 : c.c[bar.pos];
        out.upload[k] = bar.failed ? 0 : c.d[bar.pos];
      });
      return out;
    });
    this.packedFor = lanes;
    this.packedT0 = t0;
    return this.packed;
  }

  /** The bar under a point (CSS px), if any. */
  barAt(x: number, y: number): { bar: Bar; lane: Lane } | null {
    const k = Math.floor((y - 4) / this.laneHeight);
    const lane = this.lanesShown[k];
    if (!lane || x < LABEL_WIDTH) return null;
    const store = this.store;
    const t = this.timeAt(x) + store.t0;
    const tolerance = Math.abs(this.timeAt(x + 3) - this.timeAt(x));
    const bars = lane.bars;
    let lo = 0;
    let hi = bars.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bars[mid].start <= t + tolerance) lo = mid + 1;
      else hi = mid;
    }
    for (let j = lo - 1; j >= Math.max(0, lo - 3); j--) {
      const bar = bars[j];
      if (bar.pos >= store.considered || !store.inEffect(bar.pos)) continue;
      if (bar.start - tolerance <= t && t <= bar.end + tolerance) return { bar, lane };
    }
    return null;
  }
}

interface PackedLane {
  count: number;
  start: Float64Array;
  end: Float64Array;
  pos: Int32Array;
  fn: Int32Array;
  download: Float64Array;
  upload: Float64Array;
  failed: Uint8Array;
}

/** First index whose value is > x (values sorted ascending). */
function upperBound(values: Float64Array, x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

function clipLeft(ctx: CanvasRenderingContext2D, text: string, width: number): string {
  if (ctx.measureText(text).width <= width) return text;
  let cut = 1;
  while (cut < text.length && ctx.measureText('…' + text.slice(cut)).width > width) cut++;
  return '…' + text.slice(cut);
}
