/** Workers: `/api/workers` (heartbeat age, status, counts) and this run's counts per worker. */
import { useEffect, useState } from 'preact/hooks';
import { fetchWorkers, type WorkerInfo } from '../api';
import { useSubscription } from '../app/hooks';
import { workerColor } from '../colors';
import type { RunController } from '../run/controller';
import { State } from '../store/reducer';

const REFRESH_MS = 2000;

export function WorkersPanel({ controller }: { controller: RunController }) {
  useSubscription(controller.store, 500);
  const [workers, setWorkers] = useState<WorkerInfo[]>([]);
  const [fetchedAt, setFetchedAt] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [, tick] = useState(0);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const load = async () => {
      try {
        const list = await fetchWorkers(controller.base);
        if (stopped) return;
        setWorkers(list);
        setFetchedAt(performance.now());
        setError(null);
      } catch (e) {
        if (!stopped) setError(String(e));
      }
      if (!stopped) timer = setTimeout(load, REFRESH_MS);
    };
    void load();
    const ages = setInterval(() => tick((n) => n + 1), 1000);
    return () => {
      stopped = true;
      clearTimeout(timer);
      clearInterval(ages);
    };
  }, [controller]);

  const store = controller.store!;
  const perRun = store.cached('workers-panel', () => {
    const states = store.states();
    const rows = new Map<number, { done: number; running: number; failed: number }>();
    const worker = store.reducer.worker;
    for (let i = 0; i < store.graph.n; i++) {
      const w = worker[i];
      if (w < 0) continue;
      let row = rows.get(w);
      if (!row) rows.set(w, (row = { done: 0, running: 0, failed: 0 }));
      if (states[i] === State.Done) row.done++;
      else if (states[i] === State.Running) row.running++;
      else if (states[i] === State.Failed) row.failed++;
    }
    return rows;
  });
  const byName = new Map(workers.map((w) => [w.id, w]));
  const names = [...new Set([...store.log.workers, ...workers.map((w) => w.id)])].sort();
  const elapsed = fetchedAt ? (performance.now() - fetchedAt) / 1000 : 0;
  return (
    <section class="card scroll-x" data-testid="workers-panel">
      <h2>workers</h2>
      {error && <div class="notice">{error}</div>}
      <table class="table compact">
        <thead>
          <tr>
            <th>worker</th><th>status</th><th class="num">heartbeat</th>
            <th class="num" title="in flight / done / failed, all runs">all runs</th>
            <th class="num" title="this run at the replay time: done / running / failed">this run</th>
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const info = byName.get(name);
            const index = store.log.workers.indexOf(name);
            const run = index >= 0 ? perRun.get(index) : undefined;
            const status = info ? (info.alive === false ? 'gone' : String(info.status ?? 'alive')) : 'not registered';
            return (
              <tr key={name} data-testid={`worker-row-${name}`}>
                <td class="mono ellipsis" title={info ? `${name} on ${info.host ?? '?'}, pid ${info.pid ?? '?'}` : name}>
                  <span class="swatch" style={{ background: workerColor(index) }} />{name}
                </td>
                <td><span class={`badge worker-${info?.alive === false ? 'gone' : info ? 'alive' : 'unknown'}`}>{status}</span></td>
                <td class="num">{info?.age != null ? `${(info.age + elapsed).toFixed(1)} s ago` : '–'}</td>
                <td class="num" title="in flight / done / failed">
                  {info ? `${info.in_flight ?? 0} / ${info.done ?? 0} / ${info.failed ?? 0}` : '–'}
                </td>
                <td class="num" title="done / running / failed" data-testid={`worker-run-${name}`}>
                  {run ? `${run.done} / ${run.running} / ${run.failed}` : '–'}
                </td>
              </tr>
            );
          })}
          {names.length === 0 && <tr><td colSpan={5} class="empty">no workers</td></tr>}
        </tbody>
      </table>
    </section>
  );
}
