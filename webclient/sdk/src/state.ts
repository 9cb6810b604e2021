import { ConnectionQualityInfo, ParticipantInfo, ParticipantInfo_State, SpeakerInfo, StreamStateInfo } from '@livekit/protocol';
import type { Emitter } from './events.js';
import { Participant, RemoteParticipant, connectionQualityFromProto } from './participant.js';
import { RemoteTrackPublication, streamStateFromProto, type RemoteTrackControl } from './tracks.js';
import type { RoomEvents } from './types.js';

/** A received media track waiting for its publication to be announced. */
interface PendingTrack {
  track: MediaStreamTrack;
  receiver: RTCRtpReceiver | undefined;
}

/** parseStreamId splits a subscriber stream id "PA_x|TR_y" into its two ids. */
export function parseStreamId(streamId: string): { participantSid: string; trackSid: string } | undefined {
  const i = streamId.indexOf('|');
  if (i <= 0 || i === streamId.length - 1) return undefined;
  return { participantSid: streamId.slice(0, i), trackSid: streamId.slice(i + 1) };
}

/**
 * RoomState is the room's bookkeeping of remote participants and their
 * tracks: it applies the server's participant updates and the media the
 * subscriber connection receives, and emits the matching events in order
 * (participantJoined, trackPublished, trackSubscribed; and the reverse on the
 * way out). It has no I/O.
 */
export class RoomState {
  /** Remote participants by identity. */
  readonly participants = new Map<string, RemoteParticipant>();
  private readonly bySid = new Map<string, RemoteParticipant>();
  private readonly gone = new Set<string>(); // sids seen disconnected
  private readonly pending = new Map<string, PendingTrack>(); // by track sid
  private speakers = new Map<string, number>(); // participant sid -> level

  /** Creates the state for a room whose local participant is local. */
  constructor(
    private readonly local: Participant,
    private readonly control: RemoteTrackControl,
    private readonly events: Emitter<RoomEvents>,
  ) {}

  /** Finds a remote participant by sid. */
  participantBySid(sid: string): RemoteParticipant | undefined {
    return this.bySid.get(sid);
  }

  /**
   * Applies a join response's other participants. On a rejoin, those no
   * longer there leave, the others are reconciled with their current state
   * whatever its version.
   */
  applyJoin(others: ParticipantInfo[]): void {
    const present = new Set(others.map((o) => o.sid));
    for (const p of [...this.bySid.values()]) if (!present.has(p.sid)) this.remove(p);
    for (const info of others) this.applyInfo(info, true);
  }

  /** Applies a ParticipantUpdate's participants. */
  applyUpdate(infos: ParticipantInfo[]): void {
    for (const info of infos) this.applyInfo(info, false);
  }

  private applyInfo(info: ParticipantInfo, force: boolean): void {
    if (info.sid === this.local.sid || info.identity === this.local.identity) return;
    if (info.permission?.hidden) return;
    const known = this.bySid.get(info.sid);
    if (info.state === ParticipantInfo_State.DISCONNECTED) {
      this.gone.add(info.sid);
      if (known) this.remove(known);
      return;
    }
    if (!known) {
      if (this.gone.has(info.sid)) return; // a late update of someone who left
      this.add(info);
      return;
    }
    if (!force && info.version <= known.version) return; // older or repeated
    const prevMetadata = known.metadata;
    if (known.updateInfo(info)) this.events.emit('participantMetadataChanged', prevMetadata, known);
    this.syncTracks(known, info);
  }

  private add(info: ParticipantInfo): void {
    const replaced = this.participants.get(info.identity);
    if (replaced) this.remove(replaced); // same identity, new session
    const p = new RemoteParticipant(info);
    p.version = info.version;
    this.participants.set(p.identity, p);
    this.bySid.set(p.sid, p);
    this.events.emit('participantJoined', p);
    this.syncTracks(p, info);
  }

  private remove(p: RemoteParticipant): void {
    for (const pub of [...p.trackPublications.values()]) this.removeTrack(p, pub);
    this.bySid.delete(p.sid);
    if (this.participants.get(p.identity) === p) this.participants.delete(p.identity);
    if (this.speakers.delete(p.sid)) this.emitSpeakers();
    this.events.emit('participantLeft', p);
  }

  private syncTracks(p: RemoteParticipant, info: ParticipantInfo): void {
    const seen = new Set<string>();
    for (const t of info.tracks) {
      seen.add(t.sid);
      const pub = p.trackPublications.get(t.sid);
      if (!pub) {
        const np = new RemoteTrackPublication(t, this.control);
        p.trackPublications.set(np.sid, np);
        this.events.emit('trackPublished', np, p);
        const waiting = this.pending.get(np.sid);
        if (waiting) {
          this.pending.delete(np.sid);
          this.subscribe(p, np, waiting);
        }
        continue;
      }
      if (pub.updateInfo(t)) this.events.emit(pub.muted ? 'trackMuted' : 'trackUnmuted', pub, p);
    }
    for (const pub of [...p.trackPublications.values()]) if (!seen.has(pub.sid)) this.removeTrack(p, pub);
  }

  private removeTrack(p: RemoteParticipant, pub: RemoteTrackPublication): void {
    this.unsubscribe(p, pub);
    p.trackPublications.delete(pub.sid);
    this.pending.delete(pub.sid);
    this.events.emit('trackUnpublished', pub, p);
  }

  /**
   * Records media received on the subscriber connection, identified by
   * its stream id "PA_x|TR_y" (or, failing that, the track sid alone).
   */
  attachTrack(track: MediaStreamTrack, streamId: string, receiver?: RTCRtpReceiver, trackSid?: string): void {
    const ids = parseStreamId(streamId);
    const sid = ids?.trackSid ?? trackSid;
    if (!sid) return;
    const owner = ids ? this.bySid.get(ids.participantSid) : this.ownerOf(sid);
    const pub = owner?.trackPublications.get(sid);
    if (!owner || !pub) {
      this.pending.set(sid, { track, receiver }); // its update has not arrived yet
      return;
    }
    this.subscribe(owner, pub, { track, receiver });
  }

  /** Records that the media of a track stopped arriving. */
  detachTrack(trackSid: string, track?: MediaStreamTrack): void {
    const waiting = this.pending.get(trackSid);
    if (waiting && (!track || waiting.track === track)) this.pending.delete(trackSid);
    const owner = this.ownerOf(trackSid);
    const pub = owner?.trackPublications.get(trackSid);
    if (!owner || !pub || (track && pub.track !== track)) return;
    this.unsubscribe(owner, pub);
  }

  /** Forgets every received track (the subscriber connection is gone). */
  detachAll(): void {
    this.pending.clear();
    for (const p of this.bySid.values()) for (const pub of p.trackPublications.values()) this.unsubscribe(p, pub);
  }

  private subscribe(p: RemoteParticipant, pub: RemoteTrackPublication, t: PendingTrack): void {
    if (pub.track === t.track) return;
    this.unsubscribe(p, pub);
    pub.track = t.track;
    pub.receiver = t.receiver;
    this.events.emit('trackSubscribed', t.track, pub, p);
  }

  private unsubscribe(p: RemoteParticipant, pub: RemoteTrackPublication): void {
    const track = pub.track;
    if (!track) return;
    pub.track = undefined;
    pub.receiver = undefined;
    pub.streamState = 'active'; // the next subscription starts afresh
    this.events.emit('trackUnsubscribed', track, pub, p);
  }

  /**
   * Applies a StreamStateUpdate: records whether the server forwards each
   * track and emits trackStreamStateChanged when that changed. Tracks not
   * (or no longer) known are ignored.
   */
  applyStreamStates(states: StreamStateInfo[]): void {
    for (const s of states) {
      const owner = this.bySid.get(s.participantSid) ?? this.ownerOf(s.trackSid);
      const pub = owner?.trackPublications.get(s.trackSid);
      if (!owner || !pub) continue;
      const next = streamStateFromProto(s.state);
      if (pub.streamState === next) continue;
      pub.streamState = next;
      this.events.emit('trackStreamStateChanged', pub, next, owner);
    }
  }

  private ownerOf(trackSid: string): RemoteParticipant | undefined {
    for (const p of this.bySid.values()) if (p.trackPublications.has(trackSid)) return p;
    return undefined;
  }

  /**
   * Merges a SpeakersChanged message: active entries set a speaker's level,
   * inactive ones remove it. Emits the speakers loudest first.
   */
  applySpeakers(speakers: SpeakerInfo[]): void {
    for (const s of speakers) {
      if (s.active) this.speakers.set(s.sid, s.level);
      else this.speakers.delete(s.sid);
    }
    this.emitSpeakers();
  }

  /** Forgets who was speaking (on a rejoin). */
  clearSpeakers(): void {
    if (this.speakers.size === 0) return;
    this.speakers.clear();
    this.emitSpeakers();
  }

  private emitSpeakers(): void {
    const all: Participant[] = [this.local, ...this.bySid.values()];
    const active: Participant[] = [];
    for (const p of all) {
      const level = this.speakers.get(p.sid);
      p.isSpeaking = level !== undefined;
      p.audioLevel = level ?? 0;
      if (level !== undefined) active.push(p);
    }
    active.sort((a, b) => b.audioLevel - a.audioLevel);
    this.events.emit('activeSpeakersChanged', active);
  }

  /** Applies a ConnectionQualityUpdate. */
  applyQuality(updates: ConnectionQualityInfo[]): void {
    for (const u of updates) {
      const p = u.participantSid === this.local.sid ? this.local : this.bySid.get(u.participantSid);
      if (!p) continue;
      const q = connectionQualityFromProto(u.quality);
      if (q === p.connectionQuality) continue;
      p.connectionQuality = q;
      this.events.emit('connectionQualityChanged', q, p);
    }
  }

  /** Removes everyone (the room was left). */
  clear(): void {
    for (const p of [...this.bySid.values()]) this.remove(p);
    this.pending.clear();
  }
}
