/** The page: the runs list or a run, by route. */
import { RunPage } from '../panels/RunPage';
import { RunsPage } from '../panels/RunsPage';
import { useSubscription } from './hooks';
import type { AppModel } from './model';

export function App({ app }: { app: AppModel }) {
  useSubscription(app);
  if (app.run) return <RunPage key={app.run.runId} controller={app.run} />;
  if (app.runs) return <RunsPage model={app.runs} />;
  return null;
}
