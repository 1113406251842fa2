import { describe, expect, it } from 'vitest';
import { layoutDag, type Layout, type LayoutInput } from './layout';

function input(parents: number[][]): LayoutInput {
  const n = parents.length;
  const parentOff = new Int32Array(n + 1);
  const flat: number[] = [];
  parents.forEach((ps, i) => {
    parentOff[i] = flat.length;
    flat.push(...ps);
  });
  parentOff[n] = flat.length;
  return { n, parentOff, parentIdx: Int32Array.from(flat) };
}

function treeReduction(leaves: number): number[][] {
  const parents: number[][] = [];
  let level: number[] = [];
  for (let i = 0; i < leaves; i++) {
    level.push(parents.length);
    parents.push([]);
  }
  while (level.length > 1) {
    const next: number[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(parents.length);
      parents.push([level[i], level[i + 1]]);
    }
    level = next;
  }
  return parents;
}

function randomDag(n: number, seed: number, shuffle: boolean): number[][] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const parents: number[][] = [];
  for (let i = 0; i < n; i++) {
    const ps = new Set<number>();
    if (i > 0) for (let j = 0; j < 1 + Math.floor(rand() * 3); j++) ps.add(Math.floor(rand() * i));
    parents.push([...ps]);
  }
  if (!shuffle) return parents;
  // Relabel nodes so that parents do not always come first.
  const perm = Array.from({ length: n }, (_, i) => i).sort(() => rand() - 0.5);
  const out: number[][] = new Array(n);
  parents.forEach((ps, i) => (out[perm[i]] = ps.map((p) => perm[p])));
  return out;
}

function checkLayout(parents: number[][], layout: Layout): void {
  const n = parents.length;
  expect(layout.n).toBe(n);
  // Layers are topological: every parent is on an earlier layer; sources on layer 0.
  parents.forEach((ps, i) => {
    for (const p of ps) expect(layout.layer[p]).toBeLessThan(layout.layer[i]);
    if (ps.length === 0) expect(layout.layer[i]).toBe(0);
    else expect(layout.layer[i]).toBe(Math.max(...ps.map((p) => layout.layer[p])) + 1); // longest path
  });
  // Every node is placed exactly once, on its layer, at a finite x, 1 apart within a layer.
  const seen = new Uint8Array(n);
  for (let l = 0; l < layout.layerCount; l++) {
    for (let k = layout.layerOff[l]; k < layout.layerOff[l + 1]; k++) {
      const i = layout.byLayer[k];
      expect(seen[i]).toBe(0);
      seen[i] = 1;
      expect(layout.layer[i]).toBe(l);
      expect(Number.isFinite(layout.x[i])).toBe(true);
      if (k > layout.layerOff[l]) {
        expect(layout.x[i] - layout.x[layout.byLayer[k - 1]]).toBeGreaterThanOrEqual(1 - 1e-9);
      }
    }
  }
  expect(seen.every((v) => v === 1)).toBe(true);
  expect(layout.layerOff[layout.layerCount]).toBe(n);
}

describe('layout', () => {
  it('lays out a tree reduction in log2 layers, parents over children', () => {
    const parents = treeReduction(8);
    const layout = layoutDag(input(parents));
    checkLayout(parents, layout);
    expect(layout.layerCount).toBe(4);
    expect(Array.from({ length: 4 }, (_, l) => layout.layerOff[l + 1] - layout.layerOff[l])).toEqual([8, 4, 2, 1]);
    // The root sits over the middle of the leaves.
    const root = parents.length - 1;
    expect(layout.x[root]).toBeCloseTo((layout.minX + layout.maxX) / 2, 5);
  });

  it('places every node of random DAGs, in any index order', () => {
    for (const shuffle of [false, true]) {
      const parents = randomDag(1500, 7, shuffle);
      checkLayout(parents, layoutDag(input(parents)));
    }
  });

  it('handles the empty graph, a single node and wide layers', () => {
    expect(layoutDag(input([])).layerCount).toBe(0);
    checkLayout([[]], layoutDag(input([[]])));
    const fan = [[] as number[], ...Array.from({ length: 500 }, () => [0]), Array.from({ length: 500 }, (_, i) => i + 1)];
    const layout = layoutDag(input(fan));
    checkLayout(fan, layout);
    expect(layout.layerCount).toBe(3);
  });

  it('reduces crossings with barycenter sweeps', () => {
    // Two chains whose second layer starts crossed: 0→3, 1→2 (2 listed first).
    const parents = [[], [], [1], [0]];
    const layout = layoutDag(input(parents));
    checkLayout(parents, layout);
    expect(Math.sign(layout.x[3] - layout.x[2])).toBe(Math.sign(layout.x[0] - layout.x[1]));
  });

  it('lays out 131,071 nodes quickly', () => {
    const parents = treeReduction(65536);
    const started = performance.now();
    const layout = layoutDag(input(parents));
    const took = performance.now() - started;
    expect(layout.layerCount).toBe(17);
    expect(took).toBeLessThan(5000);
  });
});
