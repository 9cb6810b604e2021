/**
 * The reconnect state machine. It knows nothing of WebSockets or peer
 * connections: the room tells it when the connection came up or dropped,
 * and it decides when to call `rejoin` and what to report. Timers are
 * injected so tests drive time by hand.
 *
 *   idle ──connected()──▶ connected ──drop()──▶ waiting ──timer──▶ rejoining
 *                            ▲                     ▲                  │
 *                            └──── rejoin ok ──────┼──────────────────┤
 *                                                  └── rejoin failed ─┘
 *   any state ──leave()──▶ disconnected; too many failed attempts ──▶ disconnected
 */

/** The states of a {@link Reconnector}. */
export type ReconnectState = 'idle' | 'connected' | 'waiting' | 'rejoining' | 'disconnected';

/** Timers is the part of the clock the state machine needs. */
export interface Timers {
  /** Runs fn after ms milliseconds; returns a handle for clearTimeout. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer set with setTimeout. */
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

/** ReconnectParams configures a {@link Reconnector}. */
export interface ReconnectParams {
  /**
   * Does one full rejoin; resolves when connected again. It must give up
   * when `signal` aborts (the attempt timed out or the user left).
   */
  rejoin: (attempt: number, signal: AbortSignal) => Promise<void>;
  /** Attempts before giving up (default 10). */
  maxAttempts?: number;
  /** Delay before attempt n, counted from 0 (default 250 ms doubling, at most 8 s). */
  backoff?: (attempt: number) => number;
  /** How long one attempt may take before it counts as failed (default 15 s). */
  attemptTimeoutMs?: number;
  /** The clock (default: the real one). */
  timers?: Timers;
  /** Called when a working connection dropped and reconnecting starts. */
  onReconnecting?: (reason: string) => void;
  /** Called when a rejoin succeeded. */
  onReconnected?: () => void;
  /** Called once when the machine gives up, with the last error. */
  onGiveUp?: (err: unknown) => void;
  /** Called after each failed attempt. */
  onAttemptFailed?: (attempt: number, err: unknown) => void;
}

/** defaultBackoff waits 250 ms before the first attempt, doubling up to 8 s. */
export function defaultBackoff(attempt: number): number {
  return Math.min(250 * 2 ** attempt, 8000);
}

/** Reconnector decides when to rejoin after a drop, and when to give up. */
export class Reconnector {
  private st: ReconnectState = 'idle';
  private attempt = 0;
  private timer: unknown = undefined;
  private abort: AbortController | undefined;
  private readonly p: Required<Omit<ReconnectParams, 'onReconnecting' | 'onReconnected' | 'onGiveUp' | 'onAttemptFailed'>> &
    ReconnectParams;

  /** Creates a machine in the idle state. */
  constructor(params: ReconnectParams) {
    this.p = {
      maxAttempts: 10,
      backoff: defaultBackoff,
      attemptTimeoutMs: 15000,
      timers: realTimers,
      ...params,
    };
  }

  /** The current state. */
  get state(): ReconnectState {
    return this.st;
  }

  /** The number of the attempt running or scheduled, from 0. */
  get attempts(): number {
    return this.attempt;
  }

  /** Reports that the first connection is up. */
  connected(): void {
    if (this.st === 'idle') this.st = 'connected';
  }

  /**
   * Reports that the connection dropped (WebSocket closed, ICE failed, the
   * server asked for a rejoin). Ignored unless connected: while
   * reconnecting, the running attempt fails or succeeds on its own.
   */
  drop(reason: string): void {
    if (this.st !== 'connected') return;
    this.st = 'waiting';
    this.attempt = 0;
    this.p.onReconnecting?.(reason);
    this.schedule();
  }

  /** Stops everything: no further attempts, state disconnected. */
  leave(): void {
    if (this.st === 'disconnected') return;
    this.st = 'disconnected';
    this.cancel();
  }

  private cancel(): void {
    if (this.timer !== undefined) {
      this.p.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.abort?.abort();
    this.abort = undefined;
  }

  private schedule(): void {
    this.timer = this.p.timers.setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.p.backoff(this.attempt));
  }

  private async run(): Promise<void> {
    if (this.st !== 'waiting') return;
    this.st = 'rejoining';
    const ctl = new AbortController();
    this.abort = ctl;
    const attempt = this.attempt;
    const deadline = this.p.timers.setTimeout(
      () => ctl.abort(new Error(`rejoin attempt ${attempt + 1} timed out`)),
      this.p.attemptTimeoutMs,
    );
    let failure: unknown;
    let ok = false;
    try {
      await raceAbort(this.p.rejoin(attempt, ctl.signal), ctl.signal);
      ok = true;
    } catch (err) {
      failure = err;
    } finally {
      this.p.timers.clearTimeout(deadline);
    }
    if (this.abort !== ctl || this.st !== 'rejoining') return; // left meanwhile
    this.abort = undefined;
    if (ok) {
      this.st = 'connected';
      this.attempt = 0;
      this.p.onReconnected?.();
      return;
    }
    this.p.onAttemptFailed?.(attempt, failure);
    this.attempt++;
    if (this.attempt >= this.p.maxAttempts) {
      this.st = 'disconnected';
      this.p.onGiveUp?.(failure);
      return;
    }
    this.st = 'waiting';
    this.schedule();
  }
}

/** raceAbort settles with p, or rejects as soon as signal aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
