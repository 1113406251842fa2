/** `window.__dagrt`: a read-only snapshot of what the page shows, for tests (SPEC.md). */
import type { AppModel } from './model';
import { failures, nodeRecord, transferEdges, transferTotals } from '../store/derive';
import type { DagRenderer } from '../dag/renderer';

/** The DAG renderer of the run page, when mounted (set by the DAG view). */
export const mounted: { dag: DagRenderer | null } = { dag: null };

export function installDebug(app: AppModel): void {
  const store = () => app.run?.store ?? null;
  const snapshot = {
    get ready(): boolean {
      if (app.route.view === 'runs') return app.runs?.ready ?? false;
      return app.run?.ready ?? false;
    },
    get view(): 'runs' | 'run' {
      return app.route.view;
    },
    get runId(): string | null {
      return app.route.runId;
    },
    get status(): string {
      return store()?.status() ?? '';
    },
    get connection(): string {
      return (app.route.view === 'runs' ? app.runs?.connection : app.run?.connection) ?? 'connecting';
    },
    get live(): boolean {
      return store()?.live ?? true;
    },
    get replayTime(): number {
      return store()?.replayTime ?? 0;
    },
    get duration(): number {
      return store()?.duration ?? 0;
    },
    get counts() {
      return store()?.counts() ?? { waiting: 0, ready: 0, running: 0, done: 0, failed: 0 };
    },
    get workerCounts(): Record<string, number> {
      return store()?.workerCounts() ?? {};
    },
    get appliedCount(): number {
      return store()?.reducer.appliedCount ?? 0;
    },
    get lastAppliedId(): string | null {
      const s = store();
      return s && s.lastApplied >= 0 ? s.log.id(s.lastApplied) : null;
    },
    appliedIds(): string[] {
      const s = store();
      if (!s) return [];
      const out = new Array<string>(s.log.length);
      for (let p = 0; p < s.log.length; p++) out[p] = s.log.id(p);
      return out;
    },
    node(indexOrKey: number | string) {
      const s = store();
      if (!s) return null;
      const index = typeof indexOrKey === 'number' ? indexOrKey : s.keyIndex(String(indexOrKey));
      const record = nodeRecord(s, index);
      if (!record) return null;
      return {
        index: record.index, key: record.key, name: record.name, state: record.state,
        worker: record.worker, start: record.start, end: record.end, attempt: record.attempt,
        inputBytes: record.inputBytes, outputBytes: record.outputBytes,
        downloadTime: record.downloadTime, uploadTime: record.uploadTime, error: record.error,
        kept: record.kept, placed: record.placed,
      };
    },
    nodeCenter(index: number) {
      return mounted.dag?.nodeCenter(index) ?? null;
    },
    nodeColor(index: number): string | null {
      return mounted.dag?.paintedColor(index) ?? null;
    },
    lanes() {
      const run = app.run;
      const s = store();
      if (!run?.lanes || !s) return [];
      run.lanes.update();
      const out: { worker: string; slot: number; bars: number }[] = [];
      for (const lane of run.lanes.lanes()) {
        let bars = 0;
        let any = false;
        for (const bar of lane.bars) {
          if (bar.pos >= s.considered || !s.inEffect(bar.pos)) continue;
          any = true;
          if (!bar.failed) bars++;
        }
        if (any) out.push({ worker: s.log.workerName(lane.worker) ?? '', slot: lane.slot, bars });
      }
      return out;
    },
    transfers() {
      const s = store();
      if (!s) return { network: 0, local: 0, perWorker: {}, byPath: {}, avoidedBy: {}, edges: [] };
      const t = transferTotals(s);
      return {
        network: t.network, local: t.local, perWorker: { ...t.perWorker }, byPath: { ...t.byPath },
        avoidedBy: { ...t.avoidedBy }, edges: transferEdges(s).slice(),
      };
    },
    failures() {
      const s = store();
      if (!s) return [];
      return failures(s).map((f) => ({
        task: f.task, key: f.key, exc_type: f.exc_type, message: f.message, traceback: f.traceback,
      }));
    },
    get aggregated(): boolean {
      return mounted.dag?.aggregated ?? false;
    },
    get visibleNodes(): number {
      return mounted.dag?.aggregated ? 0 : mounted.dag?.visibleNodes ?? 0;
    },
    runs() {
      return (app.runs?.runs ?? []).map((r) => ({ run_id: r.run_id, status: r.status, n_tasks: r.n_tasks }));
    },
    get clicks(): number {
      return app.clicks;
    },
  };
  Object.defineProperty(window, '__dagrt', { value: Object.freeze(snapshot), configurable: true });
}
