import {
  AddTrackRequest,
  DisconnectReason,
  JoinResponse,
  LeaveRequest,
  LeaveRequest_Action,
  SessionDescription,
  SignalResponse,
  SignalTarget,
  TrackInfo,
  TrickleRequest,
} from '@livekit/protocol';
import { decodeUserData, type ReceivedData } from './data.js';
import { sortCodecs, type VideoCodec } from './encodings.js';
import { PCTransport } from './pctransport.js';
import { SignalChannel, explainJoinFailure, type SignalMessage, type SocketFactory } from './signal.js';
import type { DataKind } from './types.js';

/** How long addTrack waits for trackPublished. */
const addTrackTimeoutMs = 10000;
/** How long sendData waits for the publisher's data channel to open. */
const dataOpenTimeoutMs = 15000;

/** What a session reports to its room. */
export interface SessionHandlers {
  /** The join response arrived (called before any later message). */
  onJoin(join: JoinResponse): void;
  /** A signal message the session did not consume itself. */
  onSignal(msg: SignalResponse): void;
  /** Media arrived on the subscriber connection. */
  onTrack(track: MediaStreamTrack, streamId: string, receiver: RTCRtpReceiver | undefined, trackSid: string | undefined): void;
  /** Media stopped arriving. */
  onTrackEnded(trackSid: string, track: MediaStreamTrack): void;
  /** A user data message arrived. */
  onData(data: ReceivedData): void;
  /** The session is broken (WebSocket closed, ICE failed). */
  onDrop(reason: string): void;
}

/** How a local track goes onto the publisher connection. */
export interface PublishTrackOptions {
  /** The stream the track belongs to (its id becomes the msid). */
  stream: MediaStream;
  /** Send encodings (simulcast layers), if any. */
  encodings?: RTCRtpEncodingParameters[];
  /** Preferred video codec. */
  codec?: VideoCodec;
}

/** RoomSession is one join: a signal connection and two peer connections. */
export interface RoomSession {
  /** The server's join response. */
  readonly join: JoinResponse;
  /** Sends a signal request. */
  send(m: SignalMessage): boolean;
  /** Announces a track and resolves with the server's TrackInfo. */
  addTrack(req: AddTrackRequest): Promise<TrackInfo>;
  /** Adds a track to the publisher connection (negotiate afterwards). */
  publishTrack(track: MediaStreamTrack, opts: PublishTrackOptions): RTCRtpSender;
  /** Removes a track from the publisher connection (negotiate afterwards). */
  unpublishTrack(sender: RTCRtpSender): void;
  /** Negotiates the publisher connection. */
  negotiate(): Promise<void>;
  /** Sends a data message on the reliable or lossy channel. */
  sendData(bytes: Uint8Array, kind: DataKind): Promise<void>;
  /** Ends the session, telling the server when leave is true. */
  close(leave: boolean): void;
}

/** Opens a session; the room calls it for the first join and each rejoin. */
export type SessionFactory = (url: string, handlers: SessionHandlers, signal: AbortSignal) => Promise<RoomSession>;

/** Options of the browser session. */
export interface BrowserSessionOptions {
  /** Opens the WebSocket (tests inject fakes). */
  socketFactory?: SocketFactory;
  /** Creates peer connections (tests inject fakes). */
  pcFactory?: (c: RTCConfiguration) => RTCPeerConnection;
  /** Extra peer connection settings. */
  rtcConfig?: RTCConfiguration;
}

/** browserSessionFactory opens real sessions over WebSocket and RTCPeerConnection. */
export function browserSessionFactory(opts: BrowserSessionOptions = {}): SessionFactory {
  return async (url, handlers, signal) => {
    const sig = new SignalChannel(url, opts.socketFactory);
    let join: JoinResponse;
    try {
      join = await sig.connect(signal);
    } catch (err) {
      throw await explainJoinFailure(url, err);
    }
    handlers.onJoin(join);
    const s = new Session(join, sig, handlers, opts);
    try {
      await s.waitConnected(signal);
    } catch (err) {
      s.close(true);
      throw err;
    }
    return s;
  };
}

interface AddTrackWaiter {
  resolve: (t: TrackInfo) => void;
  reject: (e: Error) => void;
}

/** Session is the browser implementation of RoomSession. */
class Session implements RoomSession {
  private readonly publisher: PCTransport;
  private readonly subscriber: PCTransport;
  private readonly reliable: RTCDataChannel;
  private readonly lossy: RTCDataChannel;
  private readonly adds = new Map<string, AddTrackWaiter>();
  private midToTrack: Record<string, string> = {};
  private closed = false;
  private dropped = false;
  private dropHook: ((reason: string) => void) | undefined;

  constructor(
    readonly join: JoinResponse,
    private readonly sig: SignalChannel,
    private readonly h: SessionHandlers,
    opts: BrowserSessionOptions,
  ) {
    const config: RTCConfiguration = {
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      ...opts.rtcConfig,
      iceServers: [
        ...(opts.rtcConfig?.iceServers ?? []),
        ...join.iceServers.map((s) => ({ urls: s.urls, username: s.username || undefined, credential: s.credential || undefined })),
      ],
    };
    this.publisher = new PCTransport('publisher', config, opts.pcFactory);
    this.subscriber = new PCTransport('subscriber', config, opts.pcFactory);
    this.reliable = this.publisher.pc.createDataChannel('_reliable', { ordered: true });
    this.lossy = this.publisher.pc.createDataChannel('_lossy', { ordered: false, maxRetransmits: 0 });
    for (const [t, target] of [
      [this.publisher, SignalTarget.PUBLISHER],
      [this.subscriber, SignalTarget.SUBSCRIBER],
    ] as const) {
      t.onCandidate = (c) => this.send({ case: 'trickle', value: new TrickleRequest({ candidateInit: JSON.stringify(c), target }) });
      t.onFailed = (reason) => this.drop(reason);
    }
    this.subscriber.pc.ontrack = (ev) => this.onTrack(ev);
    this.subscriber.pc.ondatachannel = (ev) => {
      const dc = ev.channel;
      dc.binaryType = 'arraybuffer';
      dc.onmessage = (m) => {
        const bytes = m.data instanceof ArrayBuffer ? new Uint8Array(m.data) : undefined;
        const data = bytes && decodeUserData(bytes, dc.label);
        if (data) this.h.onData(data);
      };
    };
    sig.onClose = (reason) => this.drop(reason);
    sig.setHandler((m) => this.onSignal(m));
    sig.startPing(join.pingInterval, join.pingTimeout);
  }

  /** Resolves once the subscriber connection (which the server offers at once) is up. */
  waitConnected(signal: AbortSignal): Promise<void> {
    const pc = this.subscriber.pc;
    if (pc.connectionState === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const prev = this.subscriber.onState;
      const done = (err?: Error) => {
        this.subscriber.onState = prev;
        this.dropHook = undefined;
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => done(signal.reason instanceof Error ? signal.reason : new Error('join aborted'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.dropHook = (reason) => done(new Error(reason));
      this.subscriber.onState = (s) => {
        prev(s);
        if (s === 'connected') done();
        else if (s === 'failed' || s === 'closed') done(new Error(`subscriber connection ${s}`));
      };
    });
  }

  send(m: SignalMessage): boolean {
    return this.sig.send(m);
  }

  private onSignal(msg: SignalResponse): void {
    const m = msg.message;
    switch (m.case) {
      case 'offer':
        this.midToTrack = { ...this.midToTrack, ...m.value.midToTrackId };
        this.subscriber
          .answer(m.value.sdp)
          .then((a) =>
            this.send({ case: 'answer', value: new SessionDescription({ type: 'answer', sdp: a.sdp ?? '', id: m.value.id }) }),
          )
          .catch((err) => console.warn('fanout: answering subscriber offer', err));
        return;
      case 'answer':
        this.publisher.answerReceived(m.value.sdp, m.value.id);
        return;
      case 'trickle': {
        let init: RTCIceCandidateInit;
        try {
          init = JSON.parse(m.value.candidateInit) as RTCIceCandidateInit;
        } catch {
          return;
        }
        (m.value.target === SignalTarget.SUBSCRIBER ? this.subscriber : this.publisher).addCandidate(init);
        return;
      }
      case 'trackPublished': {
        const w = this.adds.get(m.value.cid);
        if (w && m.value.track) {
          this.adds.delete(m.value.cid);
          w.resolve(m.value.track);
        }
        break;
      }
      case 'requestResponse': {
        const req = m.value.request;
        if (req.case === 'addTrack') {
          const w = this.adds.get(req.value.cid);
          this.adds.delete(req.value.cid);
          w?.reject(new Error(`addTrack refused: ${m.value.message}`));
        }
        break;
      }
      case 'pong':
      case 'pongResp':
        return;
    }
    this.h.onSignal(msg);
  }

  private onTrack(ev: RTCTrackEvent): void {
    const stream = ev.streams[0];
    const mid = ev.transceiver?.mid ?? '';
    const sid = (mid && this.midToTrack[mid]) || ev.track.id;
    const track = ev.track;
    const ended = () => this.h.onTrackEnded(sid, track);
    track.addEventListener('ended', ended, { once: true });
    stream?.addEventListener('removetrack', (e) => {
      if (e.track === track) ended();
    });
    this.h.onTrack(track, stream?.id ?? '', ev.receiver, sid);
  }

  addTrack(req: AddTrackRequest): Promise<TrackInfo> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.adds.delete(req.cid);
        reject(new Error(`addTrack ${req.cid}: no answer from the server`));
      }, addTrackTimeoutMs);
      this.adds.set(req.cid, {
        resolve: (info) => (clearTimeout(t), resolve(info)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      if (!this.send({ case: 'addTrack', value: req })) {
        this.adds.get(req.cid)?.reject(new Error('signal connection closed'));
        this.adds.delete(req.cid);
      }
    });
  }

  publishTrack(track: MediaStreamTrack, opts: PublishTrackOptions): RTCRtpSender {
    const tr = this.publisher.pc.addTransceiver(track, {
      direction: 'sendonly',
      streams: [opts.stream],
      sendEncodings: opts.encodings,
    });
    if (opts.codec && track.kind === 'video') setCodec(tr, opts.codec);
    return tr.sender;
  }

  unpublishTrack(sender: RTCRtpSender): void {
    try {
      this.publisher.pc.removeTrack(sender);
    } catch {
      // the connection is closed
    }
  }

  negotiate(): Promise<void> {
    return this.publisher.negotiate((sdp, id) =>
      this.send({ case: 'offer', value: new SessionDescription({ type: 'offer', sdp, id }) }),
    );
  }

  async sendData(bytes: Uint8Array, kind: DataKind): Promise<void> {
    const dc = kind === 'lossy' ? this.lossy : this.reliable;
    if (dc.readyState !== 'open') {
      if (!this.publisher.negotiated) void this.negotiate().catch(() => undefined);
      await waitOpen(dc, dataOpenTimeoutMs);
    }
    dc.send(bytes as Uint8Array<ArrayBuffer>);
  }

  private drop(reason: string): void {
    if (this.closed || this.dropped) return;
    this.dropped = true;
    this.dropHook?.(reason);
    this.h.onDrop(reason);
  }

  close(leave: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (leave) {
      this.send({
        case: 'leave',
        value: new LeaveRequest({ reason: DisconnectReason.CLIENT_INITIATED, action: LeaveRequest_Action.DISCONNECT }),
      });
    }
    for (const w of this.adds.values()) w.reject(new Error('session closed'));
    this.adds.clear();
    this.sig.close();
    this.publisher.close();
    this.subscriber.close();
  }
}

/** setCodec puts the preferred codec first on a video transceiver. */
function setCodec(tr: RTCRtpTransceiver, codec: VideoCodec): void {
  const lists = [RTCRtpSender.getCapabilities?.('video')?.codecs, RTCRtpReceiver.getCapabilities?.('video')?.codecs];
  for (const codecs of lists) {
    if (!codecs) continue;
    try {
      tr.setCodecPreferences(sortCodecs(codecs, codec));
      return;
    } catch {
      // try the other capability list
    }
  }
  console.warn(`fanout: cannot prefer codec ${codec}`);
}

function waitOpen(dc: RTCDataChannel, timeoutMs: number): Promise<void> {
  if (dc.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`data channel ${dc.label} did not open`)), timeoutMs);
    dc.addEventListener(
      'open',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
    dc.addEventListener(
      'close',
      () => {
        clearTimeout(t);
        reject(new Error(`data channel ${dc.label} closed`));
      },
      { once: true },
    );
  });
}
