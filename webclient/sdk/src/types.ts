import type { ConnectionQuality, Participant, RemoteParticipant } from './participant.js';
import type { RemoteTrackPublication, StreamState, TrackPublication } from './tracks.js';
import type { LocalParticipant, LocalTrackPublication } from './local.js';

/** The room's connection state. */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting';

/** How a data message travels: reliable (ordered, retransmitted) or lossy. */
export type DataKind = 'reliable' | 'lossy';

/** Every event a Room emits, with its listener's arguments. */
export type RoomEvents = {
  /** Someone joined (also emitted for everyone already there on connect). */
  participantJoined: [participant: RemoteParticipant];
  /** Someone left. */
  participantLeft: [participant: RemoteParticipant];
  /** A remote participant announced a track. */
  trackPublished: [publication: RemoteTrackPublication, participant: RemoteParticipant];
  /** A remote participant stopped publishing a track. */
  trackUnpublished: [publication: RemoteTrackPublication, participant: RemoteParticipant];
  /** The media of a remote track arrived. */
  trackSubscribed: [track: MediaStreamTrack, publication: RemoteTrackPublication, participant: RemoteParticipant];
  /** The media of a remote track stopped arriving. */
  trackUnsubscribed: [track: MediaStreamTrack, publication: RemoteTrackPublication, participant: RemoteParticipant];
  /**
   * The server started ('active') or stopped ('paused') forwarding a
   * subscribed track's media, e.g. because its publisher stopped sending
   * the layers this subscriber may receive.
   */
  trackStreamStateChanged: [publication: RemoteTrackPublication, state: StreamState, participant: RemoteParticipant];
  /** A track (local or remote) was muted. */
  trackMuted: [publication: TrackPublication, participant: Participant];
  /** A track (local or remote) was unmuted. */
  trackUnmuted: [publication: TrackPublication, participant: Participant];
  /** One of our tracks was accepted by the server. */
  localTrackPublished: [publication: LocalTrackPublication, participant: LocalParticipant];
  /** One of our tracks was unpublished. */
  localTrackUnpublished: [publication: LocalTrackPublication, participant: LocalParticipant];
  /** The active speakers, loudest first (empty when nobody speaks). */
  activeSpeakersChanged: [speakers: Participant[]];
  /** A data message from a participant (undefined: from the server). */
  dataReceived: [payload: Uint8Array, topic: string | undefined, sender: RemoteParticipant | undefined, kind: DataKind];
  /** A participant's metadata changed. */
  participantMetadataChanged: [previous: string, participant: Participant];
  /** The server's judgement of a participant's connection changed. */
  connectionQualityChanged: [quality: ConnectionQuality, participant: Participant];
  /** The connection state changed. */
  connectionStateChanged: [state: ConnectionState];
  /** The connection dropped and a rejoin is under way. */
  reconnecting: [];
  /** The rejoin succeeded: new connections, local tracks published again. */
  reconnected: [];
  /** The room is left for good (by leave(), the server, or giving up reconnecting). */
  disconnected: [reason: string];
};
