// A small typed event emitter with no dependency. A listener that throws
// does not break the client: the exception is reported on the next tick,
// like an uncaught error, instead of unwinding the connection code.

type Listener<T> = (ev: T) => void;

export class Emitter<E extends { [K in keyof E]: unknown }> {
  private listeners: { [K in keyof E]?: Listener<E[K]>[] } = {};

  on<K extends keyof E>(name: K, fn: Listener<E[K]>): this {
    (this.listeners[name] ??= []).push(fn);
    return this;
  }

  off<K extends keyof E>(name: K, fn: Listener<E[K]>): this {
    const l = this.listeners[name];
    if (l) this.listeners[name] = l.filter((f) => f !== fn);
    return this;
  }

  once<K extends keyof E>(name: K, fn: Listener<E[K]>): this {
    const w: Listener<E[K]> = (ev) => {
      this.off(name, w);
      fn(ev);
    };
    return this.on(name, w);
  }

  protected emit<K extends keyof E>(name: K, ev: E[K]): void {
    for (const fn of this.listeners[name] ?? []) {
      try {
        fn(ev);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
