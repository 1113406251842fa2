/** Text formats for numbers, bytes and durations. */

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let u = 0;
  while (Math.abs(value) >= 1000 && u < units.length - 1) {
    value /= 1000;
    u++;
  }
  return u === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[u]}`;
}

export function formatSeconds(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return '–';
  const abs = Math.abs(seconds);
  if (abs === 0) return '0 s';
  if (abs < 1e-3) return `${(seconds * 1e6).toFixed(0)} µs`;
  if (abs < 1) return `${(seconds * 1e3).toFixed(abs < 0.01 ? 2 : 1)} ms`;
  if (abs < 120) return `${seconds.toFixed(abs < 10 ? 3 : 2)} s`;
  const m = Math.floor(abs / 60);
  const s = abs - m * 60;
  return `${seconds < 0 ? '-' : ''}${m} min ${s.toFixed(0)} s`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatClock(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) return '–';
  const d = new Date(epochSeconds * 1000);
  const pad = (v: number) => String(v).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
