// Reconnect backoff and the dedup window.

/**
 * Exponential backoff with full jitter, as pkg/sdk/connect.go: a random
 * delay in [0, min(max, min * 2^attempt)] milliseconds.
 */
export function backoff(minMs: number, maxMs: number, attempt: number, random: () => number = Math.random): number {
  let ceil = minMs;
  for (let i = 0; i < attempt && ceil < maxMs; i++) ceil *= 2;
  ceil = Math.min(ceil, maxMs);
  return Math.floor(random() * (ceil + 1));
}

/**
 * Remembers the last `size` message ids and whether each was acked, so a
 * redelivered message is not handed to the application twice.
 */
export class Dedup {
  private ring: (bigint | undefined)[];
  private next = 0;
  private seen = new Map<bigint, boolean>(); // id -> acked

  constructor(readonly size = 1024) {
    if (!(size >= 1)) throw new RangeError('dedup window must be >= 1');
    this.ring = new Array(size);
  }

  /** Records id. fresh is false for a duplicate; acked tells whether the first copy was acked. */
  add(id: bigint): { fresh: boolean; acked: boolean } {
    const acked = this.seen.get(id);
    if (acked !== undefined) return { fresh: false, acked };
    const old = this.ring[this.next];
    if (old !== undefined) this.seen.delete(old);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.size;
    this.seen.set(id, false);
    return { fresh: true, acked: false };
  }

  markAcked(ids: Iterable<bigint>): void {
    for (const id of ids) if (this.seen.has(id)) this.seen.set(id, true);
  }

  has(id: bigint): boolean {
    return this.seen.has(id);
  }

  get length(): number {
    return this.seen.size;
  }
}

/** Resolves after ms, or at once (false) when signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
