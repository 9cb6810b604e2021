import { AddTrackRequest, MuteTrackRequest, SubscribedQualityUpdate, TrackInfo, TrackType } from '@livekit/protocol';
import { encodeUserData, type SendDataOptions } from './data.js';
import {
  layersToProto,
  planSimulcast,
  planSingle,
  setLayersActive,
  wantedQualities,
  type PlannedLayer,
  type VideoCodec,
} from './encodings.js';
import type { Emitter } from './events.js';
import { Participant } from './participant.js';
import type { RoomSession } from './session.js';
import { TrackPublication, qualityFromProto, sourceToProto, type TrackSource, type VideoQuality } from './tracks.js';
import type { RoomEvents } from './types.js';

/** How a local track is published. */
export interface PublishOptions {
  /** The track's name (default: its source). */
  name?: string;
  /** What the track is (default: camera for video, microphone for audio). */
  source?: TrackSource;
  /** Send q/h/f simulcast layers (default: true for camera, false otherwise). */
  simulcast?: boolean;
  /** Preferred video codec (default: the room's, VP8 unless set in connect()). */
  codec?: VideoCodec;
  /** The stream to send the track in (default: a new one holding just the track). */
  stream?: MediaStream;
}

/** LocalTrackPublication is one of our own tracks. */
export class LocalTrackPublication extends TrackPublication {
  /** The track being sent. */
  declare track: MediaStreamTrack;
  /** The sender on the current publisher connection (for getStats). */
  sender: RTCRtpSender | undefined;
  /** The stream the track is sent in. */
  readonly stream: MediaStream;
  /** The planned encodings (simulcast layers). */
  planned: PlannedLayer[] = [];
  /**
   * The qualities the server last asked to be encoded (dynacast), lowest
   * first; undefined until it says. Layers nobody receives are turned off.
   */
  subscribedQualities: VideoQuality[] | undefined;
  /** Serializes the sender parameter changes of this publication. */
  layerChanges: Promise<void> = Promise.resolve();

  /** Creates a publication that is not yet accepted by the server (sid ""). */
  constructor(
    track: MediaStreamTrack,
    readonly options: Required<Pick<PublishOptions, 'source' | 'simulcast' | 'codec'>> & PublishOptions,
  ) {
    super(new TrackInfo({ type: track.kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO, source: sourceToProto(options.source) }));
    this.track = track;
    this.stream = options.stream ?? new MediaStream([track]);
    this.name = options.name ?? options.source;
  }
}

/** What the local participant needs from its room. */
export interface LocalContext {
  /** The current session, or undefined while (re)connecting. */
  session(): RoomSession | undefined;
  /** The room's event emitter. */
  readonly events: Emitter<RoomEvents>;
  /** The room's default video codec. */
  readonly defaultCodec: VideoCodec;
}

/** LocalParticipant is us: what we publish, mute and send. */
export class LocalParticipant extends Participant {
  /** Our publications by track id (the MediaStreamTrack's id, stable across rejoins). */
  private readonly local = new Map<string, LocalTrackPublication>();

  /** Creates the local participant of a room. */
  constructor(
    identity: string,
    private readonly ctx: LocalContext,
  ) {
    super('', identity);
  }

  /** Our publications. */
  get publications(): LocalTrackPublication[] {
    return [...this.local.values()];
  }

  /** Turns the camera on (capturing and publishing it the first time) or mutes it. */
  async setCameraEnabled(enabled: boolean, opts: PublishOptions & { constraints?: MediaTrackConstraints } = {}): Promise<void> {
    await this.setSourceEnabled('camera', enabled, async () => {
      const ms = await navigator.mediaDevices.getUserMedia({
        video: opts.constraints ?? { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      });
      return ms.getVideoTracks()[0];
    }, opts);
  }

  /** Turns the microphone on (capturing and publishing it the first time) or mutes it. */
  async setMicrophoneEnabled(enabled: boolean, opts: PublishOptions & { constraints?: MediaTrackConstraints } = {}): Promise<void> {
    await this.setSourceEnabled('microphone', enabled, async () => {
      const ms = await navigator.mediaDevices.getUserMedia({
        audio: opts.constraints ?? { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      return ms.getAudioTracks()[0];
    }, opts);
  }

  /** Starts sharing the screen, or stops (unpublishes) the share. */
  async setScreenShareEnabled(enabled: boolean, opts: PublishOptions = {}): Promise<void> {
    const current = this.findBySource('screen_share');
    if (!enabled) {
      if (current) await this.unpublishTrack(current);
      return;
    }
    if (current) return;
    const ms = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = ms.getVideoTracks()[0];
    if (!track) throw new Error('no screen track');
    track.contentHint = 'detail';
    const pub = await this.publishTrack(track, { ...opts, source: 'screen_share' });
    track.addEventListener('ended', () => void this.unpublishTrack(pub), { once: true });
  }

  private async setSourceEnabled(
    source: TrackSource,
    enabled: boolean,
    capture: () => Promise<MediaStreamTrack | undefined>,
    opts: PublishOptions,
  ): Promise<void> {
    const current = this.findBySource(source);
    if (current) {
      await this.setTrackMuted(current, !enabled);
      return;
    }
    if (!enabled) return;
    const track = await capture();
    if (!track) throw new Error(`no ${source} track`);
    await this.publishTrack(track, { ...opts, source });
  }

  /** The publication of a source, if published. */
  findBySource(source: TrackSource): LocalTrackPublication | undefined {
    for (const p of this.local.values()) if (p.source === source) return p;
    return undefined;
  }

  /** Publishes a track; resolves once the server accepted it and the connection is negotiated. */
  async publishTrack(track: MediaStreamTrack, opts: PublishOptions = {}): Promise<LocalTrackPublication> {
    const source = opts.source ?? (track.kind === 'audio' ? 'microphone' : 'camera');
    const pub = new LocalTrackPublication(track, {
      ...opts,
      source,
      simulcast: opts.simulcast ?? source === 'camera',
      codec: opts.codec ?? this.ctx.defaultCodec,
    });
    this.local.set(track.id, pub);
    const session = this.ctx.session();
    if (!session) return pub; // published when the room is connected again
    try {
      await this.publishOn(session, pub);
    } catch (err) {
      this.local.delete(track.id);
      throw err;
    }
    return pub;
  }

  /** Publishes one publication on a session (first time or after a rejoin). */
  private async publishOn(session: RoomSession, pub: LocalTrackPublication): Promise<void> {
    const track = pub.track;
    const settings = track.getSettings();
    const width = settings.width ?? 0;
    const height = settings.height ?? 0;
    if (pub.kind === 'video') {
      pub.planned = pub.options.simulcast && width > 0 ? planSimulcast(width, height) : [planSingle(width, height, pub.source === 'screen_share')];
    }
    const info = await session.addTrack(
      new AddTrackRequest({
        cid: track.id,
        name: pub.name,
        type: pub.kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO,
        source: sourceToProto(pub.source),
        muted: !track.enabled,
        width,
        height,
        layers: pub.kind === 'video' ? layersToProto(pub.planned) : [],
        stream: pub.stream.id,
      }),
    );
    if (session !== this.ctx.session() || !this.local.has(track.id)) return; // dropped or unpublished meanwhile
    pub.updateInfo(info);
    const muted = !track.enabled; // muted or unmuted while the server was answering
    if (pub.muted !== muted) {
      pub.muted = muted;
      session.send({ case: 'mute', value: new MuteTrackRequest({ sid: pub.sid, muted }) });
    }
    this.trackPublications.set(pub.sid, pub);
    pub.sender = session.publishTrack(track, {
      stream: pub.stream,
      encodings: pub.kind === 'video' ? pub.planned.map((l) => l.encoding) : undefined,
      codec: pub.kind === 'video' ? pub.options.codec : undefined,
    });
    this.ctx.events.emit('localTrackPublished', pub, this);
    await session.negotiate();
  }

  /** Mutes or unmutes a track: stops sending its media and tells the room. */
  async setTrackMuted(pub: LocalTrackPublication, muted: boolean): Promise<void> {
    if (pub.muted === muted && pub.track.enabled === !muted) return;
    pub.track.enabled = !muted;
    pub.muted = muted;
    if (pub.sid) this.ctx.session()?.send({ case: 'mute', value: new MuteTrackRequest({ sid: pub.sid, muted }) });
    this.ctx.events.emit(muted ? 'trackMuted' : 'trackUnmuted', pub, this);
  }

  /** Stops publishing a track (and stops the track unless stop is false). */
  async unpublishTrack(pubOrTrack: LocalTrackPublication | MediaStreamTrack, stop = true): Promise<void> {
    const id = pubOrTrack instanceof LocalTrackPublication ? pubOrTrack.track.id : pubOrTrack.id;
    const pub = this.local.get(id);
    if (!pub) return;
    this.local.delete(id);
    this.trackPublications.delete(pub.sid);
    if (stop) pub.track.stop();
    const session = this.ctx.session();
    if (session && pub.sender) {
      session.unpublishTrack(pub.sender);
      pub.sender = undefined;
      this.ctx.events.emit('localTrackUnpublished', pub, this);
      await session.negotiate();
    } else {
      this.ctx.events.emit('localTrackUnpublished', pub, this);
    }
  }

  /**
   * Applies the server's subscribedQualityUpdate (dynacast) to a published
   * video track: the simulcast encodings of qualities nobody receives are
   * turned off with setParameters, wanted ones back on. Resolves once the
   * sender has the new parameters (a failure is logged at debug level).
   */
  applySubscribedQualities(update: SubscribedQualityUpdate): Promise<void> {
    let pub: LocalTrackPublication | undefined;
    for (const p of this.local.values()) if (p.sid === update.trackSid) pub = p;
    if (!pub || pub.kind !== 'video') return Promise.resolve();
    const codec = pub.mimeType || pub.options.codec;
    const wanted = wantedQualities(update, codec);
    if (wanted.size === 0) return Promise.resolve();
    pub.subscribedQualities = [...wanted].filter(([, on]) => on).map(([q]) => q).sort((a, b) => a - b).map(qualityFromProto);
    const target = pub;
    // Each change reads the sender's current parameters after the previous
    // one finished: overlapping getParameters/setParameters pairs fail.
    const run = async () => {
      const sender = target.sender;
      if (!sender) return;
      const params = sender.getParameters();
      if (!params.encodings || !setLayersActive(params.encodings, wanted)) return;
      await sender.setParameters(params);
    };
    target.layerChanges = target.layerChanges.then(run).catch((err) => {
      console.debug('fanout: setting the published simulcast layers failed', err);
    });
    return target.layerChanges;
  }

  /** Sends a data message to the room (or to destinationIdentities). */
  async sendData(payload: Uint8Array | string, opts: SendDataOptions = {}): Promise<void> {
    const session = this.ctx.session();
    if (!session) throw new Error('not connected');
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    await session.sendData(encodeUserData(bytes, opts), opts.kind ?? 'reliable');
  }

  /** Publishes every local track again on a new session (after a rejoin). */
  async republish(session: RoomSession): Promise<void> {
    this.trackPublications.clear();
    for (const pub of this.local.values()) pub.sender = undefined;
    await Promise.all([...this.local.values()].map((p) => this.publishOn(session, p)));
  }

  /** Stops every local track (on leave). */
  stopAll(): void {
    for (const p of this.local.values()) p.track.stop();
    this.local.clear();
    this.trackPublications.clear();
  }
}
