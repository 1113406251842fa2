/** Bytes moved at the replay time: totals, per worker, per edge (largest first). */
import { useSubscription } from '../app/hooks';
import { workerColor } from '../colors';
import { formatBytes } from '../format';
import type { RunController } from '../run/controller';
import type { TransferEdge } from '../store/derive';
import { transferEdges, transferTotals } from '../store/derive';
import { PLACEMENT_TITLES } from '../store/events';

const EDGE_ROWS = 50;

/** Short names of the paths bytes took, and what each means (as the report says). */
const PATH_LABELS: Record<string, string> = {
  upload: 'uploaded', download: 'downloaded', local: 'in memory', map: 'mapped',
  direct: 'from another host', recompute: 'computed again', store: 'into the store', other: 'other',
};
const PATH_TITLES: Record<string, string> = {
  upload: 'uploaded to the server', download: 'downloaded from the server',
  local: "in the worker's memory", map: "mapped from the host's store",
  direct: 'fetched from another host', recompute: 'computed again',
  store: "written to the host's store", other: 'a path this page does not know',
};

export function TransfersPanel({ controller }: { controller: RunController }) {
  useSubscription(controller.store, 500);
  const store = controller.store!;
  const t = transferTotals(store);
  const edges = transferEdges(store);
  const workers = Object.keys(t.perWorker).sort();
  const { localEdges, top } = store.cached('transfers-panel', () => ({
    localEdges: edges.filter((e) => e.local).length,
    top: largest(edges, EDGE_ROWS),
  }));
  const keys = store.graph.keys;
  return (
    <section class="card" data-testid="transfers-panel">
      <h2>transfers</h2>
      <div class="totals">
        <span>network <b data-testid="transfers-network">{formatBytes(t.network)}</b></span>
        <span>local <b data-testid="transfers-local">{formatBytes(t.local)}</b></span>
        <span class="muted">{t.count} transfers · {edges.length} edges ({localEdges} on the host, {edges.length - localEdges} over the network)</span>
      </div>
      <div class="totals" data-testid="transfers-by-path">
        <span class="muted">by path</span>
        {Object.entries(t.byPath).map(([path, bytes]) => (
          <span key={path} title={PATH_TITLES[path] ?? path}>
            {PATH_LABELS[path] ?? path} <b data-testid={`transfers-path-${path}`}>{formatBytes(bytes)}</b>
          </span>
        ))}
      </div>
      {Object.keys(t.avoidedBy).length > 0 && (
        <div class="totals" data-testid="transfers-avoided">
          <span class="muted" title="bytes children read in the memory of the worker that made them: reads that did not happen">kept from moving</span>
          {Object.entries(t.avoidedBy).sort((a, b) => b[1] - a[1]).map(([why, bytes]) => (
            <span key={why} title={PLACEMENT_TITLES[why] ?? why}>
              {why} <b data-testid={`transfers-avoided-${why}`}>{formatBytes(bytes)}</b>
            </span>
          ))}
        </div>
      )}
      <table class="table compact">
        <thead>
          <tr><th>worker</th><th class="num">network</th><th class="num">local</th><th class="num">total</th></tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w} data-testid={`transfers-worker-${w}`}>
              <td class="mono">
                <span class="swatch" style={{ background: workerColor(store.log.workers.indexOf(w)) }} />{w}
              </td>
              <td class="num">{formatBytes(t.perWorkerNetwork[w] ?? 0)}</td>
              <td class="num">{formatBytes(t.perWorkerLocal[w] ?? 0)}</td>
              <td class="num">{formatBytes(t.perWorker[w] ?? 0)}</td>
            </tr>
          ))}
          {workers.length === 0 && <tr><td colSpan={4} class="empty">no transfers yet</td></tr>}
        </tbody>
      </table>
      {top.length > 0 && (
        <details>
          <summary>largest edges ({Math.min(EDGE_ROWS, edges.length)} of {edges.length})</summary>
          <table class="table compact">
            <thead><tr><th>producer → consumer</th><th class="num">bytes</th><th>how</th></tr></thead>
            <tbody>
              {top.map((e) => (
                <tr key={`${e.producer}-${e.consumer}`}>
                  <td class="mono ellipsis" title={`${keys[e.producer]} → ${keys[e.consumer]}`}>
                    <a href="#" onClick={(ev) => { ev.preventDefault(); controller.select(e.consumer); }}>
                      {keys[e.producer]} → {keys[e.consumer]}
                    </a>
                  </td>
                  <td class="num">{formatBytes(e.bytes)}</td>
                  <td>{e.local ? 'local' : 'storage'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </section>
  );
}

/** The k edges with the most bytes, largest first. */
function largest(edges: TransferEdge[], k: number): TransferEdge[] {
  const top: TransferEdge[] = [];
  for (const e of edges) {
    if (top.length < k) {
      top.push(e);
      if (top.length === k) top.sort((a, b) => b.bytes - a.bytes);
    } else if (e.bytes > top[k - 1].bytes) {
      let j = k - 1;
      while (j > 0 && top[j - 1].bytes < e.bytes) j--;
      top.splice(j, 0, e);
      top.pop();
    }
  }
  return top.length < k ? top.sort((a, b) => b.bytes - a.bytes) : top;
}
