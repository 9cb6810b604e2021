/**
 * Fanout's browser SDK: join a room of a Fanout (or LiveKit-protocol) SFU,
 * publish camera, microphone and screen, receive the others, exchange data.
 *
 *   const room = await connect('ws://localhost:7880', token);
 *   room.on('trackSubscribed', (track, pub, who) => attach(track, who));
 *   await room.localParticipant.setCameraEnabled(true);
 */
export { connect, Room, sdkVersion, type ConnectOptions } from './room.js';
export { Emitter, type EventMap, type Listener } from './events.js';
export { LocalParticipant, LocalTrackPublication, type PublishOptions } from './local.js';
export { Participant, RemoteParticipant, type ConnectionQuality } from './participant.js';
export {
  TrackPublication,
  RemoteTrackPublication,
  type TrackKind,
  type TrackSource,
  type VideoQuality,
  type VideoLayerInfo,
  type StreamState,
  type RemoteTrackSettings,
} from './tracks.js';
export type { ConnectionState, DataKind, RoomEvents } from './types.js';
export type { SendDataOptions } from './data.js';
export { videoCodecs, type VideoCodec } from './encodings.js';
export { StatsSampler, formatBitrate, type TrackStats } from './stats.js';
export { Reconnector, defaultBackoff, type ReconnectState, type ReconnectParams, type Timers } from './reconnect.js';
export { JoinError } from './signal.js';
export type { RoomSession, SessionFactory, SessionHandlers } from './session.js';
export { playWHEP, postOffer, whepURL, httpOrigin, WHEPError, type WHEPOptions, type WHEPSession } from './whep.js';
