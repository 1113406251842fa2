/** A run's DAG as compressed sparse rows (parents and children), functions by index. */
import type { RunGraphJson } from '../api';
import { childRows, topologicalOrder } from '../csr';

export interface GraphData {
  n: number;
  keys: string[];
  /** Distinct function names; `fn[i]` indexes this. */
  fnNames: string[];
  fn: Int32Array;
  /** Parents of i: parentIdx[parentOff[i] .. parentOff[i + 1]]. Edge id = position there. */
  parentOff: Int32Array;
  parentIdx: Int32Array;
  outputs: number[];
}

export interface Graph extends GraphData {
  childOff: Int32Array;
  childIdx: Int32Array;
  /** Edge id (position in parentIdx) of each child entry. */
  childEdge: Int32Array;
  /** A topological order (the identity when parents always precede children). */
  topo: Int32Array;
}

export function graphData(json: RunGraphJson): GraphData {
  const n = json.keys.length;
  const fnIndex = new Map<string, number>();
  const fnNames: string[] = [];
  const fn = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const name = json.names[i] ?? '';
    let f = fnIndex.get(name);
    if (f === undefined) {
      f = fnNames.length;
      fnNames.push(name);
      fnIndex.set(name, f);
    }
    fn[i] = f;
  }
  let edges = 0;
  for (let i = 0; i < n; i++) edges += json.parents[i]?.length ?? 0;
  const parentOff = new Int32Array(n + 1);
  const parentIdx = new Int32Array(edges);
  let e = 0;
  for (let i = 0; i < n; i++) {
    parentOff[i] = e;
    for (const p of json.parents[i] ?? []) {
      if (p >= 0 && p < n && p !== i) parentIdx[e++] = p;
    }
  }
  parentOff[n] = e;
  return {
    n, keys: json.keys, fnNames, fn, parentOff,
    parentIdx: e === edges ? parentIdx : parentIdx.slice(0, e), outputs: json.outputs ?? [],
  };
}

export function completeGraph(data: GraphData): Graph {
  const { childOff, childIdx, childEdge } = childRows(data);
  return { ...data, childOff, childIdx, childEdge, topo: topologicalOrder(data, childOff, childIdx) };
}

/** Edge id of parent → child, or -1. */
export function edgeId(graph: GraphData, parent: number, child: number): number {
  if (child < 0 || child >= graph.n) return -1;
  const { parentOff, parentIdx } = graph;
  for (let e = parentOff[child]; e < parentOff[child + 1]; e++) {
    if (parentIdx[e] === parent) return e;
  }
  return -1;
}

/** `edgeId` with a map for children of many parents (a wide reduce). */
export class EdgeIndex {
  private readonly wide = new Map<number, Map<number, number>>();

  constructor(private readonly graph: GraphData) {}

  get(parent: number, child: number): number {
    const { parentOff, parentIdx, n } = this.graph;
    if (child < 0 || child >= n) return -1;
    const lo = parentOff[child];
    const hi = parentOff[child + 1];
    if (hi - lo <= 32) {
      for (let e = lo; e < hi; e++) if (parentIdx[e] === parent) return e;
      return -1;
    }
    let map = this.wide.get(child);
    if (!map) {
      map = new Map();
      for (let e = lo; e < hi; e++) if (!map.has(parentIdx[e])) map.set(parentIdx[e], e);
      this.wide.set(child, map);
    }
    return map.get(parent) ?? -1;
  }
}
