/** Colours: node states (fixed by the spec), categorical palettes, transfers. */

/** waiting, ready, running, done, failed (indexed by State). */
export const STATE_COLORS = ['#c8c8c8', '#f2c94c', '#2f80ed', '#27ae60', '#eb5757'] as const;

/** Download/upload parts of task-stream bars. */
export const TRANSFER_COLOR = '#d62728';
export const FAILED_BAR_COLOR = '#4a4a4a';

export const EDGE_COLORS = {
  unknown: '#cfd6df',
  local: '#8fa6bf',
  storage: '#e8590c',
  critical: '#1b1f24',
} as const;

// Categorical colours without reds (red marks transfers and failures).
const PALETTE = [
  '#4e79a7', '#f28e2b', '#76b7b2', '#59a14f', '#b07aa1', '#9c755f',
  '#17becf', '#bcbd22', '#8c6d31', '#393b79', '#637939', '#7b4173',
];

const cache = new Map<number, string>();

/** The i-th categorical colour (beyond the palette: golden-angle hues, skipping reds). */
export function categorical(i: number): string {
  if (i < 0) return '#9aa0a6';
  if (i < PALETTE.length) return PALETTE[i];
  let color = cache.get(i);
  if (!color) {
    let hue = (i * 137.508) % 360;
    if (hue < 25 || hue > 335) hue = (hue + 50) % 360;
    color = `hsl(${hue.toFixed(1)} ${55 + (i % 3) * 10}% ${38 + (i % 4) * 6}%)`;
    cache.set(i, color);
  }
  return color;
}

/** Colour of a function (by index): even palette slots, so never a worker's colour. */
export function functionColor(fn: number): string {
  return categorical(fn * 2);
}

/** Colour of a worker (by index in the run's worker table): odd palette slots. */
export function workerColor(worker: number): string {
  return worker < 0 ? categorical(-1) : categorical(worker * 2 + 1);
}
