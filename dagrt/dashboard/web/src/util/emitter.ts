/** A minimal change notifier for models the views subscribe to. */
export class Emitter {
  private listeners = new Set<() => void>();
  version = 0;

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  emit(): void {
    this.version++;
    for (const listener of [...this.listeners]) listener();
  }
}
