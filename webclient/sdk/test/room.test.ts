import {
  AddTrackRequest,
  DataPacket,
  JoinResponse,
  LeaveRequest,
  LeaveRequest_Action,
  ParticipantInfo,
  ParticipantUpdate,
  Room as PbRoom,
  SignalRequest,
  SignalResponse,
  StreamState,
  StreamStateInfo,
  StreamStateUpdate,
  SubscribedCodec,
  SubscribedQuality,
  SubscribedQualityUpdate,
  TrackInfo,
  VideoQuality,
} from '@livekit/protocol';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeUserData } from '../src/data.js';
import { Room } from '../src/room.js';
import type { PublishTrackOptions, RoomSession, SessionFactory, SessionHandlers } from '../src/session.js';
import type { SignalMessage } from '../src/signal.js';
import { FakeClock, FakeSender, Recorder, fakeStream, fakeTrack, flush, participant, track } from './fakes.js';

/** FakeSession records what the room sends and lets the test push server messages. */
class FakeSession implements RoomSession {
  sent: SignalMessage[] = [];
  data: { bytes: Uint8Array; kind: string }[] = [];
  closed: 'no' | 'leave' | 'silent' = 'no';
  negotiations = 0;

  constructor(
    readonly join: JoinResponse,
    readonly h: SessionHandlers,
  ) {}

  send(m: SignalMessage): boolean {
    this.sent.push(m);
    return this.closed === 'no';
  }

  addTrack(req: AddTrackRequest): Promise<TrackInfo> {
    this.sent.push({ case: 'addTrack', value: req });
    if (this.closed !== 'no') return Promise.reject(new Error('session closed'));
    return Promise.resolve(new TrackInfo({ sid: `TR_${req.cid}_${this.join.participant?.sid}`, type: req.type, source: req.source, muted: req.muted, layers: req.layers }));
  }

  senders: FakeSender[] = [];

  publishTrack(_track: MediaStreamTrack, opts: PublishTrackOptions): RTCRtpSender {
    const sender = new FakeSender((opts.encodings ?? [{}]).map((e) => e.rid ?? ''));
    this.senders.push(sender);
    return sender.asSender();
  }

  unpublishTrack(): void {}

  async negotiate(): Promise<void> {
    this.negotiations++;
  }

  async sendData(bytes: Uint8Array, kind: string): Promise<void> {
    this.data.push({ bytes, kind });
  }

  close(leave: boolean): void {
    if (this.closed === 'no') this.closed = leave ? 'leave' : 'silent';
  }

  /** Pushes a server message. */
  signal(message: SignalResponse['message']): void {
    this.h.onSignal(new SignalResponse({ message }));
  }

  sentCases(): string[] {
    return this.sent.map((m) => m.case ?? '?');
  }
}

/** FakeServer hands out sessions; each join gets a new participant sid. */
class FakeServer {
  sessions: FakeSession[] = [];
  urls: string[] = [];
  others: ParticipantInfo[] = [];
  failNext = 0;

  factory: SessionFactory = async (url, handlers) => {
    this.urls.push(url);
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('server unreachable');
    }
    const n = this.sessions.length + 1;
    const join = new JoinResponse({
      room: new PbRoom({ name: 'r1', sid: 'RM_1' }),
      participant: new ParticipantInfo({ sid: `PA_me${n}`, identity: 'me', name: 'Me' }),
      otherParticipants: this.others,
      serverVersion: 'test',
    });
    handlers.onJoin(join);
    const s = new FakeSession(join, handlers);
    this.sessions.push(s);
    return s;
  };

  get last(): FakeSession {
    return this.sessions[this.sessions.length - 1];
  }
}

function update(...infos: ParticipantInfo[]): SignalResponse['message'] {
  return { case: 'update', value: new ParticipantUpdate({ participants: infos }) };
}

async function setup(opts: { maxAttempts?: number } = {}) {
  const server = new FakeServer();
  server.others = [participant('PA_a', 'alice', 3, [track('TR_av')])];
  const clock = new FakeClock();
  const room = new Room('ws://sfu.test:7880', 'tok', {
    sessionFactory: server.factory,
    timers: clock,
    reconnect: { maxAttempts: opts.maxAttempts ?? 3 },
  });
  const rec = new Recorder(room);
  await room.connect();
  return { server, clock, room, rec };
}

describe('Room', () => {
  it('connects and emits joined, published, subscribed in order', async () => {
    const { server, room, rec } = await setup();
    assert.match(server.urls[0], /^ws:\/\/sfu\.test:7880\/rtc\?access_token=tok&auto_subscribe=1/);
    assert.equal(room.name, 'r1');
    assert.equal(room.localParticipant.sid, 'PA_me1');
    server.last.signal(update(participant('PA_b', 'bob', 1)));
    server.last.signal(update(participant('PA_b', 'bob', 2, [track('TR_bv')])));
    server.last.h.onTrack(fakeTrack('TR_bv'), 'PA_b|TR_bv', undefined, 'TR_bv');
    server.last.h.onTrack(fakeTrack('TR_av'), 'PA_a|TR_av', undefined, 'TR_av');
    assert.deepEqual(rec.take(), [
      'state connecting',
      'joined alice',
      'published alice TR_av',
      'state connected',
      'joined bob',
      'published bob TR_bv',
      'subscribed bob TR_bv',
      'subscribed alice TR_av',
    ]);
    assert.deepEqual([...room.remoteParticipants.keys()], ['alice', 'bob']);
  });

  it('publishes a simulcast camera and mutes it', async () => {
    const { server, room, rec } = await setup();
    rec.take();
    const cam = fakeTrack('cam1');
    const pub = await room.localParticipant.publishTrack(cam, { stream: fakeStream('s1') });
    const add = server.last.sent.find((m) => m.case === 'addTrack');
    assert.ok(add && add.case === 'addTrack');
    assert.equal(add.value.cid, 'cam1');
    assert.deepEqual(
      add.value.layers.map((l) => `${l.rid} ${l.width}x${l.height}`),
      ['q 320x180', 'h 640x360', 'f 1280x720'],
    );
    assert.equal(pub.sid, 'TR_cam1_PA_me1');
    assert.equal(server.last.negotiations, 1);
    await room.localParticipant.setTrackMuted(pub, true);
    assert.equal(cam.enabled, false);
    const mute = server.last.sent.find((m) => m.case === 'mute');
    assert.ok(mute && mute.case === 'mute');
    assert.equal(mute.value.muted, true);
    assert.deepEqual(rec.take(), ['local published TR_cam1_PA_me1', 'muted me TR_cam1_PA_me1']);
  });

  it('rejoins after a drop and publishes its tracks again', async () => {
    const { server, clock, room, rec } = await setup();
    server.last.h.onTrack(fakeTrack('TR_av'), 'PA_a|TR_av', undefined, 'TR_av');
    const cam = fakeTrack('cam1');
    const pub = await room.localParticipant.publishTrack(cam, { stream: fakeStream('s1') });
    await room.localParticipant.setTrackMuted(pub, true);
    rec.take();
    const first = server.last;
    first.h.onDrop('signal connection closed');
    assert.equal(first.closed, 'silent');
    assert.deepEqual(rec.take(), ['state reconnecting', 'reconnecting', 'unsubscribed alice TR_av']);
    // Events of the dead session no longer count.
    first.signal(update(participant('PA_z', 'zed', 1)));
    server.failNext = 1;
    await clock.advance(250);
    assert.equal(server.sessions.length, 1);
    await clock.advance(500);
    assert.equal(server.sessions.length, 2);
    const second = server.last;
    second.h.onTrack(fakeTrack('TR_av2'), 'PA_a|TR_av', undefined, 'TR_av');
    await clock.advance(0);
    assert.deepEqual(rec.take(), [
      'local published TR_cam1_PA_me2',
      'state connected',
      'reconnected',
      'subscribed alice TR_av',
    ]);
    const add = second.sent.find((m) => m.case === 'addTrack');
    assert.ok(add && add.case === 'addTrack');
    assert.equal(add.value.muted, true, 'a muted track is republished muted');
    assert.equal(room.localParticipant.sid, 'PA_me2');
    assert.equal(pub.sid, 'TR_cam1_PA_me2');
  });

  it('rejoins when the server sends a leave with action RECONNECT', async () => {
    const { server, clock, rec } = await setup();
    rec.take();
    server.last.signal({ case: 'leave', value: new LeaveRequest({ action: LeaveRequest_Action.RECONNECT, canReconnect: true }) });
    await clock.advance(250);
    assert.equal(server.sessions.length, 2);
    assert.deepEqual(rec.take(), ['state reconnecting', 'reconnecting', 'state connected', 'reconnected']);
  });

  it('disconnects when the server sends a leave with action DISCONNECT', async () => {
    const { server, clock, room, rec } = await setup();
    rec.take();
    server.last.signal({ case: 'leave', value: new LeaveRequest({ action: LeaveRequest_Action.DISCONNECT, reason: 2 }) });
    await clock.advance(10_000);
    assert.equal(server.sessions.length, 1);
    assert.equal(room.state, 'disconnected');
    assert.deepEqual(rec.take(), [
      'unpublished alice TR_av',
      'left alice',
      'state disconnected',
      'disconnected server: DUPLICATE_IDENTITY',
    ]);
  });

  it('gives up after the configured attempts', async () => {
    const { server, clock, room, rec } = await setup({ maxAttempts: 2 });
    rec.take();
    server.failNext = 5;
    server.last.h.onDrop('ice failed');
    await clock.advance(250 + 500);
    assert.equal(room.state, 'disconnected');
    assert.deepEqual(rec.take(), [
      'state reconnecting',
      'reconnecting',
      'unpublished alice TR_av',
      'left alice',
      'state disconnected',
      'disconnected reconnect failed: server unreachable',
    ]);
  });

  it('leave during reconnect stops the attempts', async () => {
    const { server, clock, room, rec } = await setup();
    server.last.h.onDrop('ws closed');
    await room.leave();
    await clock.advance(60_000);
    assert.equal(server.sessions.length, 1);
    assert.equal(rec.take().at(-1), 'disconnected client left');
  });

  it('leave tells the server and stops local tracks', async () => {
    const { server, room } = await setup();
    const cam = fakeTrack('cam1');
    await room.localParticipant.publishTrack(cam, { stream: fakeStream('s1') });
    await room.leave();
    assert.equal(server.last.closed, 'leave');
    assert.equal((cam as unknown as { stopped: boolean }).stopped, true);
  });

  it('sends and receives data with topics and destinations', async () => {
    const { server, room, rec } = await setup();
    rec.take();
    await room.localParticipant.sendData('hi', { topic: 'chat', kind: 'lossy', destinationIdentities: ['alice'] });
    const sent = server.last.data[0];
    assert.equal(sent.kind, 'lossy');
    const pkt = DataPacket.fromBinary(sent.bytes);
    assert.ok(pkt.value.case === 'user');
    assert.equal(pkt.value.value.topic, 'chat');
    assert.deepEqual(pkt.value.value.destinationIdentities, ['alice']);
    server.last.h.onData({ payload: new TextEncoder().encode('yo'), topic: 't', senderIdentity: 'alice', senderSid: 'PA_a', kind: 'reliable' });
    server.last.h.onData({ payload: new TextEncoder().encode('sys'), topic: undefined, senderIdentity: '', senderSid: '', kind: 'reliable' });
    assert.deepEqual(rec.take(), ['data yo t alice reliable', 'data sys - server reliable']);
    assert.ok(encodeUserData(new Uint8Array([1])).length > 0);
  });

  it('turns simulcast layers on and off as the server asks (subscribedQualityUpdate)', async () => {
    const { server, room } = await setup();
    const pub = await room.localParticipant.publishTrack(fakeTrack('cam1'), { stream: fakeStream('s1') });
    const sender = server.last.senders[0];
    assert.equal(sender.state(), 'q+ h+ f+');
    const qualities = (...on: boolean[]) => on.map((enabled, q) => new SubscribedQuality({ quality: q as VideoQuality, enabled }));
    const send = (update: SubscribedQualityUpdate) => server.last.signal({ case: 'subscribedQualityUpdate', value: update });

    // Only q wanted (subscribedQualities, as Fanout sends it).
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(true, false, false) }));
    await flush();
    assert.equal(sender.state(), 'q+ h- f-');
    assert.deepEqual(pub.subscribedQualities, ['low']);

    // Two updates back to back: applied in order, each on fresh parameters.
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(true, true, false) }));
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(true, true, true) }));
    await flush();
    assert.deepEqual(sender.applied, ['q+ h- f-', 'q+ h+ f-', 'q+ h+ f+']);

    // Nothing changes: no setParameters.
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(true, true, true) }));
    await flush();
    assert.equal(sender.applied.length, 3);

    // subscribedCodecs: the list of our codec wins over subscribedQualities.
    send(new SubscribedQualityUpdate({
      trackSid: pub.sid,
      subscribedQualities: qualities(true, true, true),
      subscribedCodecs: [
        new SubscribedCodec({ codec: 'h264', qualities: qualities(true, true, true) }),
        new SubscribedCodec({ codec: 'vp8', qualities: qualities(false, true, false) }),
      ],
    }));
    await flush();
    assert.equal(sender.state(), 'q- h+ f-');
    assert.deepEqual(pub.subscribedQualities, ['medium']);

    // A failed setParameters is not fatal: the next update applies.
    sender.failNext = true;
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(false, false, false) }));
    await flush();
    assert.equal(sender.state(), 'q- h+ f-');
    send(new SubscribedQualityUpdate({ trackSid: pub.sid, subscribedQualities: qualities(true, false, false) }));
    await flush();
    assert.equal(sender.state(), 'q+ h- f-');

    // Unknown tracks and audio tracks are ignored.
    const mic = await room.localParticipant.publishTrack(fakeTrack('mic1', 'audio'), { stream: fakeStream('s2') });
    const before = sender.applied.length;
    send(new SubscribedQualityUpdate({ trackSid: 'TR_unknown', subscribedQualities: qualities(false, false, false) }));
    send(new SubscribedQualityUpdate({ trackSid: mic.sid, subscribedQualities: qualities(false, false, false) }));
    await flush();
    assert.equal(sender.applied.length, before);
    assert.deepEqual(server.last.senders[1].applied, []);
  });

  it('records stream states of remote tracks and emits trackStreamStateChanged', async () => {
    const { server, room, rec } = await setup();
    server.last.h.onTrack(fakeTrack('TR_av'), 'PA_a|TR_av', undefined, 'TR_av');
    rec.take();
    const pub = room.remoteParticipants.get('alice')?.trackPublications.get('TR_av');
    assert.ok(pub);
    assert.equal(pub.streamState, 'active');
    const states = (state: StreamState, trackSid = 'TR_av') => ({
      case: 'streamStateUpdate' as const,
      value: new StreamStateUpdate({ streamStates: [new StreamStateInfo({ participantSid: 'PA_a', trackSid, state })] }),
    });
    server.last.signal(states(StreamState.PAUSED));
    server.last.signal(states(StreamState.PAUSED)); // repeated: no event
    assert.equal(pub.streamState, 'paused');
    server.last.signal(states(StreamState.ACTIVE));
    server.last.signal(states(StreamState.PAUSED, 'TR_gone')); // unknown track: ignored
    assert.deepEqual(rec.take(), ['stream alice TR_av paused', 'stream alice TR_av active']);
    server.last.signal(states(StreamState.PAUSED));
    server.last.h.onTrackEnded('TR_av', pub.track as MediaStreamTrack);
    assert.equal(pub.streamState, 'active', 'a new subscription starts active');
    assert.deepEqual(rec.take(), ['stream alice TR_av paused', 'unsubscribed alice TR_av']);
  });

  it('sends a quality with every trackSetting (HIGH unless asked otherwise)', async () => {
    const { server, room } = await setup();
    const pub = room.remoteParticipants.get('alice')?.trackPublications.get('TR_av');
    assert.ok(pub);
    const settings = () =>
      server.last.sent.filter((m) => m.case === 'trackSetting').map((m) => {
        // What goes over the wire: a quality that is absent reads as LOW.
        const wire = SignalRequest.fromBinary(new SignalRequest({ message: m }).toBinary()).message;
        assert.ok(wire.case === 'trackSetting');
        const v = wire.value;
        return `${v.trackSids.join(',')} disabled=${v.disabled} ${VideoQuality[v.quality]} ${v.width}x${v.height}`;
      });
    pub.setEnabled(false);
    pub.setEnabled(true);
    pub.setVideoDimensions(640, 360);
    pub.setVideoQuality('low'); // replaces the size
    pub.setVideoQuality('medium');
    pub.setVideoDimensions(1280, 720); // replaces the quality
    pub.setVideoQuality('high');
    assert.deepEqual(settings(), [
      'TR_av disabled=true HIGH 0x0',
      'TR_av disabled=false HIGH 0x0',
      'TR_av disabled=false HIGH 640x360',
      'TR_av disabled=false LOW 0x0',
      'TR_av disabled=false MEDIUM 0x0',
      'TR_av disabled=false HIGH 1280x720',
      'TR_av disabled=false HIGH 0x0',
    ]);
  });

  it('sends the chosen quality again after a rejoin', async () => {
    const { server, clock, room } = await setup();
    room.remoteParticipants.get('alice')?.trackPublications.get('TR_av')?.setVideoQuality('low');
    server.last.h.onDrop('ice failed');
    await clock.advance(250);
    assert.equal(server.sessions.length, 2);
    const sent = server.last.sent.filter((m) => m.case === 'trackSetting');
    assert.equal(sent.length, 1);
    assert.ok(sent[0].case === 'trackSetting');
    assert.equal(sent[0].value.quality, VideoQuality.LOW);
    assert.deepEqual(sent[0].value.trackSids, ['TR_av']);
  });
});
