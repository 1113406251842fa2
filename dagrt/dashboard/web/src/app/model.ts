/**
 * The page's top-level model and hash router: `#/` runs list, `#/run/<id>` a run,
 * `#/run/<id>?t=<seconds>` a run at replay time t.
 */
import { apiBase } from '../api';
import { RunController } from '../run/controller';
import { RunsModel } from '../run/runs';
import { Emitter } from '../util/emitter';

export interface Route {
  view: 'runs' | 'run';
  runId: string | null;
  t: number | null;
}

export function parseHash(hash: string): Route {
  const text = hash.replace(/^#/, '');
  const match = /^\/run\/([^?]+)(?:\?(.*))?$/.exec(text);
  if (!match) return { view: 'runs', runId: null, t: null };
  const params = new URLSearchParams(match[2] ?? '');
  const raw = params.get('t');
  const t = raw !== null && raw !== '' && Number.isFinite(Number(raw)) ? Math.max(0, Number(raw)) : null;
  return { view: 'run', runId: decodeURIComponent(match[1]), t };
}

export class AppModel extends Emitter {
  readonly base = apiBase();
  route: Route = { view: 'runs', runId: null, t: null };
  runs: RunsModel | null = null;
  run: RunController | null = null;
  /** Clicks seen by a document click handler (a responsiveness probe for tests). */
  clicks = 0;

  start(): void {
    window.addEventListener('hashchange', () => this.navigate());
    document.addEventListener('click', () => {
      this.clicks++;
    });
    this.navigate();
  }

  private navigate(): void {
    const route = parseHash(location.hash);
    if (route.view === 'run' && this.run && route.runId === this.run.runId) {
      // Same run: only the replay time changed (typed, or history).
      if (route.t !== null) this.run.seek(route.t, false);
      else this.run.goLive();
      this.route = route;
      this.emit();
      return;
    }
    this.run?.stop();
    this.run = null;
    this.runs?.stop();
    this.runs = null;
    this.route = route;
    if (route.view === 'run' && route.runId) {
      this.run = new RunController(this.base, route.runId, route.t);
    } else {
      this.runs = new RunsModel(this.base);
    }
    this.emit();
  }
}
