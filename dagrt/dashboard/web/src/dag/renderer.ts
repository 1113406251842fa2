/**
 * The DAG on a Canvas2D. World coordinates come from the layout (x: node slot, y: layer);
 * the view maps them to CSS pixels with separate x and y scales. Nodes are crisp rects in
 * device pixels (their centre pixel has exactly the node's colour). Edges are drawn once
 * per view into a cached layer; between view changes only nodes whose colour changed are
 * repainted. When more than AGGREGATE_ABOVE nodes would be visible, boxes per function
 * and band of layers (with counts per state) are drawn instead; zooming in far enough
 * shows the individual nodes of the region in view.
 */
import { EDGE_COLORS, STATE_COLORS, functionColor, workerColor } from '../colors';
import type { Layout } from '../layout';
import { EdgeKind, State } from '../store/reducer';
import type { RunStore } from '../store/runstore';
import { aggregate, boxStateCounts, type Aggregation } from './aggregate';
import { criticalPath, type CriticalPath } from './critical';

export type ColorMode = 'state' | 'worker' | 'function';

export const AGGREGATE_ABOVE = 5000;
/** While following a live run, the edge layer is refreshed at most this often. */
const EDGE_REFRESH_MS = 400;
const PAD = 18;

export interface View {
  sx: number;
  sy: number;
  ox: number;
  oy: number;
}

interface NodeSize {
  w: number; // device px
  h: number;
}

export class DagRenderer {
  readonly ctx: CanvasRenderingContext2D;
  private readonly edgeLayer = document.createElement('canvas');
  private readonly edgeCtx: CanvasRenderingContext2D;
  width = 0; // CSS px
  height = 0;
  dpr = 1;
  view: View = { sx: 1, sy: 1, ox: 0, oy: 0 };
  /** The user panned or zoomed: keep the view on resize. */
  userMoved = false;
  layout: Layout | null = null;
  private agg: Aggregation | null = null;
  colorMode: ColorMode = 'state';
  showCritical = false;
  selected = -1;
  selectedBox = -1;
  aggregated = false;
  visibleNodes = 0;
  /** Set after the first complete drawing with a layout. */
  drawnOnce = false;
  /** Called when the drawing switches between aggregated and individual nodes. */
  onModeChange: (() => void) | null = null;

  private visible = new Int32Array(0);
  private visibleMark = new Uint8Array(0);
  private drawnKey = new Int32Array(0);
  private size: NodeSize = { w: 1, h: 2 };
  private viewDirty = true;
  private edgeVersion = -1;
  private edgeTime = 0;
  private critical: CriticalPath | null = null;
  private criticalVersion = -1;
  private boxCounts: Int32Array = new Int32Array(0);
  private later: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly canvas: HTMLCanvasElement,
    readonly store: RunStore,
    private readonly requestDraw: () => void,
  ) {
    this.ctx = canvas.getContext('2d', { alpha: false })!;
    this.edgeCtx = this.edgeLayer.getContext('2d')!;
  }

  // -- setup ------------------------------------------------------------------------

  setLayout(layout: Layout): void {
    this.layout = layout;
    const n = layout.n;
    this.visibleMark = new Uint8Array(n);
    this.drawnKey = new Int32Array(n).fill(-1);
    this.agg = n > AGGREGATE_ABOVE ? aggregate(this.store.graph, layout) : null;
    this.fit();
  }

  resize(width: number, height: number, dpr: number): void {
    if (width === this.width && height === this.height && dpr === this.dpr) return;
    this.width = width;
    this.height = height;
    this.dpr = dpr;
    this.canvas.width = Math.max(1, Math.round(width * dpr));
    this.canvas.height = Math.max(1, Math.round(height * dpr));
    this.edgeLayer.width = this.canvas.width;
    this.edgeLayer.height = this.canvas.height;
    if (!this.userMoved) this.fit();
    this.invalidate();
  }

  /** Show the whole graph. */
  fit(): void {
    const layout = this.layout;
    this.userMoved = false;
    if (!layout || this.width === 0) return this.invalidate();
    const spanX = layout.maxX - layout.minX + 1;
    const L = Math.max(1, layout.layerCount);
    const sx = Math.min(64, Math.max(1e-3, (this.width - 2 * PAD) / spanX));
    const sy = Math.min(90, Math.max(1e-3, (this.height - 2 * PAD) / L));
    this.view = {
      sx,
      sy,
      ox: this.width / 2 - ((layout.minX + layout.maxX) / 2) * sx,
      oy: (this.height - (L - 1) * sy) / 2,
    };
    this.invalidate();
  }

  invalidate(): void {
    this.viewDirty = true;
    this.requestDraw();
  }

  setColorMode(mode: ColorMode): void {
    this.colorMode = mode;
    this.invalidate();
  }

  setCritical(on: boolean): void {
    this.showCritical = on;
    this.criticalVersion = -1;
    this.invalidate();
  }

  select(index: number): void {
    this.selected = index;
    this.selectedBox = -1;
    this.invalidate();
  }

  selectBox(box: number): void {
    this.selectedBox = box;
    this.selected = -1;
    this.invalidate();
  }

  get aggregation(): Aggregation | null {
    return this.agg;
  }

  // -- view changes -------------------------------------------------------------------

  pan(dx: number, dy: number): void {
    this.view.ox += dx;
    this.view.oy += dy;
    this.userMoved = true;
    this.invalidate();
  }

  zoom(factor: number, cx: number, cy: number): void {
    const v = this.view;
    const layout = this.layout;
    if (!layout) return;
    const spanX = layout.maxX - layout.minX + 1;
    const minSx = Math.min(1, (this.width - 2 * PAD) / spanX) * 0.25;
    const next = Math.min(400, Math.max(minSx, v.sx * factor));
    const f = next / v.sx;
    v.ox = cx - (cx - v.ox) * f;
    v.oy = cy - (cy - v.oy) * f;
    v.sx *= f;
    v.sy *= f;
    this.userMoved = true;
    this.invalidate();
  }

  /** Zoom so that the world rectangle fills the view. */
  zoomToWorld(x0: number, x1: number, l0: number, l1: number): void {
    const sx = Math.min(64, (this.width - 2 * PAD) / Math.max(1, x1 - x0 + 1));
    const sy = Math.min(90, (this.height - 2 * PAD) / Math.max(1, l1 - l0 + 1));
    const s = Math.min(sx / this.view.sx, sy / this.view.sy);
    const v = this.view;
    v.sx *= s;
    v.sy *= s;
    v.ox = this.width / 2 - ((x0 + x1) / 2) * v.sx;
    v.oy = this.height / 2 - ((l0 + l1) / 2) * v.sy;
    this.userMoved = true;
    this.invalidate();
  }

  // -- geometry -------------------------------------------------------------------------

  private nodeSize(): NodeSize {
    const { sx, sy } = this.view;
    const d = this.dpr;
    const w = sx * d < 1.5 ? 1 : Math.max(1, Math.round(Math.min(56, sx * 0.72) * d));
    const h = Math.max(2, Math.round(Math.min(30, Math.max(2, sy * 0.42)) * d));
    return { w, h };
  }

  /** Device-pixel rect of node i: [x0, y0] (w, h from this.size). */
  private nodeOrigin(i: number): [number, number] {
    const layout = this.layout!;
    const { sx, sy, ox, oy } = this.view;
    const d = this.dpr;
    const cx = (layout.x[i] * sx + ox) * d;
    const cy = (layout.layer[i] * sy + oy) * d;
    return [Math.round(cx - this.size.w / 2), Math.round(cy - this.size.h / 2)];
  }

  /** Is node i drawn as a node of its own (not aggregated, in view)? */
  private drawnAlone(i: number): boolean {
    return !!this.layout && !this.aggregated && i >= 0 && i < this.layout.n && !!this.visibleMark[i];
  }

  /** Centre of node i in CSS px, if it is drawn individually. */
  nodeCenter(i: number): { x: number; y: number } | null {
    if (!this.drawnAlone(i)) return null;
    const [x0, y0] = this.nodeOrigin(i);
    const x = (x0 + this.size.w / 2) / this.dpr;
    const y = (y0 + this.size.h / 2) / this.dpr;
    return x >= 0 && x < this.width && y >= 0 && y < this.height ? { x, y } : null;
  }

  /** The colour node i was last painted with, or null if it is not painted individually. */
  paintedColor(i: number): string | null {
    if (!this.drawnAlone(i)) return null;
    const key = this.drawnKey[i];
    return key < 0 ? null : this.colorOf(key);
  }

  /** The node (or box, when aggregated) under a point in CSS px. */
  hit(x: number, y: number): { node: number } | { box: number } | null {
    const layout = this.layout;
    if (!layout) return null;
    if (this.aggregated) {
      const boxes = this.agg?.boxes ?? [];
      for (let b = boxes.length - 1; b >= 0; b--) {
        const r = this.boxRect(b);
        if (x >= r.x && x <= r.x + r.w && y >= r.y && y <= r.y + r.h) return { box: b };
      }
      return null;
    }
    const { sx, sy, ox, oy } = this.view;
    const d = this.dpr;
    const px = x * d;
    const py = y * d;
    const l = Math.round((y - oy) / sy);
    let best = -1;
    let bestDistance = 5 * d;
    for (let layer = l - 1; layer <= l + 1; layer++) {
      if (layer < 0 || layer >= layout.layerCount) continue;
      const lo = layout.layerOff[layer];
      const hi = layout.layerOff[layer + 1];
      const wx = (x - ox) / sx;
      const k = lowerBound(layout.byLayer, layout.x, lo, hi, wx);
      for (let j = Math.max(lo, k - 4); j < Math.min(hi, k + 4); j++) {
        const i = layout.byLayer[j];
        const [x0, y0] = this.nodeOrigin(i);
        const dx = Math.max(x0 - px, 0, px - (x0 + this.size.w));
        const dy = Math.max(y0 - py, 0, py - (y0 + this.size.h));
        const inside = dx === 0 && dy === 0;
        const centre = Math.hypot(x0 + this.size.w / 2 - px, y0 + this.size.h / 2 - py);
        const distance = inside ? centre / 1000 : Math.hypot(dx, dy);
        if (distance < bestDistance) {
          bestDistance = distance;
          best = i;
        }
      }
    }
    return best >= 0 ? { node: best } : null;
  }

  private boxRect(b: number): { x: number; y: number; w: number; h: number } {
    const box = this.agg!.boxes[b];
    const { sx, sy, ox, oy } = this.view;
    let x0 = box.x0 * sx + ox - sx * 0.45;
    let x1 = box.x1 * sx + ox + sx * 0.45;
    if (x1 - x0 < 56) {
      const c = (x0 + x1) / 2;
      x0 = c - 28;
      x1 = c + 28;
    }
    let y0 = (box.firstLayer - 0.36) * sy + oy;
    let y1 = (box.lastLayer + 0.36) * sy + oy;
    if (y1 - y0 < 18) {
      const c = (y0 + y1) / 2;
      y0 = c - 9;
      y1 = c + 9;
    }
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  // -- visibility -----------------------------------------------------------------------

  /** Decide aggregated vs individual for the current view; list the visible nodes. */
  private computeVisible(): void {
    const layout = this.layout!;
    const { sx, sy, ox, oy } = this.view;
    this.visibleMark.fill(0);
    const wx0 = (-ox - 30) / sx;
    const wx1 = (this.width - ox + 30) / sx;
    const l0 = Math.max(0, Math.floor(-oy / sy));
    const l1 = Math.min(layout.layerCount - 1, Math.ceil((this.height - oy) / sy));
    let count = 0;
    const ranges: number[] = [];
    for (let l = l0; l <= l1; l++) {
      const lo = layout.layerOff[l];
      const hi = layout.layerOff[l + 1];
      const a = lowerBound(layout.byLayer, layout.x, lo, hi, wx0);
      const b = lowerBound(layout.byLayer, layout.x, lo, hi, wx1);
      if (b > a) {
        ranges.push(a, b);
        count += b - a;
      }
    }
    this.aggregated = count > AGGREGATE_ABOVE && this.agg !== null;
    if (this.aggregated) {
      this.visible = new Int32Array(0);
      this.visibleNodes = 0;
      return;
    }
    const visible = new Int32Array(count);
    let k = 0;
    for (let r = 0; r < ranges.length; r += 2) {
      for (let j = ranges[r]; j < ranges[r + 1]; j++) {
        const i = layout.byLayer[j];
        visible[k++] = i;
        this.visibleMark[i] = 1;
      }
    }
    this.visible = visible;
    this.visibleNodes = count;
  }

  // -- colours ----------------------------------------------------------------------------

  private colorKey(i: number, states: Uint8Array): number {
    switch (this.colorMode) {
      case 'worker': {
        const w = this.store.reducer.worker[i];
        return w >= 0 ? 16 + w : states[i];
      }
      case 'function':
        return 1_000_000 + this.store.graph.fn[i];
      default:
        return states[i];
    }
  }

  private colorOf(key: number): string {
    if (key < 16) return STATE_COLORS[key];
    if (key < 1_000_000) return workerColor(key - 16);
    return functionColor(key - 1_000_000);
  }

  // -- drawing ----------------------------------------------------------------------------

  draw(): void {
    const ctx = this.ctx;
    const W = this.canvas.width;
    const H = this.canvas.height;
    if (!this.layout) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = '#ffffff';
      ctx.fillRect(0, 0, W, H);
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.fillStyle = '#6b7280';
      ctx.font = '13px system-ui, sans-serif';
      ctx.fillText(`laying out ${this.store.graph.n} tasks…`, 16, 24);
      return;
    }
    const states = this.store.states();
    const version = this.store.version;
    let full = this.viewDirty;
    if (this.viewDirty) {
      const wasAggregated = this.aggregated;
      this.size = this.nodeSize();
      this.computeVisible();
      if (wasAggregated !== this.aggregated || !this.drawnOnce) this.onModeChange?.();
    }
    if (this.showCritical && this.criticalVersion !== version) {
      const before = this.critical;
      this.critical = criticalPath(this.store);
      this.criticalVersion = version;
      if (!before || !samePath(before, this.critical)) full = true;
    }
    if (!this.showCritical) this.critical = null;

    if (this.aggregated) {
      this.drawAggregated(states);
    } else {
      const edgesStale = this.edgeVersion !== version;
      const now = performance.now();
      const throttled = this.store.live && now - this.edgeTime < EDGE_REFRESH_MS;
      if (full || (edgesStale && !throttled)) {
        this.drawEdges();
        this.edgeVersion = version;
        this.edgeTime = now;
        full = true;
      } else if (edgesStale && this.later === null) {
        this.later = setTimeout(() => {
          this.later = null;
          this.requestDraw();
        }, EDGE_REFRESH_MS);
      }
      if (full) this.drawNodesFull(states);
      else this.patchNodes(states);
    }
    this.viewDirty = false;
    this.drawnOnce = true;
  }

  private drawEdges(): void {
    const ctx = this.edgeCtx;
    const { graph, reducer } = this.store;
    const { parentOff, parentIdx, childOff, childIdx, childEdge } = graph;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.edgeLayer.width, this.edgeLayer.height);
    const { w, h } = this.size;
    let maxBytes = 0;
    for (let e = 0; e < reducer.edgeBytes.length; e++) {
      if (reducer.edgeBytes[e] > maxBytes) maxBytes = reducer.edgeBytes[e];
    }
    // Paths by (kind, width bucket); the critical path on top.
    const paths: Path2D[] = [];
    for (let j = 0; j < 12; j++) paths.push(new Path2D());
    const criticalPathEdges = new Path2D();
    let drawn = 0;
    const addEdge = (e: number, parent: number, child: number) => {
      const [px, py] = this.nodeOrigin(parent);
      const [cx, cy] = this.nodeOrigin(child);
      const x1 = px + w / 2;
      const y1 = py + h;
      const x2 = cx + w / 2;
      const y2 = cy;
      if (this.critical && this.critical.edges[e]) {
        criticalPathEdges.moveTo(x1, y1);
        criticalPathEdges.lineTo(x2, y2);
        return;
      }
      const bytes = reducer.edgeBytes[e];
      const bucket = bytes <= 0 || maxBytes <= 0 ? 0 : Math.min(3, Math.max(1, Math.ceil(3 * Math.sqrt(bytes / maxBytes))));
      const path = paths[reducer.edgeKind[e] * 4 + bucket];
      path.moveTo(x1, y1);
      path.lineTo(x2, y2);
      drawn++;
    };
    for (const child of this.visible) {
      for (let e = parentOff[child]; e < parentOff[child + 1]; e++) addEdge(e, parentIdx[e], child);
    }
    for (const parent of this.visible) {
      for (let j = childOff[parent]; j < childOff[parent + 1]; j++) {
        const child = childIdx[j];
        if (!this.visibleMark[child]) addEdge(childEdge[j], parent, child);
      }
    }
    const d = this.dpr;
    const widths = [0.6, 1, 1.8, 3];
    const colors = [EDGE_COLORS.unknown, EDGE_COLORS.local, EDGE_COLORS.storage];
    const dense = drawn > 4000 || this.view.sx < 4;
    ctx.lineCap = 'butt';
    for (let kind = 0; kind < 3; kind++) {
      for (let bucket = 0; bucket < 4; bucket++) {
        ctx.strokeStyle = colors[kind];
        ctx.globalAlpha = dense ? 0.55 : 0.9;
        ctx.lineWidth = (dense ? Math.min(widths[bucket], 1.4) : widths[bucket]) * d;
        ctx.setLineDash(kind === EdgeKind.Local && !dense ? [3 * d, 2 * d] : []);
        ctx.stroke(paths[kind * 4 + bucket]);
      }
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
    if (this.critical) {
      ctx.strokeStyle = EDGE_COLORS.critical;
      ctx.lineWidth = 2.5 * d;
      ctx.stroke(criticalPathEdges);
    }
  }

  private drawNodesFull(states: Uint8Array): void {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.drawImage(this.edgeLayer, 0, 0);
    const { w, h } = this.size;
    // Group by colour: one fillStyle per group.
    const groups = new Map<number, number[]>();
    for (const i of this.visible) {
      const key = this.colorKey(i, states);
      this.drawnKey[i] = key;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(i);
    }
    for (const [key, nodes] of groups) {
      ctx.fillStyle = this.colorOf(key);
      for (const i of nodes) {
        const [x0, y0] = this.nodeOrigin(i);
        ctx.fillRect(x0, y0, w, h);
      }
    }
    this.drawOverlays();
  }

  private patchNodes(states: Uint8Array): void {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const { w, h } = this.size;
    let style = -1;
    for (const i of this.visible) {
      const key = this.colorKey(i, states);
      if (key === this.drawnKey[i]) continue;
      this.drawnKey[i] = key;
      if (key !== style) {
        ctx.fillStyle = this.colorOf(key);
        style = key;
      }
      const [x0, y0] = this.nodeOrigin(i);
      ctx.fillRect(x0, y0, w, h);
    }
  }

  /** Selection, critical-path marks and labels: in the gaps around nodes, not over them. */
  private drawOverlays(): void {
    const ctx = this.ctx;
    const { w, h } = this.size;
    const d = this.dpr;
    const gapY = this.view.sy * d - h;
    const roomy = w >= 6 * d && gapY >= 10 * d;
    if (this.critical && roomy) {
      ctx.strokeStyle = EDGE_COLORS.critical;
      ctx.lineWidth = 2 * d;
      for (const i of this.critical.nodes) {
        if (!this.visibleMark[i]) continue;
        const [x0, y0] = this.nodeOrigin(i);
        ctx.strokeRect(x0 - 2 * d, y0 - 2 * d, w + 4 * d, h + 4 * d);
      }
    }
    if (this.selected >= 0 && this.visibleMark[this.selected]) {
      const [x0, y0] = this.nodeOrigin(this.selected);
      ctx.fillStyle = '#111827';
      const bar = Math.max(2, Math.round(2 * d));
      const margin = Math.min(Math.max(2, Math.round(gapY / 4)), 5 * d);
      const extra = Math.max(3 * d, 2);
      ctx.fillRect(x0 - extra, y0 - margin - bar, w + 2 * extra, bar);
      ctx.fillRect(x0 - extra, y0 + h + margin, w + 2 * extra, bar);
    }
    if (w >= 36 * d && gapY >= 16 * d && this.visible.length <= 1500) {
      const { graph } = this.store;
      ctx.fillStyle = '#374151';
      ctx.font = `${Math.round(10 * d)}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      for (const i of this.visible) {
        const [x0, y0] = this.nodeOrigin(i);
        const label = graph.fnNames[graph.fn[i]] ?? '';
        ctx.fillText(clip(ctx, label, w + 16 * d), x0 + w / 2, y0 + h + 3 * d);
      }
      ctx.textAlign = 'start';
      ctx.textBaseline = 'alphabetic';
    }
  }

  private drawAggregated(states: Uint8Array): void {
    const agg = this.agg!;
    const ctx = this.ctx;
    const d = this.dpr;
    const { graph, reducer } = this.store;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(d, 0, 0, d, 0, 0);
    this.boxCounts = boxStateCounts(agg, states, this.boxCounts);
    const rects = agg.boxes.map((_, b) => this.boxRect(b));
    // Box edges: width by number of edges, colour by how the bytes travelled.
    let maxCount = 1;
    for (const e of agg.boxEdges) maxCount = Math.max(maxCount, e.count);
    const storageBytes = new Float64Array(agg.boxEdges.length);
    for (let e = 0; e < agg.edgeBox.length; e++) {
      const be = agg.edgeBox[e];
      if (be >= 0 && reducer.edgeKind[e] === EdgeKind.Storage) storageBytes[be] += reducer.edgeBytes[e] || 1;
    }
    for (let k = 0; k < agg.boxEdges.length; k++) {
      const e = agg.boxEdges[k];
      const a = rects[e.from];
      const b = rects[e.to];
      ctx.strokeStyle = storageBytes[k] > 0 ? EDGE_COLORS.storage : EDGE_COLORS.local;
      ctx.globalAlpha = 0.7;
      ctx.lineWidth = 1 + 4 * (Math.log1p(e.count) / Math.log1p(maxCount));
      ctx.beginPath();
      ctx.moveTo(a.x + a.w / 2, a.y + a.h);
      ctx.lineTo(b.x + b.w / 2, b.y);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    const workerCounts = this.colorMode === 'worker' ? this.boxWorkerCounts() : null;
    for (let b = 0; b < agg.boxes.length; b++) {
      const box = agg.boxes[b];
      const r = rects[b];
      if (r.x > this.width || r.x + r.w < 0 || r.y > this.height || r.y + r.h < 0) continue;
      const fnColor = functionColor(box.fn);
      ctx.fillStyle = this.colorMode === 'function' ? fnColor : '#f8fafc';
      ctx.globalAlpha = this.colorMode === 'function' ? 0.25 : 1;
      ctx.fillRect(r.x, r.y, r.w, r.h);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = b === this.selectedBox ? '#111827' : fnColor;
      ctx.lineWidth = b === this.selectedBox ? 2.5 : 1.5;
      ctx.strokeRect(r.x, r.y, r.w, r.h);
      // A label (function, count, done) and a bar of counts per state (or per worker).
      const done = this.boxCounts[b * 5 + State.Done];
      const label = `${graph.fnNames[box.fn] || '?'} ×${box.count} · ${done} done`;
      const visibleX0 = Math.max(r.x, 0);
      const visibleX1 = Math.min(r.x + r.w, this.width);
      let barX = r.x + 3;
      let barW = Math.max(1, r.w - 6);
      let barH = Math.min(12, Math.max(4, r.h - 8));
      let barY = r.y + r.h - barH - 3;
      if (r.h >= 30) {
        ctx.fillStyle = '#1f2937';
        ctx.fillText(clip(ctx, label, visibleX1 - visibleX0 - 10), visibleX0 + 5, r.y + (r.h - barH - 3) / 2 + 1);
      } else {
        const text = ctx.measureText(label).width;
        if (visibleX1 - visibleX0 >= text + 70) {
          ctx.fillStyle = '#1f2937';
          ctx.fillText(label, visibleX0 + 6, r.y + r.h / 2 + 0.5);
          const start = visibleX0 + text + 14;
          barW = Math.max(1, r.x + r.w - 3 - start);
          barX = start;
        }
        barH = Math.max(3, r.h - 8);
        barY = r.y + (r.h - barH) / 2;
      }
      let x = barX;
      if (workerCounts) {
        const row = workerCounts.get(b) ?? new Map<number, number>();
        let placed = 0;
        for (const [w, count] of row) {
          const width = (barW * count) / box.count;
          ctx.fillStyle = workerColor(w);
          ctx.fillRect(x, barY, width, barH);
          x += width;
          placed += count;
        }
        ctx.fillStyle = STATE_COLORS[State.Waiting];
        ctx.fillRect(x, barY, (barW * (box.count - placed)) / box.count, barH);
      } else {
        for (const s of [State.Done, State.Running, State.Failed, State.Ready, State.Waiting]) {
          const count = this.boxCounts[b * 5 + s];
          if (!count) continue;
          const width = (barW * count) / box.count;
          ctx.fillStyle = STATE_COLORS[s];
          ctx.fillRect(x, barY, width, barH);
          x += width;
        }
      }
    }
    ctx.textBaseline = 'alphabetic';
  }

  private boxWorkerCounts(): Map<number, Map<number, number>> {
    const agg = this.agg!;
    const out = new Map<number, Map<number, number>>();
    const worker = this.store.reducer.worker;
    for (let i = 0; i < agg.nodeBox.length; i++) {
      const w = worker[i];
      if (w < 0) continue;
      const b = agg.nodeBox[i];
      let row = out.get(b);
      if (!row) out.set(b, (row = new Map()));
      row.set(w, (row.get(w) ?? 0) + 1);
    }
    return out;
  }
}

/** First index in [lo, hi) of byLayer whose x is >= value. */
function lowerBound(byLayer: Int32Array, x: Float64Array, lo: number, hi: number, value: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x[byLayer[mid]] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function samePath(a: CriticalPath, b: CriticalPath): boolean {
  if (a.nodes.length !== b.nodes.length) return false;
  for (let i = 0; i < a.nodes.length; i++) if (a.nodes[i] !== b.nodes[i]) return false;
  return true;
}

function clip(ctx: CanvasRenderingContext2D, text: string, width: number): string {
  if (width <= 8) return '';
  if (ctx.measureText(text).width <= width) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + '…').width <= width) lo = mid;
    else hi = mid - 1;
  }
  return lo > 0 ? text.slice(0, lo) + '…' : '';
}
