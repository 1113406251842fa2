/** Preact hooks over the models. */
import { useLayoutEffect, useReducer, useRef } from 'preact/hooks';

interface Subscribable {
  version: number;
  subscribe(listener: () => void): () => void;
}

/**
 * Re-render when `source` changes, at most every `ms` milliseconds (0: every change).
 * A change between this render and the subscription is not lost: the version seen at
 * render time is compared once subscribed.
 */
export function useSubscription(source: Subscribable | null | undefined, ms = 0): void {
  const [, bump] = useReducer((n: number) => n + 1, 0);
  const rendered = useRef(-1);
  rendered.current = source ? source.version : -1;
  useLayoutEffect(() => {
    if (!source) return undefined;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let last = 0;
    const changed = () => {
      if (ms <= 0) return bump(0);
      if (timer !== null) return;
      const wait = Math.max(0, last + ms - performance.now());
      timer = setTimeout(() => {
        timer = null;
        last = performance.now();
        bump(0);
      }, wait);
    };
    const unsubscribe = source.subscribe(changed);
    if (source.version !== rendered.current) changed();
    return () => {
      unsubscribe();
      if (timer !== null) clearTimeout(timer);
    };
  }, [source, ms]);
}
