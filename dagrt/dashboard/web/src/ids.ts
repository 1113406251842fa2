/** Stream entry ids ("<ms>-<seq>") and event ids ("<entry id>/<k>"). */

export interface EntryId {
  ms: number;
  seq: number;
}

export function parseEntryId(text: string): EntryId {
  const dash = text.indexOf('-');
  if (dash < 0) return { ms: Number(text), seq: 0 };
  return { ms: Number(text.slice(0, dash)), seq: Number(text.slice(dash + 1)) };
}

export function formatEntryId(ms: number, seq: number): string {
  return `${ms}-${seq}`;
}

/** Compare two entry ids as (ms, seq) integer pairs. */
export function compareEntryIds(a: string, b: string): number {
  const x = parseEntryId(a);
  const y = parseEntryId(b);
  return x.ms - y.ms || x.seq - y.seq;
}

/** Compare event positions (ms, seq, k) lexicographically. */
export function comparePositions(
  ms1: number, seq1: number, k1: number,
  ms2: number, seq2: number, k2: number,
): number {
  return ms1 - ms2 || seq1 - seq2 || k1 - k2;
}
