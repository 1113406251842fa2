/**
 * The critical path at the replay time: from the task that ended last, follow the parent
 * whose output arrived last, back to a source. Those tasks gated the makespan.
 */
import { State } from '../store/reducer';
import type { RunStore } from '../store/runstore';

export interface CriticalPath {
  nodes: Int32Array;
  /** 1 for the edges on the path, by edge id. */
  edges: Uint8Array;
  /** 1 for the nodes on the path. */
  onPath: Uint8Array;
}

export function criticalPath(store: RunStore): CriticalPath {
  const { graph, reducer } = store;
  const states = store.states();
  const { end } = reducer;
  const { parentOff, parentIdx } = graph;
  const edges = new Uint8Array(parentIdx.length);
  const onPath = new Uint8Array(graph.n);
  let current = -1;
  let latest = -Infinity;
  for (let i = 0; i < graph.n; i++) {
    const s = states[i];
    if ((s === State.Done || s === State.Failed) && end[i] > latest) {
      latest = end[i];
      current = i;
    }
  }
  const path: number[] = [];
  while (current >= 0 && !onPath[current]) {
    path.push(current);
    onPath[current] = 1;
    let next = -1;
    let nextEdge = -1;
    let best = -Infinity;
    for (let e = parentOff[current]; e < parentOff[current + 1]; e++) {
      const p = parentIdx[e];
      const t = Number.isNaN(end[p]) ? -Infinity : end[p];
      if (next < 0 || t > best) {
        best = t;
        next = p;
        nextEdge = e;
      }
    }
    if (nextEdge >= 0) edges[nextEdge] = 1;
    current = next;
  }
  return { nodes: Int32Array.from(path.reverse()), edges, onPath };
}
