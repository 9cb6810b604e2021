/** A map from event name to the tuple of arguments its listeners receive. */
export type EventMap = { [event: string]: unknown[] };

/** A listener of one event of an {@link Emitter}. */
export type Listener<A extends unknown[]> = (...args: A) => void;

type AnyListener = (...args: unknown[]) => void;

/**
 * Emitter is a small typed event emitter: `on` returns an unsubscribe
 * function, a listener that throws does not stop the others.
 */
export class Emitter<E extends EventMap> {
  private listeners = new Map<keyof E, Set<AnyListener>>();

  /** Adds a listener; the returned function removes it again. */
  on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn as unknown as AnyListener);
    return () => this.off(event, fn);
  }

  /** Adds a listener that runs at most once. */
  once<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    const off = this.on(event, (...args: E[K]) => {
      off();
      fn(...args);
    });
    return off;
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof E>(event: K, fn: Listener<E[K]>): void {
    this.listeners.get(event)?.delete(fn as unknown as AnyListener);
  }

  /** Removes every listener of every event. */
  removeAllListeners(): void {
    this.listeners.clear();
  }

  /** Calls the listeners of an event in the order they were added. */
  emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as unknown as Listener<E[K]>)(...args);
      } catch (err) {
        console.error(`fanout: listener of ${String(event)} threw`, err);
      }
    }
  }
}
