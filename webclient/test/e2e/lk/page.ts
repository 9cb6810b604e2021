// Browser side of the livekit-client interop test: the unmodified
// livekit-client SDK, driven by the Node test through `window.lkTest`.
// Bundled by the test with esbuild; it imports nothing of Fanout's own.

import {
  Room,
  RoomEvent,
  Track,
  VideoPresets,
  VideoQuality,
  DisconnectReason,
  type RemoteParticipant,
  type RemoteTrack,
  type RemoteTrackPublication,
  type DataPacket_Kind,
  setLogLevel,
  LogLevel,
} from 'livekit-client';

/** One data message received through RoomEvent.DataReceived. */
interface Received {
  text: string;
  from?: string;
  topic?: string;
  kind: number;
  at: number;
}

/** Inbound RTP stats of one subscribed track, from its RTCRtpReceiver. */
interface InboundStats {
  trackSid: string;
  participant: string;
  kind: string;
  source: string;
  mimeType?: string;
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  framesDecoded?: number;
  frameWidth?: number;
  frameHeight?: number;
  framesPerSecond?: number;
  keyFramesDecoded?: number;
  totalSamplesReceived?: number;
}

/** Outbound RTP stats of one encoding (simulcast layer) of a local track. */
interface OutboundStats {
  source: string;
  rid?: string;
  active?: boolean;
  bytesSent: number;
  packetsSent: number;
  frameWidth?: number;
  frameHeight?: number;
  framesEncoded?: number;
  qualityLimitationReason?: string;
  mimeType?: string;
}

/** Room options a test may change (the defaults keep both off). */
interface ConnectOptions {
  dynacast?: boolean;
  adaptiveStream?: boolean;
}

/** One sample of the received camera video, taken by the frame sampler. */
interface FrameSample {
  /** performance.now() when the sample was taken. */
  t: number;
  framesDecoded: number;
  keyFramesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  bytesReceived: number;
  packetsReceived: number;
  packetsLost: number;
  framesReceived: number;
  framesDropped: number;
  pliCount: number;
  firCount: number;
  nackCount: number;
  freezeCount: number;
  /** The attached <video> element's intrinsic width. */
  videoWidth: number;
}

const state = {
  room: undefined as Room | undefined,
  received: [] as Received[],
  events: [] as string[],
  /** Things that should not happen in a healthy session (failed subscriptions, reconnects, unexpected disconnects). */
  problems: [] as string[],
  identity: '',
  leaving: false,
  disconnectReason: undefined as string | undefined,
};

const sampler = {
  running: false,
  samples: [] as FrameSample[],
  done: Promise.resolve(),
};

function log(msg: string) {
  const line = `${new Date().toISOString()} ${msg}`;
  state.events.push(line);
  console.log(`[lkTest ${state.identity}] ${msg}`);
}

function room(): Room {
  if (!state.room) throw new Error('not connected');
  return state.room;
}

/** Shows every subscribed track in a labelled tile, so screenshots show what decodes. */
function attach(track: RemoteTrack, pub: RemoteTrackPublication, p: RemoteParticipant) {
  const id = `tile-${pub.trackSid}`;
  if (document.getElementById(id)) return;
  const tile = document.createElement('figure');
  tile.id = id;
  tile.style.cssText = 'display:inline-block;margin:4px;padding:4px;border:1px solid #888;font:12px sans-serif';
  const el = track.attach();
  el.muted = track.kind === Track.Kind.Audio ? false : true;
  if (track.kind === Track.Kind.Video) {
    el.style.cssText = 'width:320px;height:180px;background:#000;display:block';
  }
  const cap = document.createElement('figcaption');
  cap.textContent = `${p.identity} ${track.kind} ${pub.trackSid}`;
  tile.append(el, cap);
  document.getElementById('remote')?.append(tile);
}

function problem(msg: string) {
  state.problems.push(msg);
  log(`PROBLEM ${msg}`);
}

async function connect(url: string, token: string, identity: string, opts: ConnectOptions = {}): Promise<{ sid: string; identity: string; serverVersion?: string }> {
  state.identity = identity;
  setLogLevel(LogLevel.info);
  const r = new Room({
    adaptiveStream: opts.adaptiveStream ?? false,
    dynacast: opts.dynacast ?? false,
    videoCaptureDefaults: { resolution: VideoPresets.h720.resolution },
    publishDefaults: {
      simulcast: true,
      videoCodec: 'vp8',
    },
  });
  state.room = r;
  r.on(RoomEvent.ParticipantConnected, (p) => log(`participant connected ${p.identity} ${p.sid}`))
    .on(RoomEvent.ParticipantDisconnected, (p) => log(`participant disconnected ${p.identity}`))
    .on(RoomEvent.TrackPublished, (pub, p) => log(`track published ${p.identity} ${pub.kind} ${pub.trackSid}`))
    .on(RoomEvent.TrackSubscribed, (track, pub, p) => {
      log(`track subscribed ${p.identity} ${track.kind} ${pub.trackSid} ${pub.mimeType ?? ''}`);
      attach(track, pub, p);
    })
    .on(RoomEvent.TrackSubscriptionFailed, (sid, p, reason) => problem(`track subscription failed ${p.identity} ${sid} ${reason ?? ''}`))
    .on(RoomEvent.TrackStreamStateChanged, (pub, streamState, p) => log(`stream state ${p.identity} ${pub.trackSid} ${streamState}`))
    .on(RoomEvent.Disconnected, (reason) => {
      state.disconnectReason = reason === undefined ? 'undefined' : (DisconnectReason[reason] ?? String(reason));
      log(`disconnected ${state.disconnectReason}`);
      if (!state.leaving) problem(`disconnected by the server or the network: ${state.disconnectReason}`);
    })
    .on(RoomEvent.Reconnecting, () => problem('reconnecting'))
    .on(RoomEvent.SignalReconnecting, () => problem('signal reconnecting'))
    .on(RoomEvent.Reconnected, () => log('reconnected'))
    .on(RoomEvent.MediaDevicesError, (e) => problem(`media devices error ${e.message}`))
    .on(RoomEvent.LocalTrackPublished, (pub) => log(`local track published ${pub.kind} ${pub.trackSid}`))
    .on(RoomEvent.DataReceived, (payload: Uint8Array, p?: RemoteParticipant, kind?: DataPacket_Kind, topic?: string) => {
      const text = new TextDecoder().decode(payload);
      log(`data received from ${p?.identity} topic ${topic} kind ${kind}: ${text}`);
      state.received.push({ text, from: p?.identity, topic, kind: Number(kind), at: Date.now() });
    });
  await r.connect(url, token, { autoSubscribe: true });
  log(`connected as ${r.localParticipant.identity} ${r.localParticipant.sid} to ${r.name}`);
  return { sid: r.localParticipant.sid, identity: r.localParticipant.identity, serverVersion: r.serverInfo?.version };
}

/** Publishes the fake camera (VP8, simulcast q/h/f) and microphone. */
async function publish(): Promise<{ video?: string; audio?: string; encodings: number; simulcast?: boolean }> {
  const lp = room().localParticipant;
  const video = await lp.setCameraEnabled(true, { resolution: VideoPresets.h720.resolution }, { simulcast: true, videoCodec: 'vp8' });
  const audio = await lp.setMicrophoneEnabled(true);
  const sender = video?.track?.sender;
  const encodings = sender?.getParameters().encodings ?? [];
  log(`published video ${video?.trackSid} encodings ${JSON.stringify(encodings.map((e) => ({ rid: e.rid, scale: e.scaleResolutionDownBy, max: e.maxBitrate })))} audio ${audio?.trackSid}`);
  return { video: video?.trackSid, audio: audio?.trackSid, encodings: encodings.length, simulcast: video?.simulcasted };
}

/** What this page sees of the others: participants, their publications, subscriptions. */
function remotes() {
  return [...room().remoteParticipants.values()].map((p) => ({
    identity: p.identity,
    sid: p.sid,
    tracks: [...p.trackPublications.values()].map((pub) => ({
      sid: pub.trackSid,
      kind: pub.kind,
      source: pub.source,
      simulcasted: pub.simulcasted,
      mimeType: pub.mimeType,
      subscribed: pub.isSubscribed,
      hasTrack: !!pub.track,
      muted: pub.isMuted,
    })),
  }));
}

async function inboundStats(): Promise<InboundStats[]> {
  const out: InboundStats[] = [];
  for (const p of room().remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) {
      const receiver = pub.track?.receiver;
      if (!receiver) continue;
      const report = await receiver.getStats();
      const codecs = new Map<string, string>();
      report.forEach((s) => {
        if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      });
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        out.push({
          trackSid: pub.trackSid,
          participant: p.identity,
          kind: s.kind,
          source: pub.source,
          mimeType: codecs.get(s.codecId),
          packetsReceived: s.packetsReceived ?? 0,
          packetsLost: s.packetsLost ?? 0,
          bytesReceived: s.bytesReceived ?? 0,
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          framesPerSecond: s.framesPerSecond,
          keyFramesDecoded: s.keyFramesDecoded,
          totalSamplesReceived: s.totalSamplesReceived,
        });
      });
    }
  }
  return out;
}

async function outboundStats(): Promise<OutboundStats[]> {
  const out: OutboundStats[] = [];
  for (const pub of room().localParticipant.trackPublications.values()) {
    const sender = pub.track?.sender;
    if (!sender) continue;
    const report = await sender.getStats();
    const codecs = new Map<string, string>();
    report.forEach((s) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
    });
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      out.push({
        source: pub.source,
        rid: s.rid,
        active: s.active,
        bytesSent: s.bytesSent ?? 0,
        packetsSent: s.packetsSent ?? 0,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        framesEncoded: s.framesEncoded,
        qualityLimitationReason: s.qualityLimitationReason,
        mimeType: codecs.get(s.codecId),
      });
    });
  }
  return out;
}

/** The publisher connection's selected candidate pair: bandwidth estimate and RTT. */
async function publisherTransport(): Promise<{ availableOutgoingBitrate?: number; currentRoundTripTime?: number; local?: string; remote?: string } | undefined> {
  for (const pub of room().localParticipant.trackPublications.values()) {
    const sender = pub.track?.sender;
    if (!sender) continue;
    const report = await sender.getStats();
    const cands = new Map<string, string>();
    report.forEach((s) => {
      if (s.type === 'local-candidate' || s.type === 'remote-candidate') cands.set(s.id, `${s.protocol} ${s.address}:${s.port} ${s.candidateType}`);
    });
    let out;
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        out = {
          availableOutgoingBitrate: s.availableOutgoingBitrate,
          currentRoundTripTime: s.currentRoundTripTime,
          local: cands.get(s.localCandidateId),
          remote: cands.get(s.remoteCandidateId),
        };
      }
    });
    if (out) return out;
  }
  return undefined;
}

/**
 * The selected candidate pair of the connection that receives a remote
 * camera: both addresses, the receive-side estimate and RTT.
 */
async function receiverTransport(identity: string): Promise<{ availableIncomingBitrate?: number; currentRoundTripTime?: number; local?: string; remote?: string } | undefined> {
  const receiver = remoteCamera(identity).track?.receiver;
  if (!receiver) return undefined;
  const report = await receiver.getStats();
  const cands = new Map<string, string>();
  let selected: string | undefined;
  report.forEach((s) => {
    if (s.type === 'local-candidate' || s.type === 'remote-candidate') cands.set(s.id, `${s.protocol} ${s.address}:${s.port} ${s.candidateType}`);
    if (s.type === 'transport' && s.selectedCandidatePairId) selected = s.selectedCandidatePairId;
  });
  let out;
  report.forEach((s) => {
    if (s.type !== 'candidate-pair') return;
    if (selected ? s.id !== selected : !(s.nominated && s.state === 'succeeded')) return;
    out = {
      availableIncomingBitrate: s.availableIncomingBitrate,
      currentRoundTripTime: s.currentRoundTripTime,
      local: cands.get(s.localCandidateId),
      remote: cands.get(s.remoteCandidateId),
    };
  });
  return out;
}

/** Sends a text as a reliable data packet with a topic (to everyone or some identities). */
async function sendData(text: string, topic: string, destinationIdentities?: string[]): Promise<void> {
  await room().localParticipant.publishData(new TextEncoder().encode(text), { reliable: true, topic, destinationIdentities });
  log(`data sent topic ${topic}: ${text}`);
}

/** The camera publication of a remote participant. */
function remoteCamera(identity: string): RemoteTrackPublication {
  const p = room().remoteParticipants.get(identity);
  const pub = p?.getTrackPublication(Track.Source.Camera);
  if (!pub) throw new Error(`no camera publication of ${identity}`);
  return pub;
}

/**
 * Asks for at most this quality of a remote camera (livekit-client sends a
 * trackSetting); returns performance.now() at the call.
 */
function setVideoQuality(identity: string, quality: 'low' | 'medium' | 'high'): number {
  const q = quality === 'low' ? VideoQuality.LOW : quality === 'medium' ? VideoQuality.MEDIUM : VideoQuality.HIGH;
  const t = performance.now();
  remoteCamera(identity).setVideoQuality(q);
  log(`setVideoQuality ${identity} ${quality}`);
  return t;
}

/** One sample of a remote camera's inbound-rtp stats and <video> size. */
async function sampleCamera(identity: string): Promise<FrameSample | undefined> {
  const pub = remoteCamera(identity);
  const receiver = pub.track?.receiver;
  if (!receiver) return undefined;
  const t = performance.now();
  const report = await receiver.getStats();
  let out: FrameSample | undefined;
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    const el = pub.track?.attachedElements[0] as HTMLVideoElement | undefined;
    out = {
      t,
      framesDecoded: s.framesDecoded ?? 0,
      keyFramesDecoded: s.keyFramesDecoded ?? 0,
      frameWidth: s.frameWidth ?? 0,
      frameHeight: s.frameHeight ?? 0,
      bytesReceived: s.bytesReceived ?? 0,
      packetsReceived: s.packetsReceived ?? 0,
      packetsLost: s.packetsLost ?? 0,
      framesReceived: s.framesReceived ?? 0,
      framesDropped: s.framesDropped ?? 0,
      pliCount: s.pliCount ?? 0,
      firCount: s.firCount ?? 0,
      nackCount: s.nackCount ?? 0,
      freezeCount: s.freezeCount ?? 0,
      videoWidth: el?.videoWidth ?? 0,
    };
  });
  return out;
}

/**
 * Samples a remote camera every intervalMs (on a fixed schedule) until
 * stopSampler; the samples are read with samples(from).
 */
function startSampler(identity: string, intervalMs = 100): void {
  if (sampler.running) throw new Error('sampler already running');
  sampler.running = true;
  sampler.samples = [];
  const start = performance.now();
  sampler.done = (async () => {
    for (let k = 1; sampler.running; k++) {
      try {
        const s = await sampleCamera(identity);
        if (s) sampler.samples.push(s);
      } catch (err) {
        log(`sample failed: ${(err as Error).message}`);
      }
      const wait = start + k * intervalMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
}

async function stopSampler(): Promise<void> {
  sampler.running = false;
  await sampler.done;
}

/** The encodings of the local camera's sender: rid and active. */
function senderEncodings(): { rid?: string; active: boolean; scale?: number }[] {
  for (const pub of room().localParticipant.trackPublications.values()) {
    if (pub.source !== Track.Source.Camera) continue;
    const sender = pub.track?.sender;
    if (!sender) continue;
    return sender.getParameters().encodings.map((e) => ({ rid: e.rid, active: e.active ?? true, scale: e.scaleResolutionDownBy }));
  }
  return [];
}

/** Leaves the room; resolves with the final state and the Disconnected reason. */
async function disconnect(): Promise<{ state: string; reason?: string }> {
  state.leaving = true;
  await state.room?.disconnect();
  return { state: state.room?.state ?? 'none', reason: state.disconnectReason };
}

const api = {
  connect,
  publish,
  remotes,
  inboundStats,
  outboundStats,
  publisherTransport,
  receiverTransport,
  sendData,
  disconnect,
  setVideoQuality,
  sampleCamera,
  startSampler,
  stopSampler,
  samples: (from = 0) => sampler.samples.slice(from),
  senderEncodings,
  problems: () => state.problems,
  received: () => state.received,
  events: () => state.events,
  connectionState: () => state.room?.state ?? 'none',
};

declare global {
  interface Window {
    lkTest: typeof api;
  }
}

window.lkTest = api;
document.title = 'livekit-client test page (ready)';
