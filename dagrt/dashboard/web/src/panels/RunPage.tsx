/** `#/run/<id>`: header, replay bar, DAG, task stream and the panels. */
import { traceUrl } from '../api';
import { useSubscription } from '../app/hooks';
import { STATE_COLORS } from '../colors';
import { DagView } from '../dag/DagView';
import { formatBytes, formatSeconds } from '../format';
import { ReplayBar } from '../replay/ReplayBar';
import type { RunController } from '../run/controller';
import { transferTotals } from '../store/derive';
import { STATE_NAMES } from '../store/reducer';
import { TaskStream } from '../stream/TaskStream';
import { ConnectionBadge, StatusBadge } from './badges';
import { FailuresPanel } from './FailuresPanel';
import { NodeDetails } from './NodeDetails';
import { TransfersPanel } from './TransfersPanel';
import { WorkersPanel } from './WorkersPanel';

export function RunPage({ controller }: { controller: RunController }) {
  useSubscription(controller, 100);
  const store = controller.store;
  return (
    <div class="page">
      <RunHeader controller={controller} />
      {!store ? (
        <section class="card notice">
          {controller.error ?? controller.waiting ?? 'loading the run…'}
        </section>
      ) : (
        <>
          <ReplayBar controller={controller} />
          <DagView controller={controller} />
          <NodeDetails controller={controller} />
          <TaskStream controller={controller} />
          <div class="panels">
            <TransfersPanel controller={controller} />
            <WorkersPanel controller={controller} />
            <FailuresPanel controller={controller} />
          </div>
        </>
      )}
    </div>
  );
}

function RunHeader({ controller }: { controller: RunController }) {
  const store = controller.store;
  const counts = store?.counts();
  const status = store?.status() ?? 'running';
  const makespan = store?.makespan() ?? null;
  const moved = store ? transferTotals(store).network : 0;
  return (
    <header class="topbar run-header">
      <a class="back" href="#/">← runs</a>
      <h1 class="mono" title="run id">{controller.runId}</h1>
      <StatusBadge status={status} testId="run-status" />
      <ConnectionBadge state={controller.connection} />
      <a class="fact" href={traceUrl(controller.base, controller.runId)} target="_blank" rel="noreferrer"
        title="Chrome trace (Perfetto, chrome://tracing)">
        trace.json
      </a>
      <span class="spacer" />
      {counts && (
        <span class="counts" data-testid="state-counts">
          {STATE_NAMES.map((name, s) => (
            <span class="count" key={name} data-testid={`count-${name}`} title={name}>
              <span class="swatch" style={{ background: STATE_COLORS[s] }} />
              {name} <b>{counts[name]}</b>
            </span>
          ))}
        </span>
      )}
      <span class="fact" title="makespan">
        makespan <b>{makespan !== null ? formatSeconds(makespan) : store ? `${formatSeconds(store.duration)}…` : '–'}</b>
      </span>
      <span class="fact" title="bytes over the network (not counting local hand-overs)">
        moved <b>{formatBytes(moved)}</b>
      </span>
    </header>
  );
}
