/** The DAG panel: toolbar (colour mode, critical path, fit) and the canvas with pan/zoom. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { mounted } from '../app/debug';
import { useSubscription } from '../app/hooks';
import { EDGE_COLORS, STATE_COLORS, functionColor, workerColor } from '../colors';
import type { RunController } from '../run/controller';
import { STATE_NAMES } from '../store/reducer';
import { FrameTask, LIVE_REDRAW_MS } from '../util/schedule';
import { DagRenderer, type ColorMode } from './renderer';

const HEIGHT = 460;

export function DagView({ controller }: { controller: RunController }) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [renderer, setRenderer] = useState<DagRenderer | null>(null);
  const [mode, setMode] = useState<ColorMode>('state');
  const [critical, setCritical] = useState(false);
  const [, setModeTick] = useState(0);
  const store = controller.store!;
  useSubscription(controller, 250);

  // Create the renderer; redraw (once per frame) on every change of the store.
  useEffect(() => {
    const canvas = canvasRef.current!;
    let r: DagRenderer | null = null;
    const frame = new FrameTask(() => {
      if (!r) return;
      r.draw();
      if (r.drawnOnce && r.layout) controller.markDrawn();
    });
    r = new DagRenderer(canvas, store, () => frame.request());
    r.onModeChange = () => setModeTick((n) => n + 1);
    mounted.dag = r;
    setRenderer(r);
    const unsubscribe = store.subscribe(() =>
      store.live ? frame.requestWithin(LIVE_REDRAW_MS) : frame.request(),
    );
    const resize = () => {
      if (!r) return;
      // The canvas's own CSS box: its backing store matches it pixel for pixel.
      r.resize(canvas.clientWidth, HEIGHT, window.devicePixelRatio || 1);
    };
    const observer = new ResizeObserver(resize);
    observer.observe(canvas);
    resize();
    return () => {
      unsubscribe();
      observer.disconnect();
      if (mounted.dag === r) mounted.dag = null;
      r = null;
    };
  }, [store, controller]);

  // The layout arrives from its worker: use it at once (not at the next throttled render).
  useEffect(() => {
    if (!renderer) return undefined;
    const adopt = () => {
      if (controller.layout && renderer.layout !== controller.layout) renderer.setLayout(controller.layout);
    };
    adopt();
    return controller.subscribe(adopt);
  }, [renderer, controller]);

  useEffect(() => renderer?.setColorMode(mode), [renderer, mode]);
  useEffect(() => renderer?.setCritical(critical), [renderer, critical]);
  useEffect(() => {
    if (!renderer) return undefined;
    const follow = () => {
      if (renderer.selected !== controller.selected) renderer.select(controller.selected);
    };
    follow();
    return controller.selection.subscribe(follow);
  }, [renderer, controller]);

  useCanvasInput(canvasRef, renderer, controller);

  const aggregated = renderer?.aggregated ?? false;
  const workers = store.log.workers;
  return (
    <section class="card dag-card">
      <div class="toolbar">
        <h2>graph</h2>
        <span class="muted" data-testid="node-count">{store.graph.n} nodes</span>
        {aggregated && (
          <span class="badge agg" data-testid="aggregated-badge"
            title="too many nodes in view to draw one by one: boxes per function and band of layers; double-click or zoom in to see tasks">
            aggregated view
          </span>
        )}
        <span class="spacer" />
        <label>
          colour by{' '}
          <select data-testid="color-mode" value={mode}
            onChange={(e) => setMode((e.currentTarget as HTMLSelectElement).value as ColorMode)}>
            <option value="state">state</option>
            <option value="worker">worker</option>
            <option value="function">function</option>
          </select>
        </label>
        <label class="check">
          <input type="checkbox" data-testid="critical-path" checked={critical}
            onChange={(e) => setCritical((e.currentTarget as HTMLInputElement).checked)} />
          critical path
        </label>
        <button type="button" data-testid="fit" onClick={() => renderer?.fit()}>fit</button>
      </div>
      <div class="canvas-box">
        <canvas ref={canvasRef} data-testid="dag-canvas" style={{ height: `${HEIGHT}px` }} />
        {!controller.layout && <div class="overlay-note">laying out {store.graph.n} tasks…</div>}
      </div>
      <div class="legend">
        {mode === 'state' && STATE_NAMES.map((name, s) => (
          <span key={name}><span class="swatch" style={{ background: STATE_COLORS[s] }} />{name}</span>
        ))}
        {mode === 'worker' && workers.map((w, i) => (
          <span key={w}><span class="swatch" style={{ background: workerColor(i) }} />{w}</span>
        ))}
        {mode === 'function' && store.graph.fnNames.map((f, i) => (
          <span key={f}><span class="swatch" style={{ background: functionColor(i) }} />{f || '?'}</span>
        ))}
        <span class="sep" />
        <span><span class="line" style={{ borderColor: EDGE_COLORS.local, borderTopStyle: 'dashed' }} />local</span>
        <span><span class="line" style={{ borderColor: EDGE_COLORS.storage }} />via storage</span>
        <span class="muted">width: bytes · drag to pan · wheel to zoom · double-click to zoom in</span>
      </div>
    </section>
  );
}

/** Drag to pan, wheel to zoom, click to select, double-click to zoom in. */
function useCanvasInput(
  canvasRef: { current: HTMLCanvasElement | null },
  renderer: DagRenderer | null,
  controller: RunController,
): void {
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || !renderer) return undefined;
    let down: { x: number; y: number; lastX: number; lastY: number; moved: boolean } | null = null;
    const local = (e: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      return { x: e.clientX - rect.left, y: e.clientY - rect.top };
    };
    const onDown = (e: PointerEvent) => {
      if (e.button !== 0) return;
      const p = local(e);
      down = { x: p.x, y: p.y, lastX: p.x, lastY: p.y, moved: false };
      canvas.setPointerCapture(e.pointerId);
    };
    const onMove = (e: PointerEvent) => {
      if (!down) return;
      const p = local(e);
      if (!down.moved && Math.hypot(p.x - down.x, p.y - down.y) < 4) return;
      down.moved = true;
      canvas.style.cursor = 'grabbing';
      renderer.pan(p.x - down.lastX, p.y - down.lastY);
      down.lastX = p.x;
      down.lastY = p.y;
    };
    const onUp = (e: PointerEvent) => {
      if (!down) return;
      const wasClick = !down.moved;
      down = null;
      canvas.style.cursor = '';
      if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
      if (!wasClick) return;
      const p = local(e);
      const hit = renderer.hit(p.x, p.y);
      if (hit && 'node' in hit) {
        controller.select(hit.node);
      } else if (hit && 'box' in hit) {
        renderer.selectBox(hit.box);
        controller.select(-1);
      } else {
        renderer.selectBox(-1);
        controller.select(-1);
      }
    };
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const p = local(e);
      const delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      renderer.zoom(Math.exp(-delta * 0.0015), p.x, p.y);
    };
    const onDouble = (e: MouseEvent) => {
      const p = local(e);
      renderer.zoom(e.shiftKey ? 1 / 3 : 3, p.x, p.y);
    };
    canvas.addEventListener('pointerdown', onDown);
    canvas.addEventListener('pointermove', onMove);
    canvas.addEventListener('pointerup', onUp);
    canvas.addEventListener('pointercancel', onUp);
    canvas.addEventListener('wheel', onWheel, { passive: false });
    canvas.addEventListener('dblclick', onDouble);
    return () => {
      canvas.removeEventListener('pointerdown', onDown);
      canvas.removeEventListener('pointermove', onMove);
      canvas.removeEventListener('pointerup', onUp);
      canvas.removeEventListener('pointercancel', onUp);
      canvas.removeEventListener('wheel', onWheel);
      canvas.removeEventListener('dblclick', onDouble);
    };
  }, [canvasRef, renderer, controller]);
}
