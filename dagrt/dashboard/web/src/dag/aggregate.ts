/**
 * The aggregated view of a big DAG: one box per function and band of layers, placed in
 * the same world coordinates as the nodes (so zooming into a box reveals its nodes), and
 * one edge per pair of boxes an edge joins.
 */
import type { Layout } from '../layout';
import type { Graph } from '../store/graph';

export interface Box {
  fn: number;
  band: number;
  firstLayer: number;
  lastLayer: number;
  x0: number;
  x1: number;
  count: number;
}

export interface BoxEdge {
  from: number;
  to: number;
  count: number;
}

export interface Aggregation {
  boxes: Box[];
  nodeBox: Int32Array;
  boxEdges: BoxEdge[];
  /** Box edge of each graph edge (-1: inside a box). */
  edgeBox: Int32Array;
}

export const MAX_BANDS = 40;

export function aggregate(graph: Graph, layout: Layout, maxBands = MAX_BANDS): Aggregation {
  const { n, fn, parentOff, parentIdx } = graph;
  const L = layout.layerCount;
  const bands = Math.max(1, Math.min(L, maxBands));
  const bandOf = (l: number) => Math.min(bands - 1, Math.floor((l * bands) / Math.max(1, L)));
  // Per (band, fn): count, sum of x, min/max x.
  const groups = new Map<number, { fn: number; band: number; count: number; sumX: number; first: number; last: number }>();
  const fnCount = graph.fnNames.length || 1;
  const groupOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const l = layout.layer[i];
    const band = bandOf(l);
    const key = band * fnCount + fn[i];
    groupOf[i] = key;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { fn: fn[i], band, count: 0, sumX: 0, first: l, last: l }));
    g.count++;
    g.sumX += layout.x[i];
    if (l < g.first) g.first = l;
    if (l > g.last) g.last = l;
  }
  // Span of each band in x.
  const bandMin = new Float64Array(bands).fill(Infinity);
  const bandMax = new Float64Array(bands).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const b = bandOf(layout.layer[i]);
    if (layout.x[i] < bandMin[b]) bandMin[b] = layout.x[i];
    if (layout.x[i] > bandMax[b]) bandMax[b] = layout.x[i];
  }
  const boxes: Box[] = [];
  const boxOfGroup = new Map<number, number>();
  for (let b = 0; b < bands; b++) {
    const inBand = [...groups.entries()]
      .filter(([, g]) => g.band === b)
      .sort(([, g], [, h]) => g.sumX / g.count - h.sumX / h.count);
    if (inBand.length === 0) continue;
    const total = inBand.reduce((sum, [, g]) => sum + g.count, 0);
    const span = bandMax[b] - bandMin[b];
    const gap = inBand.length > 1 ? Math.min(2, span * 0.02) : 0;
    const usable = Math.max(0, span - gap * (inBand.length - 1));
    let x = bandMin[b];
    for (const [key, g] of inBand) {
      const width = inBand.length === 1 ? span : (usable * g.count) / total;
      boxOfGroup.set(key, boxes.length);
      boxes.push({ fn: g.fn, band: b, firstLayer: g.first, lastLayer: g.last, x0: x, x1: x + width, count: g.count });
      x += width + gap;
    }
  }
  const nodeBox = new Int32Array(n);
  for (let i = 0; i < n; i++) nodeBox[i] = boxOfGroup.get(groupOf[i])!;
  const edgeBox = new Int32Array(parentIdx.length).fill(-1);
  const pairs = new Map<number, number>();
  const boxEdges: BoxEdge[] = [];
  for (let c = 0; c < n; c++) {
    const to = nodeBox[c];
    for (let e = parentOff[c]; e < parentOff[c + 1]; e++) {
      const from = nodeBox[parentIdx[e]];
      if (from === to) continue;
      const key = from * boxes.length + to;
      let id = pairs.get(key);
      if (id === undefined) {
        id = boxEdges.length;
        pairs.set(key, id);
        boxEdges.push({ from, to, count: 0 });
      }
      boxEdges[id].count++;
      edgeBox[e] = id;
    }
  }
  return { boxes, nodeBox, boxEdges, edgeBox };
}

/** Nodes per box and state at the replay time: counts[box * 5 + state]. */
export function boxStateCounts(agg: Aggregation, states: Uint8Array, out?: Int32Array): Int32Array {
  const counts = out && out.length === agg.boxes.length * 5 ? out.fill(0) : new Int32Array(agg.boxes.length * 5);
  const { nodeBox } = agg;
  for (let i = 0; i < nodeBox.length; i++) counts[nodeBox[i] * 5 + states[i]]++;
  return counts;
}
