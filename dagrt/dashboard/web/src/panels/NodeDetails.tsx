/** The selected node's record (or the selected box of the aggregated view). */
import { useSubscription } from '../app/hooks';
import { mounted } from '../app/debug';
import { STATE_COLORS } from '../colors';
import { formatBytes, formatSeconds } from '../format';
import type { RunController } from '../run/controller';
import { nodeRecord } from '../store/derive';
import { PLACEMENT_TITLES } from '../store/events';
import { STATE_NAMES } from '../store/reducer';

export function NodeDetails({ controller }: { controller: RunController }) {
  useSubscription(controller.selection);
  useSubscription(controller.store, 200);
  const store = controller.store!;
  const record = controller.selected >= 0 ? nodeRecord(store, controller.selected) : null;
  if (!record) {
    return (
      <aside class="card details empty-details">
        <BoxDetails controller={controller} />
      </aside>
    );
  }
  const state = STATE_NAMES.indexOf(record.state);
  return (
    <aside class="card details" data-testid="node-details">
      <div class="details-head">
        <h2>task <span class="mono">#{record.index}</span></h2>
        <button type="button" onClick={() => controller.select(-1)}>close</button>
      </div>
      <dl class="facts">
        <dt>key</dt><dd class="mono" data-testid="node-key">{record.key}</dd>
        <dt>function</dt><dd data-testid="node-function">{record.name}</dd>
        <dt>state</dt>
        <dd data-testid="node-state">
          <span class="swatch" style={{ background: STATE_COLORS[state] }} />{record.state}
        </dd>
        <dt>worker</dt><dd class="mono" data-testid="node-worker">{record.worker ?? ''}</dd>
        <dt>attempt</dt><dd data-testid="node-attempt">{record.attempt || '–'}</dd>
        <dt>start</dt><dd>{record.start !== null ? `+${formatSeconds(record.start)}` : '–'}</dd>
        <dt>end</dt><dd>{record.end !== null ? `+${formatSeconds(record.end)}` : '–'}</dd>
        <dt>duration</dt>
        <dd>{record.start !== null && record.end !== null ? formatSeconds(record.end - record.start) : '–'}</dd>
        <dt>executing</dt><dd>{formatSeconds(record.executionTime)}</dd>
        <dt>download</dt><dd>{formatSeconds(record.downloadTime)}</dd>
        <dt>upload</dt><dd>{formatSeconds(record.uploadTime)}</dd>
        <dt>bytes in</dt><dd>{formatBytes(record.inputBytes)}</dd>
        <dt>bytes out</dt><dd>{formatBytes(record.outputBytes)}</dd>
        <dt>kept</dt><dd>{record.kept ? 'yes (ran where a parent’s output was)' : 'no'}</dd>
        <dt>placed</dt><dd data-testid="node-placed" title={PLACEMENT_TITLES[record.placed] ?? ''}>{record.placed || '—'}</dd>
        <dt>parents</dt><dd>{record.parents}</dd>
        <dt>children</dt><dd>{record.children}</dd>
      </dl>
      {record.error && (
        <div class="error-record" data-testid="node-error">
          <div><b>{record.error.exc_type}</b>: {record.error.message}</div>
          <pre>{record.error.traceback}</pre>
        </div>
      )}
      {!record.error && record.lastError && (
        <div class="error-record retried">
          <div>an earlier attempt failed: <b>{record.lastError.exc_type}</b>: {record.lastError.message}</div>
        </div>
      )}
    </aside>
  );
}

function BoxDetails({ controller }: { controller: RunController }) {
  const dag = mounted.dag;
  const agg = dag?.aggregation;
  const b = dag?.selectedBox ?? -1;
  if (!dag || !agg || !dag.aggregated || b < 0 || b >= agg.boxes.length) {
    return <p class="muted hint">Click a task in the graph to see where and when it ran, its bytes and its error.</p>;
  }
  const box = agg.boxes[b];
  const store = controller.store!;
  const states = store.states();
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < agg.nodeBox.length; i++) if (agg.nodeBox[i] === b) counts[states[i]]++;
  return (
    <div>
      <h2>group of tasks</h2>
      <dl class="facts">
        <dt>function</dt><dd>{store.graph.fnNames[box.fn]}</dd>
        <dt>layers</dt><dd>{box.firstLayer}–{box.lastLayer}</dd>
        <dt>tasks</dt><dd>{box.count}</dd>
        {STATE_NAMES.map((name, s) => (
          <>
            <dt key={`t${name}`}><span class="swatch" style={{ background: STATE_COLORS[s] }} />{name}</dt>
            <dd key={`d${name}`}>{counts[s]}</dd>
          </>
        ))}
      </dl>
      <p class="muted">Double-click in the graph (or zoom in) to see the tasks one by one.</p>
    </div>
  );
}
