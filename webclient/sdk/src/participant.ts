import { ConnectionQuality as PbQuality, ParticipantInfo } from '@livekit/protocol';
import type { RemoteTrackPublication, TrackPublication, TrackSource } from './tracks.js';

/** How well a participant's connection works, as the server judges it. */
export type ConnectionQuality = 'excellent' | 'good' | 'poor' | 'lost' | 'unknown';

/** connectionQualityFromProto maps the wire's quality to its name. */
export function connectionQualityFromProto(q: PbQuality): ConnectionQuality {
  switch (q) {
    case PbQuality.EXCELLENT:
      return 'excellent';
    case PbQuality.GOOD:
      return 'good';
    case PbQuality.POOR:
      return 'poor';
    case PbQuality.LOST:
      return 'lost';
    default:
      return 'unknown';
  }
}

/** Participant is someone in the room: the local user or a remote one. */
export class Participant {
  /** The server's participant id (PA_...); it changes when the participant rejoins. */
  sid: string;
  /** The identity from the participant's token. */
  identity: string;
  /** Display name. */
  name = '';
  /** Application metadata. */
  metadata = '';
  /** Application attributes. */
  attributes: Record<string, string> = {};
  /** Whether the participant is an active speaker now. */
  isSpeaking = false;
  /** Loudness 0..1 while speaking. */
  audioLevel = 0;
  /** Last connection quality the server reported. */
  connectionQuality: ConnectionQuality = 'unknown';
  /** Published tracks by track sid. */
  readonly trackPublications = new Map<string, TrackPublication>();

  /** Creates a participant with the given ids. */
  constructor(sid: string, identity: string) {
    this.sid = sid;
    this.identity = identity;
  }

  /** The first publication of a source, e.g. the camera. */
  getTrackPublication(source: TrackSource): TrackPublication | undefined {
    for (const p of this.trackPublications.values()) if (p.source === source) return p;
    return undefined;
  }

  /** Copies name, metadata and attributes from the server's description. */
  protected copyInfo(info: ParticipantInfo): void {
    this.name = info.name;
    this.metadata = info.metadata;
    this.attributes = { ...info.attributes };
  }
}

/** RemoteParticipant is another participant of the room. */
export class RemoteParticipant extends Participant {
  /** The version of the last ParticipantInfo applied (older ones are ignored). */
  version = -1;
  /** Published tracks by track sid. */
  declare readonly trackPublications: Map<string, RemoteTrackPublication>;

  /** Creates a remote participant from the server's description. */
  constructor(info: ParticipantInfo) {
    super(info.sid, info.identity);
    this.copyInfo(info);
  }

  /** Applies name and metadata of a newer description; returns whether metadata changed. */
  updateInfo(info: ParticipantInfo): boolean {
    const before = this.metadata;
    this.copyInfo(info);
    this.version = info.version;
    return before !== this.metadata;
  }

  /** The first publication of a source, e.g. the camera. */
  override getTrackPublication(source: TrackSource): RemoteTrackPublication | undefined {
    return super.getTrackPublication(source) as RemoteTrackPublication | undefined;
  }
}
