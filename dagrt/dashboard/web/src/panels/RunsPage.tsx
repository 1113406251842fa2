/** `#/`: the runs list, newest first, live. */
import { useSubscription } from '../app/hooks';
import { formatBytes, formatClock, formatSeconds } from '../format';
import type { RunsModel } from '../run/runs';
import { ConnectionBadge, StatusBadge } from './badges';

export function RunsPage({ model }: { model: RunsModel }) {
  useSubscription(model, 100);
  return (
    <div class="page">
      <header class="topbar">
        <h1>dagrt</h1>
        <span class="subtitle">runs</span>
        <span class="spacer" />
        <ConnectionBadge state={model.connection} />
      </header>
      {model.error && <div class="notice">{model.error}</div>}
      <section class="card">
        <table class="table runs" data-testid="runs-list">
          <thead>
            <tr>
              <th>run</th>
              <th>status</th>
              <th class="num">tasks</th>
              <th class="num">done</th>
              <th class="num">failed</th>
              <th class="num" title="not run: found in the cache, or only such tasks needed them">
                from cache
              </th>
              <th class="num">remaining</th>
              <th class="num">makespan</th>
              <th class="num">bytes moved</th>
              <th>workers</th>
              <th>submitted</th>
            </tr>
          </thead>
          <tbody>
            {model.runs.map((run) => {
              const spared = run.spared ?? 0;
              const remaining = Math.max(0, run.n_tasks - run.done - run.failed - spared);
              return (
                <tr key={run.run_id} data-testid={`run-row-${run.run_id}`}
                  onClick={() => { location.hash = `#/run/${run.run_id}`; }}>
                  <td class="mono">
                    <a href={`#/run/${run.run_id}`}>{run.run_id}</a>
                    {run.parent_run && (
                      <div class="sub" data-testid={`run-parent-${run.run_id}`}
                        title="the graph a task of that run returned">
                        graph of {run.parent_task} in{' '}
                        <a href={`#/run/${run.parent_run}`}>{run.parent_run}</a>
                      </div>
                    )}
                    {run.priority ? (
                      <div class="sub" data-testid={`run-priority-${run.run_id}`}
                        title="the run's priority, added to its tasks': higher is taken first">
                        priority {run.priority}
                      </div>
                    ) : null}
                    {run.lanes && Object.keys(run.lanes).length > 0 && (
                      <div class="sub" data-testid={`run-lanes-${run.run_id}`}
                        title="tasks per lane: the resources they need, and their priority">
                        {Object.entries(run.lanes)
                          .map(([lane, n]) => `${n} in ${lane}`)
                          .join(', ')}
                      </div>
                    )}
                  </td>
                  <td><StatusBadge status={run.status} /></td>
                  <td class="num">{run.n_tasks}</td>
                  <td class="num">{run.done}</td>
                  <td class="num">{run.failed}</td>
                  <td class="num">{spared || '–'}</td>
                  <td class="num">{run.status === 'running' ? remaining : remaining || '–'}</td>
                  <td class="num">{formatSeconds(run.makespan)}</td>
                  <td class="num">{formatBytes(run.bytes_moved)}</td>
                  <td title={run.workers.join('\n')}>{run.workers.length}</td>
                  <td>{formatClock(run.submitted)}</td>
                </tr>
              );
            })}
            {model.ready && model.runs.length === 0 && (
              <tr><td colSpan={11} class="empty">no runs in the event log yet</td></tr>
            )}
          </tbody>
        </table>
      </section>
    </div>
  );
}
