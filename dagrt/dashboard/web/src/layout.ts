/**
 * Layered layout of a DAG: longest-path layers (sources on layer 0), barycenter sweeps to
 * order each layer (down, up, down), then x coordinates that put a node over the mean of
 * its parents while keeping neighbours at least one unit apart. World units: layer index
 * for y, one node slot for x. Pure: runs in the layout worker and in unit tests.
 */

import { childRows, topologicalOrder } from './csr';

export interface LayoutInput {
  n: number;
  parentOff: Int32Array;
  parentIdx: Int32Array;
}

export interface Layout {
  n: number;
  layerCount: number;
  /** Layer of each node (0: sources). */
  layer: Int32Array;
  /** x of each node, in node slots. */
  x: Float64Array;
  /** Nodes of layer l, by increasing x: byLayer[layerOff[l] .. layerOff[l + 1]]. */
  layerOff: Int32Array;
  byLayer: Int32Array;
  minX: number;
  maxX: number;
}

export interface LayoutOptions {
  sweeps?: number;
}

export function layoutDag(input: LayoutInput, options: LayoutOptions = {}): Layout {
  const { n, parentOff, parentIdx } = input;
  const { childOff, childIdx } = childRows(input);
  const topo = topologicalOrder(input, childOff, childIdx);

  // Longest-path layering.
  const layer = new Int32Array(n);
  let layerCount = n > 0 ? 1 : 0;
  for (let j = 0; j < n; j++) {
    const i = topo[j];
    let l = 0;
    for (let e = parentOff[i]; e < parentOff[i + 1]; e++) {
      const candidate = layer[parentIdx[e]] + 1;
      if (candidate > l) l = candidate;
    }
    layer[i] = l;
    if (l + 1 > layerCount) layerCount = l + 1;
  }

  // Buckets per layer, initially in topological (index) order.
  const layerOff = new Int32Array(layerCount + 1);
  for (let i = 0; i < n; i++) layerOff[layer[i] + 1]++;
  for (let l = 0; l < layerCount; l++) layerOff[l + 1] += layerOff[l];
  const byLayer = new Int32Array(n);
  const fill = layerOff.slice(0, layerCount);
  for (let j = 0; j < n; j++) {
    const i = topo[j];
    byLayer[fill[layer[i]]++] = i;
  }

  // Barycenter ordering. pos: centred rank within the layer.
  const pos = new Float64Array(n);
  const setPositions = (l: number) => {
    const lo = layerOff[l];
    const hi = layerOff[l + 1];
    const centre = (hi - lo - 1) / 2;
    for (let k = lo; k < hi; k++) pos[byLayer[k]] = k - lo - centre;
  };
  for (let l = 0; l < layerCount; l++) setPositions(l);
  const key = new Float64Array(n);
  const sortLayer = (l: number, off: Int32Array, idx: Int32Array) => {
    const lo = layerOff[l];
    const hi = layerOff[l + 1];
    if (hi - lo < 2) return;
    for (let k = lo; k < hi; k++) {
      const i = byLayer[k];
      const a = off[i];
      const b = off[i + 1];
      if (b === a) {
        key[i] = pos[i];
        continue;
      }
      let sum = 0;
      for (let e = a; e < b; e++) sum += pos[idx[e]];
      key[i] = sum / (b - a);
    }
    const nodes = Array.from(byLayer.subarray(lo, hi));
    nodes.sort((u, v) => key[u] - key[v] || pos[u] - pos[v]);
    byLayer.set(nodes, lo);
    setPositions(l);
  };
  const sweeps = options.sweeps ?? 3;
  for (let s = 0; s < sweeps; s++) {
    if (s % 2 === 0) {
      for (let l = 1; l < layerCount; l++) sortLayer(l, parentOff, parentIdx);
    } else {
      for (let l = layerCount - 2; l >= 0; l--) sortLayer(l, childOff, childIdx);
    }
  }

  // Coordinates: layer 0 by rank; below, over the parents' mean, at least 1 apart.
  const x = new Float64Array(n);
  const desired = new Float64Array(0 + maxWidth(layerOff));
  const forward = new Float64Array(desired.length);
  for (let l = 0; l < layerCount; l++) {
    const lo = layerOff[l];
    const hi = layerOff[l + 1];
    const w = hi - lo;
    for (let k = 0; k < w; k++) {
      const i = byLayer[lo + k];
      const a = parentOff[i];
      const b = parentOff[i + 1];
      if (l === 0 || b === a) {
        desired[k] = pos[i];
      } else {
        let sum = 0;
        for (let e = a; e < b; e++) sum += x[parentIdx[e]];
        desired[k] = sum / (b - a);
      }
    }
    for (let k = 0; k < w; k++) {
      forward[k] = k === 0 ? desired[k] : Math.max(desired[k], forward[k - 1] + 1);
    }
    let next = Infinity;
    for (let k = w - 1; k >= 0; k--) {
      const backward = Math.min(desired[k], next - 1);
      next = backward;
      x[byLayer[lo + k]] = (forward[k] + backward) / 2;
    }
  }

  let minX = Infinity;
  let maxX = -Infinity;
  for (let i = 0; i < n; i++) {
    if (x[i] < minX) minX = x[i];
    if (x[i] > maxX) maxX = x[i];
  }
  if (n === 0) minX = maxX = 0;
  return { n, layerCount, layer, x, layerOff, byLayer, minX, maxX };
}

function maxWidth(layerOff: Int32Array): number {
  let w = 0;
  for (let l = 0; l + 1 < layerOff.length; l++) w = Math.max(w, layerOff[l + 1] - layerOff[l]);
  return w;
}

/** The transferable buffers of a layout (for postMessage). */
export function layoutBuffers(layout: Layout): ArrayBuffer[] {
  return [layout.layer, layout.x, layout.layerOff, layout.byLayer].map((a) => a.buffer as ArrayBuffer);
}
