/** The task stream panel: worker legend, the lanes canvas, a tooltip on hover. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { useSubscription } from '../app/hooks';
import { FAILED_BAR_COLOR, TRANSFER_COLOR, functionColor, workerColor } from '../colors';
import { formatBytes, formatSeconds } from '../format';
import type { RunController } from '../run/controller';
import { FrameTask, LIVE_REDRAW_MS } from '../util/schedule';
import { StreamRenderer } from './renderer';

interface Tip {
  x: number;
  y: number;
  lines: string[];
}

export function TaskStream({ controller }: { controller: RunController }) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const boxRef = useRef<HTMLDivElement>(null);
  const [tip, setTip] = useState<Tip | null>(null);
  const store = controller.store!;
  const lanes = controller.lanes!;
  useSubscription(controller, 500);

  useEffect(() => {
    const canvas = canvasRef.current!;
    const renderer = new StreamRenderer(canvas, store, lanes);
    const layoutCanvas = () => {
      const dpr = window.devicePixelRatio || 1;
      const width = canvas.clientWidth;
      lanes.update();
      const height = renderer.wantedHeight();
      renderer.width = width;
      renderer.dpr = dpr;
      const w = Math.max(1, Math.round(width * dpr));
      const h = Math.max(1, Math.round(height * dpr));
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
        canvas.style.height = `${height}px`;
      }
    };
    const frame = new FrameTask(() => {
      layoutCanvas();
      renderer.draw();
    });
    const unsubscribe = store.subscribe(() =>
      store.live ? frame.requestWithin(LIVE_REDRAW_MS) : frame.request(),
    );
    const observer = new ResizeObserver(() => frame.request());
    observer.observe(canvas);
    frame.request();

    // Hover: the bar under the pointer. Wheel: zoom time. Drag: pan. Double-click: all.
    let drag: { x: number; window: [number, number] } | null = null;
    const local = (e: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      return { x: e.clientX - rect.left, y: e.clientY - rect.top };
    };
    const onMove = (e: PointerEvent) => {
      const p = local(e);
      if (drag) {
        const [a, b] = drag.window;
        const dt = renderer.timeAt(drag.x) - renderer.timeAt(p.x);
        renderer.window = [a + dt, b + dt];
        frame.request();
        return;
      }
      const hit = renderer.barAt(p.x, p.y);
      if (!hit) return setTip(null);
      const { bar } = hit;
      const c = store.log.columns;
      const name = store.graph.fnNames[store.graph.fn[bar.task]] ?? '';
      const lines = [
        `${store.graph.keys[bar.task] ?? bar.task} (${name})${bar.failed ? ' — failed' : ''}`,
        `worker ${store.log.workerName(bar.worker) ?? '?'} · attempt ${c.attempt[bar.pos]}`,
        `duration ${formatSeconds(bar.end - bar.start)} · from ${formatSeconds(bar.start - store.t0)}`,
      ];
      if (!bar.failed) {
        lines.push(`bytes in ${formatBytes(c.a[bar.pos])} · out ${formatBytes(c.b[bar.pos])}`);
        lines.push(`download ${formatSeconds(c.c[bar.pos])} · upload ${formatSeconds(c.d[bar.pos])}`);
      }
      setTip({ x: p.x, y: p.y, lines });
    };
    const onDown = (e: PointerEvent) => {
      if (e.button !== 0) return;
      drag = { x: local(e).x, window: renderer.timeRange() };
      canvas.setPointerCapture(e.pointerId);
    };
    const onUp = (e: PointerEvent) => {
      drag = null;
      if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    };
    const onLeave = () => setTip(null);
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const p = local(e);
      const [a, b] = renderer.timeRange();
      const at = renderer.timeAt(p.x);
      const f = Math.exp((e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY) * 0.0015);
      const span = Math.max(1e-6, (b - a) * f);
      const left = at - ((at - a) / (b - a)) * span;
      renderer.window = [left, left + span];
      frame.request();
    };
    const onDouble = () => {
      renderer.window = null;
      frame.request();
    };
    canvas.addEventListener('pointermove', onMove);
    canvas.addEventListener('pointerdown', onDown);
    canvas.addEventListener('pointerup', onUp);
    canvas.addEventListener('pointerleave', onLeave);
    canvas.addEventListener('wheel', onWheel, { passive: false });
    canvas.addEventListener('dblclick', onDouble);
    return () => {
      unsubscribe();
      observer.disconnect();
      canvas.removeEventListener('pointermove', onMove);
      canvas.removeEventListener('pointerdown', onDown);
      canvas.removeEventListener('pointerup', onUp);
      canvas.removeEventListener('pointerleave', onLeave);
      canvas.removeEventListener('wheel', onWheel);
      canvas.removeEventListener('dblclick', onDouble);
    };
  }, [store, lanes]);

  // Every worker that logged an event of this run.
  const workers = store.log.workers
    .map((name, index) => ({ name, index }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return (
    <section class="card stream-card">
      <div class="toolbar">
        <h2>task stream</h2>
        <div class="legend" data-testid="worker-legend">
          {workers.map((w) => (
            <span key={w.name} data-testid={`worker-legend-${w.name}`}>
              <span class="swatch" style={{ background: workerColor(w.index) }} />
              {w.name}
            </span>
          ))}
        </div>
        <span class="spacer" />
        <span class="legend">
          {store.graph.fnNames.slice(0, 12).map((name, i) => (
            <span key={`fn-${name}`}><span class="swatch" style={{ background: functionColor(i) }} />{name || '?'}</span>
          ))}
          <span><span class="swatch" style={{ background: TRANSFER_COLOR }} />download / upload</span>
          <span><span class="swatch" style={{ background: FAILED_BAR_COLOR }} />failed attempt</span>
          <span class="muted">wheel zooms time · drag pans · double-click resets</span>
        </span>
      </div>
      <div class="canvas-box" ref={boxRef}>
        <canvas ref={canvasRef} data-testid="task-stream-canvas" />
        {workers.length === 0 && <div class="overlay-note">no task has finished yet</div>}
        {tip && (
          <div class="tooltip" data-testid="stream-tooltip"
            style={{ left: `${Math.min(tip.x + 14, (boxRef.current?.clientWidth ?? 600) - 320)}px`, top: `${tip.y + 14}px` }}>
            {tip.lines.map((line, i) => <div key={i} class={i === 0 ? 'mono' : ''}>{line}</div>)}
          </div>
        )}
      </div>
    </section>
  );
}
