// Hand-written fakes shared by the unit tests: a manual clock, media
// tracks, an event recorder and protobuf builders. No browser APIs.
import { ParticipantInfo, ParticipantInfo_State, TrackInfo, TrackSource, TrackType } from '@livekit/protocol';
import { Emitter } from '../src/events.js';
import type { Timers } from '../src/reconnect.js';
import type { RoomEvents } from '../src/types.js';

/** FakeClock runs timers when the test advances time. */
export class FakeClock implements Timers {
  now = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }

  /** Delays of the timers pending now, soonest first. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Moves time forward, running due timers in order, and lets promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await flush();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
    await flush();
  }
}

/** flush lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(() => r()));
}

declare function setImmediate(fn: () => void): unknown;

/** fakeTrack is a stand-in for a MediaStreamTrack. */
export function fakeTrack(id: string, kind: 'audio' | 'video' = 'video'): MediaStreamTrack {
  const t = {
    id,
    kind,
    enabled: true,
    stopped: false,
    stop() {
      t.stopped = true;
    },
    getSettings: () => (kind === 'video' ? { width: 1280, height: 720 } : {}),
    addEventListener() {},
  };
  return t as unknown as MediaStreamTrack;
}

/**
 * FakeSender is a stand-in for an RTCRtpSender: getParameters returns a
 * copy of its encodings with a fresh transactionId, setParameters (which
 * settles on the next turn, like the browser's) refuses a stale or reused
 * transactionId and records every accepted change.
 */
export class FakeSender {
  encodings: RTCRtpEncodingParameters[];
  /** The encodings' active flags after each accepted setParameters, e.g. "q+ h- f-". */
  readonly applied: string[] = [];
  private tx = 0;
  private issued = '';
  failNext = false;

  constructor(rids: string[] = ['q', 'h', 'f']) {
    this.encodings = rids.map((rid) => (rid ? { rid, active: true } : { active: true }));
  }

  getParameters(): RTCRtpSendParameters {
    this.issued = `tx${++this.tx}`;
    return { transactionId: this.issued, encodings: this.encodings.map((e) => ({ ...e })) } as unknown as RTCRtpSendParameters;
  }

  async setParameters(p: RTCRtpSendParameters): Promise<void> {
    await Promise.resolve();
    if (p.transactionId !== this.issued) throw new Error(`stale transactionId ${p.transactionId} (want ${this.issued})`);
    this.issued = '';
    if (this.failNext) {
      this.failNext = false;
      throw new Error('setParameters failed');
    }
    this.encodings = p.encodings.map((e) => ({ ...e }));
    this.applied.push(this.state());
  }

  /** The current active flags, e.g. "q+ h- f-". */
  state(): string {
    return this.encodings.map((e) => `${e.rid ?? '-'}${e.active === false ? '-' : '+'}`).join(' ');
  }

  asSender(): RTCRtpSender {
    return this as unknown as RTCRtpSender;
  }
}

/** fakeStream is a stand-in for a MediaStream. */
export function fakeStream(id: string): MediaStream {
  return { id } as unknown as MediaStream;
}

/** Recorder subscribes to every room event and writes one line per event. */
export class Recorder {
  readonly log: string[] = [];

  constructor(em: Emitter<RoomEvents>) {
    const name = (p: { identity?: string; sid?: string } | undefined) => p?.identity ?? '?';
    em.on('participantJoined', (p) => this.log.push(`joined ${p.identity}`));
    em.on('participantLeft', (p) => this.log.push(`left ${p.identity}`));
    em.on('trackPublished', (t, p) => this.log.push(`published ${p.identity} ${t.sid}`));
    em.on('trackUnpublished', (t, p) => this.log.push(`unpublished ${p.identity} ${t.sid}`));
    em.on('trackSubscribed', (_m, t, p) => this.log.push(`subscribed ${p.identity} ${t.sid}`));
    em.on('trackUnsubscribed', (_m, t, p) => this.log.push(`unsubscribed ${p.identity} ${t.sid}`));
    em.on('trackStreamStateChanged', (t, st, p) => this.log.push(`stream ${p.identity} ${t.sid} ${st}`));
    em.on('trackMuted', (t, p) => this.log.push(`muted ${name(p)} ${t.sid}`));
    em.on('trackUnmuted', (t, p) => this.log.push(`unmuted ${name(p)} ${t.sid}`));
    em.on('activeSpeakersChanged', (s) => this.log.push(`speakers [${s.map((p) => p.identity).join(',')}]`));
    em.on('connectionQualityChanged', (q, p) => this.log.push(`quality ${p.identity} ${q}`));
    em.on('connectionStateChanged', (s) => this.log.push(`state ${s}`));
    em.on('reconnecting', () => this.log.push('reconnecting'));
    em.on('reconnected', () => this.log.push('reconnected'));
    em.on('disconnected', (r) => this.log.push(`disconnected ${r}`));
    em.on('localTrackPublished', (t) => this.log.push(`local published ${t.sid}`));
    em.on('localTrackUnpublished', (t) => this.log.push(`local unpublished ${t.sid}`));
    em.on('dataReceived', (d, topic, from, kind) =>
      this.log.push(`data ${new TextDecoder().decode(d)} ${topic ?? '-'} ${from?.identity ?? 'server'} ${kind}`),
    );
  }

  /** Returns the events logged so far and forgets them. */
  take(): string[] {
    return this.log.splice(0);
  }
}

/** track builds a TrackInfo. */
export function track(sid: string, opts: { kind?: 'audio' | 'video'; muted?: boolean; source?: TrackSource } = {}): TrackInfo {
  const kind = opts.kind ?? 'video';
  return new TrackInfo({
    sid,
    type: kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO,
    source: opts.source ?? (kind === 'audio' ? TrackSource.MICROPHONE : TrackSource.CAMERA),
    muted: opts.muted ?? false,
  });
}

/** participant builds a ParticipantInfo. */
export function participant(
  sid: string,
  identity: string,
  version: number,
  tracks: TrackInfo[] = [],
  state: ParticipantInfo_State = ParticipantInfo_State.ACTIVE,
): ParticipantInfo {
  return new ParticipantInfo({ sid, identity, name: identity, version, tracks, state });
}
