import { StreamState as PbStreamState, TrackInfo, TrackSource as PbSource, TrackType, VideoQuality as PbQuality } from '@livekit/protocol';

/** Where a track comes from. */
export type TrackSource = 'camera' | 'microphone' | 'screen_share' | 'screen_share_audio' | 'unknown';

/** Audio or video. */
export type TrackKind = 'audio' | 'video';

/** A simulcast layer's quality. */
export type VideoQuality = 'low' | 'medium' | 'high';

/**
 * Whether the server forwards a subscribed track's media: 'paused' when it
 * has nothing to send (e.g. the publisher stopped the layers, or muted).
 */
export type StreamState = 'active' | 'paused';

/** streamStateFromProto maps the wire's stream state to its name. */
export function streamStateFromProto(s: PbStreamState): StreamState {
  return s === PbStreamState.PAUSED ? 'paused' : 'active';
}

/** One simulcast layer of a published video track. */
export interface VideoLayerInfo {
  /** The layer's quality. */
  quality: VideoQuality;
  /** The layer's RTP stream id (q, h or f). */
  rid: string;
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** Target bitrate in bits per second. */
  bitrate: number;
}

const sourceNames: Record<number, TrackSource> = {
  [PbSource.CAMERA]: 'camera',
  [PbSource.MICROPHONE]: 'microphone',
  [PbSource.SCREEN_SHARE]: 'screen_share',
  [PbSource.SCREEN_SHARE_AUDIO]: 'screen_share_audio',
};

/** sourceFromProto maps the wire's track source to its name. */
export function sourceFromProto(s: PbSource): TrackSource {
  return sourceNames[s] ?? 'unknown';
}

/** sourceToProto maps a track source name to the wire's value. */
export function sourceToProto(s: TrackSource): PbSource {
  switch (s) {
    case 'camera':
      return PbSource.CAMERA;
    case 'microphone':
      return PbSource.MICROPHONE;
    case 'screen_share':
      return PbSource.SCREEN_SHARE;
    case 'screen_share_audio':
      return PbSource.SCREEN_SHARE_AUDIO;
    default:
      return PbSource.UNKNOWN;
  }
}

/** qualityFromProto maps the wire's video quality to its name. */
export function qualityFromProto(q: PbQuality): VideoQuality {
  return q === PbQuality.LOW ? 'low' : q === PbQuality.MEDIUM ? 'medium' : 'high';
}

/** qualityToProto maps a video quality name to the wire's value. */
export function qualityToProto(q: VideoQuality): PbQuality {
  return q === 'low' ? PbQuality.LOW : q === 'medium' ? PbQuality.MEDIUM : PbQuality.HIGH;
}

/** TrackPublication is a track a participant announced, received or not. */
export class TrackPublication {
  /** The server's track id (TR_...). */
  sid: string;
  /** The track's name as its publisher set it. */
  name = '';
  /** Audio or video. */
  kind: TrackKind;
  /** Camera, microphone, screen share... */
  source: TrackSource = 'unknown';
  /** Whether the publisher muted it. */
  muted = false;
  /** Published frame size (video). */
  width = 0;
  /** Published frame size (video). */
  height = 0;
  /** Whether the publisher sends several simulcast layers. */
  simulcast = false;
  /** The codec, e.g. video/VP8 (known once media flows). */
  mimeType = '';
  /** The simulcast layers announced by the publisher. */
  layers: VideoLayerInfo[] = [];
  /** The media, once published locally or received. */
  track: MediaStreamTrack | undefined;

  /** Creates a publication from the server's track description. */
  constructor(info: TrackInfo) {
    this.sid = info.sid;
    this.kind = info.type === TrackType.AUDIO ? 'audio' : 'video';
    this.updateInfo(info);
  }

  /** Copies the server's description; returns true when `muted` changed. */
  updateInfo(info: TrackInfo): boolean {
    const wasMuted = this.muted;
    this.sid = info.sid;
    this.name = info.name;
    this.source = sourceFromProto(info.source);
    this.muted = info.muted;
    this.width = info.width;
    this.height = info.height;
    this.simulcast = info.simulcast;
    if (info.mimeType) this.mimeType = info.mimeType;
    this.layers = info.layers.map((l) => ({
      quality: qualityFromProto(l.quality),
      rid: l.rid,
      width: l.width,
      height: l.height,
      bitrate: l.bitrate,
    }));
    return wasMuted !== this.muted;
  }

  /** The layer whose width is nearest a received frame width, if any. */
  layerForWidth(width: number): VideoLayerInfo | undefined {
    let best: VideoLayerInfo | undefined;
    for (const l of this.layers) {
      if (!best || Math.abs(l.width - width) < Math.abs(best.width - width)) best = l;
    }
    return best;
  }
}

/** What a remote publication asks of the room when the app changes it. */
export interface RemoteTrackControl {
  /** Subscribes to or unsubscribes from a track. */
  setSubscribed(trackSid: string, subscribed: boolean): void;
  /** Sends the subscriber's wishes for one track (trackSetting). */
  updateSettings(trackSid: string, s: RemoteTrackSettings): void;
}

/**
 * A subscriber's wishes for one remote track. Every trackSetting sent
 * carries a quality: a server reads a missing one as LOW (the protobuf
 * default).
 */
export interface RemoteTrackSettings {
  /** Pause the track without unsubscribing. */
  disabled: boolean;
  /** Highest simulcast quality wanted ('high' unless set with setVideoQuality). */
  quality: VideoQuality;
  /** Size the track is displayed at, 0 when unknown. */
  width: number;
  /** Size the track is displayed at, 0 when unknown. */
  height: number;
}

/** RemoteTrackPublication is another participant's track. */
export class RemoteTrackPublication extends TrackPublication {
  /** The receiver the media arrives on (for getStats). */
  receiver: RTCRtpReceiver | undefined;
  /** Whether the app wants this track (the server auto-subscribes by default). */
  wanted = true;
  /**
   * Whether the server forwards the track's media, as it last said
   * (streamStateUpdate); back to 'active' when the media stops arriving.
   */
  streamState: StreamState = 'active';
  private settings: RemoteTrackSettings = { disabled: false, quality: 'high', width: 0, height: 0 };

  /** Creates a remote publication whose requests go through control. */
  constructor(
    info: TrackInfo,
    private readonly control: RemoteTrackControl,
  ) {
    super(info);
  }

  /** Whether the media of this track is being received. */
  get subscribed(): boolean {
    return this.track !== undefined;
  }

  /** Subscribes to the track, or unsubscribes from it. */
  setSubscribed(subscribed: boolean): void {
    this.wanted = subscribed;
    this.control.setSubscribed(this.sid, subscribed);
  }

  /** Pauses (false) or resumes (true) the track while staying subscribed. */
  setEnabled(enabled: boolean): void {
    this.apply({ disabled: !enabled });
  }

  /**
   * Asks for at most this simulcast quality. It replaces a size given with
   * setVideoDimensions (a server picks the layer by size when it has one).
   */
  setVideoQuality(quality: VideoQuality): void {
    this.apply({ quality, width: 0, height: 0 });
  }

  /**
   * Tells the server the size the video is shown at, so it can pick the
   * layer; it replaces a quality set with setVideoQuality (the quality sent
   * along goes back to 'high').
   */
  setVideoDimensions(width: number, height: number): void {
    this.apply({ width: Math.round(width), height: Math.round(height), quality: 'high' });
  }

  /** The settings last requested. */
  get requestedSettings(): Readonly<RemoteTrackSettings> {
    return this.settings;
  }

  private apply(change: Partial<RemoteTrackSettings>): void {
    const next = { ...this.settings, ...change };
    if (
      next.disabled === this.settings.disabled &&
      next.quality === this.settings.quality &&
      next.width === this.settings.width &&
      next.height === this.settings.height
    ) {
      return;
    }
    this.settings = next;
    this.control.updateSettings(this.sid, next);
  }
}
