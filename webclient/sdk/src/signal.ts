import { JoinResponse, SignalRequest, SignalResponse } from '@livekit/protocol';
import { realTimers, type Timers } from './reconnect.js';

/** SocketLike is the part of the browser's WebSocket the signal channel uses. */
export interface SocketLike {
  binaryType: string;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** SocketFactory opens a WebSocket to a URL. */
export type SocketFactory = (url: string) => SocketLike;

/** The browser's WebSocket. */
export const browserSocket: SocketFactory = (url) => new WebSocket(url) as unknown as SocketLike;

/** A request body: one case of SignalRequest's oneof. */
export type SignalMessage = SignalRequest['message'];

/** JoinError is a join the server refused, or a connection that never came up. */
export class JoinError extends Error {
  /** Creates the error; leave is set when the server answered with a Leave. */
  constructor(
    message: string,
    readonly leave?: SignalResponse['message'] & { case: 'leave' },
  ) {
    super(message);
    this.name = 'JoinError';
  }
}

/**
 * SignalChannel is one WebSocket to /rtc: protobuf frames both ways, the
 * join response first, pings to notice a dead connection.
 */
export class SignalChannel {
  /** Called for every message after the join response (see setHandler). */
  private onMessage: ((msg: SignalResponse) => void) | undefined;
  private backlog: SignalResponse[] = [];
  /** Called once when the connection is lost after the join (not after close()). */
  onClose: (reason: string) => void = () => {};

  private socket: SocketLike | undefined;
  private joined = false;
  private closed = false;
  private lastHeard = 0;
  private pingTimer: unknown;

  /** Creates a channel; nothing happens until connect. */
  constructor(
    private readonly url: string,
    private readonly factory: SocketFactory = browserSocket,
    private readonly timers: Timers = realTimers,
    private readonly now: () => number = Date.now,
  ) {}

  /** Opens the WebSocket and resolves with the server's join response. */
  connect(signal?: AbortSignal): Promise<JoinResponse> {
    return new Promise<JoinResponse>((resolve, reject) => {
      let ws: SocketLike;
      try {
        ws = this.factory(this.url);
      } catch (err) {
        reject(new JoinError(`cannot open signal connection: ${String(err)}`));
        return;
      }
      this.socket = ws;
      ws.binaryType = 'arraybuffer';
      const fail = (err: JoinError) => {
        if (this.joined) return;
        this.close();
        reject(err);
      };
      signal?.addEventListener('abort', () => fail(new JoinError('join aborted')), { once: true });
      ws.onmessage = (ev) => {
        const msg = decode(ev.data);
        if (!msg || this.closed) return;
        this.lastHeard = this.now();
        if (this.joined) {
          if (this.onMessage) this.onMessage(msg);
          else this.backlog.push(msg);
          return;
        }
        if (msg.message.case === 'join') {
          this.joined = true;
          resolve(msg.message.value);
        } else if (msg.message.case === 'leave') {
          fail(new JoinError('server refused the join with a leave', msg.message));
        }
      };
      ws.onclose = (ev) => {
        if (!this.joined) {
          fail(new JoinError(`signal connection closed before join (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`));
          return;
        }
        this.lost(`signal connection closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
      };
      ws.onerror = () => {
        if (!this.joined) fail(new JoinError('signal connection failed'));
      };
    });
  }

  /**
   * Sets the handler of the messages after the join response; messages
   * that arrived before it was set are handed to it first.
   */
  setHandler(fn: (msg: SignalResponse) => void): void {
    this.onMessage = fn;
    const backlog = this.backlog;
    this.backlog = [];
    for (const m of backlog) fn(m);
  }

  /** Sends one request; false when the connection is not open. */
  send(message: SignalMessage): boolean {
    if (!this.socket || this.closed) return false;
    try {
      this.socket.send(new SignalRequest({ message }).toBinary());
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Pings every intervalSec; when nothing was heard for timeoutSec the
   * connection counts as lost.
   */
  startPing(intervalSec: number, timeoutSec: number): void {
    if (intervalSec <= 0) return;
    const interval = intervalSec * 1000;
    const timeout = (timeoutSec > 0 ? timeoutSec : intervalSec * 3) * 1000;
    this.lastHeard = this.now();
    const tick = () => {
      if (this.closed) return;
      if (this.now() - this.lastHeard > timeout) {
        this.lost('signal ping timeout');
        return;
      }
      this.send({ case: 'ping', value: BigInt(this.now()) });
      this.pingTimer = this.timers.setTimeout(tick, interval);
    };
    this.pingTimer = this.timers.setTimeout(tick, interval);
  }

  private lost(reason: string): void {
    if (this.closed) return;
    this.close();
    this.onClose(reason);
  }

  /** Closes the WebSocket; no onClose follows. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pingTimer !== undefined) this.timers.clearTimeout(this.pingTimer);
    const ws = this.socket;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
    try {
      ws.close(1000, 'client closed');
    } catch {
      // already closed
    }
  }
}

function decode(data: unknown): SignalResponse | undefined {
  try {
    if (data instanceof ArrayBuffer) return SignalResponse.fromBinary(new Uint8Array(data));
    if (data instanceof Uint8Array) return SignalResponse.fromBinary(data);
    if (typeof data === 'string') return SignalResponse.fromJsonString(data, { ignoreUnknownFields: true });
  } catch (err) {
    console.warn('fanout: undecodable signal message', err);
  }
  return undefined;
}

/** signalURL builds the /rtc URL for a server URL (ws://, wss://, http:// or https://). */
export function signalURL(serverURL: string, token: string, params: Record<string, string>): string {
  const u = new URL(serverURL.replace(/^http/, 'ws'));
  u.pathname = u.pathname.replace(/\/+$/, '') + '/rtc';
  u.searchParams.set('access_token', token);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/** validateURL turns a /rtc URL into the /rtc/validate URL that explains a refused join. */
export function validateURL(rtcURL: string): string {
  const u = new URL(rtcURL);
  u.protocol = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:';
  u.pathname = u.pathname.replace(/\/+$/, '') + '/validate';
  return u.toString();
}

/**
 * explainJoinFailure asks /rtc/validate why a WebSocket join failed (a
 * browser WebSocket hides the HTTP status); it returns a better error, or
 * the original one when the server has nothing to add.
 */
export async function explainJoinFailure(rtcURL: string, err: unknown): Promise<unknown> {
  if (!(err instanceof JoinError) || err.leave || typeof fetch !== 'function') return err;
  try {
    const res = await fetch(validateURL(rtcURL), { cache: 'no-store' });
    if (res.ok) return err;
    const text = (await res.text()).trim();
    return new JoinError(`join refused (HTTP ${res.status})${text ? `: ${text}` : ''}`);
  } catch {
    return err;
  }
}
