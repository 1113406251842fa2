/** Play/pause, speed, step one event, scrub; follows "now" while live. */
import { useSubscription } from '../app/hooks';
import type { RunController, Speed } from '../run/controller';

const SPEEDS: Speed[] = [1, 10, 100];

export function ReplayBar({ controller }: { controller: RunController }) {
  useSubscription(controller.store, 50);
  useSubscription(controller, 50);
  const store = controller.store!;
  const duration = store.duration;
  const t = store.replayTime;
  const scrub = (e: Event) => {
    const value = Number((e.currentTarget as HTMLInputElement).value);
    if (Number.isFinite(value)) {
      controller.pause(false);
      controller.seek(value);
    }
  };
  return (
    <section class="card replay-bar" data-testid="replay-bar">
      <button type="button" data-testid="play" class={controller.playing ? 'on' : 'primary'}
        onClick={() => controller.play()}>▶ play</button>
      <button type="button" data-testid="pause" class={controller.playing ? 'primary' : ''}
        onClick={() => controller.pause()}>❚❚ pause</button>
      <button type="button" data-testid="step-back" title="undo one event" onClick={() => controller.stepBack()}>‹ step</button>
      <button type="button" data-testid="step-forward" title="apply one event" onClick={() => controller.stepForward()}>step ›</button>
      <span class="speeds" role="group" aria-label="speed">
        {SPEEDS.map((s) => (
          <button type="button" key={s} data-testid={`speed-${s}`}
            class={controller.speed === s ? 'on' : ''} onClick={() => controller.setSpeed(s)}>
            {s}×
          </button>
        ))}
      </span>
      <input type="range" data-testid="scrub" min={0} max={duration} step={0.001}
        value={t} onInput={scrub} onChange={scrub} aria-label="replay time" />
      <span class="replay-time mono" data-testid="replay-time">
        {t.toFixed(3)} s / {duration.toFixed(3)} s
      </span>
      <button type="button" data-testid="live" class={store.live ? 'on live' : 'live'}
        title="follow the newest events" onClick={() => controller.goLive()}>
        ● live
      </button>
    </section>
  );
}
