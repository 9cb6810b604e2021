import {
  DisconnectReason,
  JoinResponse,
  LeaveRequest_Action,
  ParticipantTracks,
  SignalResponse,
  UpdateSubscription,
  UpdateTrackSettings,
} from '@livekit/protocol';
import type { ReceivedData } from './data.js';
import type { VideoCodec } from './encodings.js';
import { Emitter } from './events.js';
import { LocalParticipant } from './local.js';
import type { Participant, RemoteParticipant } from './participant.js';
import { Reconnector, realTimers, type ReconnectParams, type Timers } from './reconnect.js';
import { browserSessionFactory, type RoomSession, type SessionFactory, type SessionHandlers } from './session.js';
import { signalURL } from './signal.js';
import { RoomState } from './state.js';
import { qualityToProto, type RemoteTrackControl, type RemoteTrackSettings } from './tracks.js';
import type { ConnectionState, RoomEvents } from './types.js';

/** The SDK's version, sent to the server when joining. */
export const sdkVersion = '0.1.0';

/** Options of connect(). */
export interface ConnectOptions {
  /** Receive every track automatically (default true). */
  autoSubscribe?: boolean;
  /** Default video codec of published tracks (default vp8). */
  videoCodec?: VideoCodec;
  /** Reconnect settings, or false to give up at the first drop. */
  reconnect?: Pick<ReconnectParams, 'maxAttempts' | 'backoff' | 'attemptTimeoutMs'> | false;
  /** How long the first join may take (default 15 s). */
  connectTimeoutMs?: number;
  /** Extra peer connection settings (e.g. ICE servers). */
  rtcConfig?: RTCConfiguration;
  /** Opens sessions; tests inject fakes (default: WebSocket + RTCPeerConnection). */
  sessionFactory?: SessionFactory;
  /** The clock; tests inject fakes. */
  timers?: Timers;
}

/** Room is a connection to one room: participants, tracks, events. */
export class Room extends Emitter<RoomEvents> {
  /** The room's name. */
  name = '';
  /** The room's sid (RM_...). */
  sid = '';
  /** The room's metadata. */
  metadata = '';
  /** The server's version string. */
  serverVersion = '';
  /** Us. */
  readonly localParticipant: LocalParticipant;
  /** The connection state. */
  state: ConnectionState = 'disconnected';

  private readonly participants: RoomState;
  private readonly reconnector: Reconnector | undefined;
  private readonly factory: SessionFactory;
  private session: RoomSession | undefined;
  private current: object | undefined; // identifies the session attempt whose events count
  private token: string;
  private speakers: Participant[] = [];

  /** Creates a room; call connect() (or use the connect function). */
  constructor(
    private readonly url: string,
    token: string,
    private readonly opts: ConnectOptions = {},
  ) {
    super();
    this.token = token;
    this.factory = opts.sessionFactory ?? browserSessionFactory({ rtcConfig: opts.rtcConfig });
    const control: RemoteTrackControl = {
      setSubscribed: (sid, subscribed) => this.sendSubscription(sid, subscribed),
      updateSettings: (sid, s) => this.sendSettings(sid, s),
    };
    this.localParticipant = new LocalParticipant('', {
      session: () => this.session,
      events: this,
      defaultCodec: opts.videoCodec ?? 'vp8',
    });
    this.participants = new RoomState(this.localParticipant, control, this);
    this.on('activeSpeakersChanged', (s) => (this.speakers = s));
    if (opts.reconnect !== false) {
      this.reconnector = new Reconnector({
        ...opts.reconnect,
        timers: opts.timers ?? realTimers,
        rejoin: (_attempt, signal) => this.rejoin(signal),
        onReconnecting: () => {
          this.setState('reconnecting');
          this.emit('reconnecting');
        },
        onReconnected: () => {
          this.setState('connected');
          this.emit('reconnected');
        },
        onAttemptFailed: (n, err) => console.warn(`fanout: rejoin attempt ${n + 1} failed`, err),
        onGiveUp: (err) => this.disconnect(`reconnect failed: ${err instanceof Error ? err.message : String(err)}`),
      });
    }
  }

  /** Remote participants by identity. */
  get remoteParticipants(): ReadonlyMap<string, RemoteParticipant> {
    return this.participants.participants;
  }

  /** The current active speakers, loudest first. */
  get activeSpeakers(): readonly Participant[] {
    return this.speakers;
  }

  /** Joins the room; rejects when the join fails. */
  async connect(): Promise<void> {
    if (this.state !== 'disconnected') throw new Error(`cannot connect: room is ${this.state}`);
    this.setState('connecting');
    const timers = this.opts.timers ?? realTimers;
    const ctl = new AbortController();
    const t = timers.setTimeout(() => ctl.abort(new Error('join timed out')), this.opts.connectTimeoutMs ?? 15000);
    try {
      await this.open(ctl.signal);
    } catch (err) {
      this.current = undefined;
      this.setState('disconnected');
      throw err;
    } finally {
      timers.clearTimeout(t);
    }
    this.reconnector?.connected();
    this.setState('connected');
  }

  /** Leaves the room: tells the server, stops local tracks, emits disconnected. */
  async leave(): Promise<void> {
    this.disconnect('client left', true);
  }

  private async open(signal: AbortSignal): Promise<RoomSession> {
    const attempt = {};
    this.current = attempt;
    const url = signalURL(this.url, this.token, {
      auto_subscribe: this.opts.autoSubscribe === false ? '0' : '1',
      sdk: 'js',
      version: sdkVersion,
      protocol: '16',
    });
    const session = await this.factory(url, this.handlers(attempt), signal);
    if (this.current !== attempt || signal.aborted) {
      session.close(true);
      throw new Error('join abandoned');
    }
    this.session = session;
    return session;
  }

  private async rejoin(signal: AbortSignal): Promise<void> {
    const session = await this.open(signal);
    await this.localParticipant.republish(session);
    if (this.session !== session || signal.aborted) throw new Error('rejoin abandoned');
    this.restoreChoices();
  }

  private handlers(attempt: object): SessionHandlers {
    const live = () => this.current === attempt;
    return {
      onJoin: (join) => live() && this.onJoin(join),
      onSignal: (msg) => live() && this.onSignal(msg),
      onTrack: (track, streamId, receiver, sid) => live() && this.participants.attachTrack(track, streamId, receiver, sid),
      onTrackEnded: (sid, track) => live() && this.participants.detachTrack(sid, track),
      onData: (d) => live() && this.onData(d),
      onDrop: (reason) => live() && this.onDrop(reason),
    };
  }

  private onJoin(join: JoinResponse): void {
    this.name = join.room?.name ?? this.name;
    this.sid = join.room?.sid ?? this.sid;
    this.metadata = join.room?.metadata ?? this.metadata;
    this.serverVersion = join.serverVersion;
    const me = join.participant;
    if (me) {
      this.localParticipant.sid = me.sid;
      this.localParticipant.identity = me.identity;
      this.localParticipant.name = me.name;
      this.localParticipant.metadata = me.metadata;
    }
    this.participants.applyJoin(join.otherParticipants);
  }

  private onSignal(msg: SignalResponse): void {
    const m = msg.message;
    switch (m.case) {
      case 'update':
        this.participants.applyUpdate(m.value.participants);
        break;
      case 'speakersChanged':
        this.participants.applySpeakers(m.value.speakers);
        break;
      case 'connectionQuality':
        this.participants.applyQuality(m.value.updates);
        break;
      case 'streamStateUpdate':
        this.participants.applyStreamStates(m.value.streamStates);
        break;
      case 'subscribedQualityUpdate':
        void this.localParticipant.applySubscribedQualities(m.value);
        break;
      case 'roomUpdate':
        if (m.value.room) this.metadata = m.value.room.metadata;
        break;
      case 'refreshToken':
        this.token = m.value;
        break;
      case 'mute': {
        const pub = this.localParticipant.publications.find((p) => p.sid === m.value.sid);
        if (pub) void this.localParticipant.setTrackMuted(pub, m.value.muted);
        break;
      }
      case 'trackUnpublished': {
        const pub = this.localParticipant.publications.find((p) => p.sid === m.value.trackSid);
        if (pub && pub.sender) void this.localParticipant.unpublishTrack(pub, false);
        break;
      }
      case 'leave':
        if (m.value.action === LeaveRequest_Action.DISCONNECT) {
          this.disconnect(`server: ${DisconnectReason[m.value.reason] ?? m.value.reason}`);
        } else {
          this.onDrop('server asked to reconnect');
        }
        break;
      case 'requestResponse':
        if (m.value.reason !== 0) console.warn('fanout: request refused:', m.value.message);
        break;
    }
  }

  private onData(d: ReceivedData): void {
    const sender =
      this.participants.participantBySid(d.senderSid) ??
      (d.senderIdentity ? this.participants.participants.get(d.senderIdentity) : undefined);
    this.emit('dataReceived', d.payload, d.topic, sender, d.kind);
  }

  private onDrop(reason: string): void {
    const s = this.session;
    this.session = undefined;
    this.current = undefined;
    s?.close(false);
    if (!this.reconnector) {
      this.disconnect(reason);
      return;
    }
    this.reconnector.drop(reason); // emits reconnecting first
    this.participants.detachAll(); // the media came over the closed connection
    this.participants.clearSpeakers();
  }

  private disconnect(reason: string, sendLeave = false): void {
    if (this.state === 'disconnected') return;
    this.reconnector?.leave();
    const s = this.session;
    this.session = undefined;
    this.current = undefined;
    s?.close(sendLeave);
    this.localParticipant.stopAll();
    this.participants.clear();
    this.setState('disconnected');
    this.emit('disconnected', reason);
  }

  private setState(s: ConnectionState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit('connectionStateChanged', s);
  }

  private sendSubscription(trackSid: string, subscribe: boolean): void {
    const owner = [...this.participants.participants.values()].find((p) => p.trackPublications.has(trackSid));
    this.session?.send({
      case: 'subscription',
      value: new UpdateSubscription({
        trackSids: [trackSid],
        subscribe,
        participantTracks: owner ? [new ParticipantTracks({ participantSid: owner.sid, trackSids: [trackSid] })] : [],
      }),
    });
  }

  /** Sends a trackSetting; it always carries a quality (a missing one reads as LOW). */
  private sendSettings(trackSid: string, s: RemoteTrackSettings): void {
    this.session?.send({
      case: 'trackSetting',
      value: new UpdateTrackSettings({
        trackSids: [trackSid],
        disabled: s.disabled,
        quality: qualityToProto(s.quality),
        width: s.width,
        height: s.height,
      }),
    });
  }

  /** Sends again, after a rejoin, the subscription choices and settings made before. */
  private restoreChoices(): void {
    for (const p of this.participants.participants.values()) {
      for (const pub of p.trackPublications.values()) {
        if (!pub.wanted) this.sendSubscription(pub.sid, false);
        const s = pub.requestedSettings;
        if (s.disabled || s.quality !== 'high' || s.width || s.height) this.sendSettings(pub.sid, s);
      }
    }
  }
}

/** connect joins a room at url (ws:// or wss://) with an access token. */
export async function connect(url: string, token: string, options: ConnectOptions = {}): Promise<Room> {
  const room = new Room(url, token, options);
  await room.connect();
  return room;
}
