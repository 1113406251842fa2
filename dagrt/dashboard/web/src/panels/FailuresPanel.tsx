/** Final failures at the replay time: exception type, message, traceback as logged. */
import { useSubscription } from '../app/hooks';
import type { RunController } from '../run/controller';
import { failures, retriedFailures } from '../store/derive';

export function FailuresPanel({ controller }: { controller: RunController }) {
  useSubscription(controller.store, 500);
  const store = controller.store!;
  const list = failures(store);
  const retried = store.cached('retried', () => retriedFailures(store));
  return (
    <section class="card" data-testid="failures-panel">
      <h2>failures {list.length > 0 && <span class="badge status-failed">{list.length}</span>}</h2>
      {list.length === 0 && <p class="muted">no task has failed{retried ? ` (${retried} attempts were retried)` : ''}</p>}
      {list.map((f) => (
        <div class="failure" key={`${f.task}-${f.attempt}`} data-testid="failure">
          <div class="failure-head">
            <span class="mono error-type" data-testid="error-type">{f.exc_type}</span>
            <a href="#" class="mono" onClick={(e) => { e.preventDefault(); controller.select(f.task); }}>{f.key}</a>
            <span class="muted">{f.name} · attempt {f.attempt} · {f.worker ?? '?'}</span>
          </div>
          <div class="error-message" data-testid="error-message">{f.message}</div>
          <pre class="traceback" data-testid="error-traceback">{f.traceback}</pre>
        </div>
      ))}
      {list.length > 0 && retried > 0 && <p class="muted">{retried} other attempts failed and were retried</p>}
    </section>
  );
}
