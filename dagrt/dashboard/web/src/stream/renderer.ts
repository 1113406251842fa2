/**
 * The task stream on a Canvas2D: a lane per worker and slot, a bar per task attempt from
 * its start to its end (cut at the replay time), coloured by function; the download part
 * (at the start) and the upload part (at the end) in red; failed attempts dark.
 */
import { categorical, FAILED_BAR_COLOR, TRANSFER_COLOR } from '../colors';
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
    this.laneHeight = Math.max(5, Math.min(18, Math.floor((MAX_HEIGHT - AXIS_HEIGHT - 8) / count)));
    return Math.min(MAX_HEIGHT, count * this.laneHeight + AXIS_HEIGHT + 8);
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
    const t0 = store.t0;
    const now = store.live ? Infinity : store.replayTime;
    const lh = this.laneHeight;
    const top = 4;
    const names = store.log.workers;
    const { graph } = store;
    const [ta, tb] = this.timeRange();

    // Lane backgrounds and labels.
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    let previousWorker = -2;
    lanes.forEach((lane, k) => {
      const y = top + k * lh;
      ctx.fillStyle = k % 2 ? '#f6f8fa' : '#ffffff';
      ctx.fillRect(LABEL_WIDTH, y, this.width - LABEL_WIDTH, lh);
      if (lane.worker !== previousWorker) {
        ctx.fillStyle = '#e5e7eb';
        ctx.fillRect(0, y, this.width, 1);
        ctx.fillStyle = categorical(lane.worker);
        ctx.fillRect(4, y + 2, 4, Math.max(2, lh - 4));
      }
      if (lh >= 10) {
        ctx.fillStyle = '#374151';
        const label = lane.worker !== previousWorker ? (names[lane.worker] ?? '?') : '';
        const text = `${clipLeft(ctx, label, LABEL_WIDTH - 44)}${label ? ' ' : ''}#${lane.slot}`;
        ctx.fillText(text, 12, y + lh / 2);
      }
      previousWorker = lane.worker;
    });

    // Bars, grouped by colour.
    const compute = new Map<number, Path2D>();
    const transfer = new Path2D();
    const failed = new Path2D();
    const xmin = LABEL_WIDTH;
    const xmax = this.width - 8;
    lanes.forEach((lane, k) => {
      const y = top + k * lh + 1;
      const h = Math.max(2, lh - 2);
      for (const bar of lane.bars) {
        if (!store.inEffect(bar.pos) || bar.pos >= store.considered) continue;
        const start = bar.start - t0;
        const end = Math.min(bar.end - t0, now);
        if (end < ta || start > tb) continue;
        const x0 = Math.max(xmin, this.xOf(start));
        const x1 = Math.min(xmax, Math.max(this.xOf(end), x0 + 1));
        if (bar.failed) {
          failed.rect(x0, y, x1 - x0, h);
          continue;
        }
        const fn = graph.fn[bar.task] ?? 0;
        let path = compute.get(fn);
        if (!path) compute.set(fn, (path = new Path2D()));
        path.rect(x0, y, x1 - x0, h);
        const c = store.log.columns;
        const download = c.c[bar.pos];
        const upload = c.d[bar.pos];
        if (download > 0) {
          const dx1 = Math.min(x1, this.xOf(Math.min(start + download, end)));
          if (dx1 - x0 >= 0.5) transfer.rect(x0, y, dx1 - x0, h);
        }
        if (upload > 0 && bar.end - t0 <= now) {
          const ux0 = Math.max(x0, this.xOf(bar.end - t0 - upload));
          if (x1 - ux0 >= 0.5) transfer.rect(ux0, y, x1 - ux0, h);
        }
      }
    });
    for (const [fn, path] of compute) {
      ctx.fillStyle = categorical(fn);
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
      ctx.fillText(formatSeconds(Number(t.toPrecision(6))), x, axisY + 6);
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
