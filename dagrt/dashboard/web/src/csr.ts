/**
 * A DAG as compressed rows of parents (`parentOff`, `parentIdx`): the children's rows
 * and a topological order, shared by the store (main thread) and the layout worker.
 */

export interface ParentRows {
  n: number;
  parentOff: Int32Array;
  parentIdx: Int32Array;
}

export interface ChildRows {
  childOff: Int32Array;
  childIdx: Int32Array;
  /** For each child slot, the edge id (its position in `parentIdx`). */
  childEdge: Int32Array;
}

/** The parent rows turned around: each node's children, in child order. */
export function childRows({ n, parentOff, parentIdx }: ParentRows): ChildRows {
  const edges = parentIdx.length;
  const childOff = new Int32Array(n + 1);
  for (let e = 0; e < edges; e++) childOff[parentIdx[e] + 1]++;
  for (let i = 0; i < n; i++) childOff[i + 1] += childOff[i];
  const fill = childOff.slice(0, n);
  const childIdx = new Int32Array(edges);
  const childEdge = new Int32Array(edges);
  for (let c = 0; c < n; c++) {
    for (let e = parentOff[c]; e < parentOff[c + 1]; e++) {
      const slot = fill[parentIdx[e]]++;
      childIdx[slot] = c;
      childEdge[slot] = e;
    }
  }
  return { childOff, childIdx, childEdge };
}

/** Kahn's algorithm; the identity when every parent index is below its child's. */
export function topologicalOrder(
  { n, parentOff, parentIdx }: ParentRows,
  childOff: Int32Array,
  childIdx: Int32Array,
): Int32Array {
  let sorted = true;
  for (let c = 0; c < n && sorted; c++) {
    for (let e = parentOff[c]; e < parentOff[c + 1]; e++) {
      if (parentIdx[e] >= c) {
        sorted = false;
        break;
      }
    }
  }
  const order = new Int32Array(n);
  if (sorted) {
    for (let i = 0; i < n; i++) order[i] = i;
    return order;
  }
  const indegree = new Int32Array(n);
  for (let c = 0; c < n; c++) indegree[c] = parentOff[c + 1] - parentOff[c];
  let head = 0;
  let tail = 0;
  for (let i = 0; i < n; i++) if (indegree[i] === 0) order[tail++] = i;
  while (head < tail) {
    const v = order[head++];
    for (let j = childOff[v]; j < childOff[v + 1]; j++) {
      if (--indegree[childIdx[j]] === 0) order[tail++] = childIdx[j];
    }
  }
  // A cycle cannot come from a run; place what is left anyway (never refuse).
  if (tail < n) {
    const placed = new Uint8Array(n);
    for (let j = 0; j < tail; j++) placed[order[j]] = 1;
    for (let i = 0; i < n; i++) if (!placed[i]) order[tail++] = i;
  }
  return order;
}
