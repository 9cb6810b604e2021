import { ConnectionQuality, ConnectionQualityInfo, ParticipantInfo_State, SpeakerInfo } from '@livekit/protocol';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Emitter } from '../src/events.js';
import { Participant } from '../src/participant.js';
import { RoomState, parseStreamId } from '../src/state.js';
import type { RemoteTrackControl } from '../src/tracks.js';
import type { RoomEvents } from '../src/types.js';
import { Recorder, fakeTrack, participant, track } from './fakes.js';

function setup() {
  const em = new Emitter<RoomEvents>();
  const rec = new Recorder(em);
  const local = new Participant('PA_me', 'me');
  const calls: string[] = [];
  const control: RemoteTrackControl = {
    setSubscribed: (sid, on) => calls.push(`sub ${sid} ${on}`),
    updateSettings: (sid, s) => calls.push(`set ${sid} ${s.disabled} ${s.quality} ${s.width}x${s.height}`),
  };
  const state = new RoomState(local, control, em);
  return { state, rec, local, calls };
}

describe('RoomState event ordering', () => {
  it('emits participantJoined, then trackPublished, then trackSubscribed', () => {
    const { state, rec } = setup();
    state.applyJoin([participant('PA_a', 'alice', 2, [track('TR_v'), track('TR_a', { kind: 'audio' })])]);
    state.attachTrack(fakeTrack('TR_v'), 'PA_a|TR_v');
    assert.deepEqual(rec.take(), [
      'joined alice',
      'published alice TR_v',
      'published alice TR_a',
      'subscribed alice TR_v',
    ]);
  });

  it('holds media that arrives before its update until the track is announced', () => {
    const { state, rec } = setup();
    state.attachTrack(fakeTrack('TR_v'), 'PA_b|TR_v');
    assert.deepEqual(rec.take(), []);
    state.applyUpdate([participant('PA_b', 'bob', 1)]);
    state.applyUpdate([participant('PA_b', 'bob', 2, [track('TR_v')])]);
    assert.deepEqual(rec.take(), ['joined bob', 'published bob TR_v', 'subscribed bob TR_v']);
  });

  it('finds the track by sid when the stream id is not Fanout-shaped', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_b', 'bob', 1, [track('TR_v')])]);
    rec.take();
    state.attachTrack(fakeTrack('x'), 'some-stream', undefined, 'TR_v');
    assert.deepEqual(rec.take(), ['subscribed bob TR_v']);
  });

  it('on leave unsubscribes, then unpublishes, then reports the participant gone', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1, [track('TR_v')])]);
    state.attachTrack(fakeTrack('TR_v'), 'PA_a|TR_v');
    rec.take();
    state.applyUpdate([participant('PA_a', 'alice', 2, [track('TR_v')], ParticipantInfo_State.DISCONNECTED)]);
    assert.deepEqual(rec.take(), ['unsubscribed alice TR_v', 'unpublished alice TR_v', 'left alice']);
    assert.equal(state.participants.size, 0);
  });
});

describe('RoomState track bookkeeping', () => {
  it('adds, removes and mutes tracks from successive updates', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1, [track('TR_1')])]);
    state.attachTrack(fakeTrack('TR_1'), 'PA_a|TR_1');
    rec.take();
    state.applyUpdate([participant('PA_a', 'alice', 2, [track('TR_1', { muted: true }), track('TR_2', { kind: 'audio' })])]);
    assert.deepEqual(rec.take(), ['muted alice TR_1', 'published alice TR_2']);
    const alice = state.participants.get('alice');
    assert.ok(alice);
    assert.equal(alice.trackPublications.get('TR_1')?.muted, true);
    assert.equal(alice.trackPublications.get('TR_2')?.kind, 'audio');
    state.applyUpdate([participant('PA_a', 'alice', 3, [track('TR_2', { kind: 'audio' })])]);
    assert.deepEqual(rec.take(), ['unsubscribed alice TR_1', 'unpublished alice TR_1']);
    state.applyUpdate([participant('PA_a', 'alice', 4, [track('TR_2', { kind: 'audio', muted: true })])]);
    state.applyUpdate([participant('PA_a', 'alice', 5, [track('TR_2', { kind: 'audio', muted: false })])]);
    assert.deepEqual(rec.take(), ['muted alice TR_2', 'unmuted alice TR_2']);
  });

  it('ignores updates older than (or as old as) the last one applied', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 5, [])]);
    rec.take();
    state.applyUpdate([participant('PA_a', 'alice', 4, [track('TR_old')])]);
    state.applyUpdate([participant('PA_a', 'alice', 5, [track('TR_old')])]);
    assert.deepEqual(rec.take(), []);
    state.applyUpdate([participant('PA_a', 'alice', 6, [track('TR_new')])]);
    assert.deepEqual(rec.take(), ['published alice TR_new']);
  });

  it('does not bring back a participant after its DISCONNECTED update', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1)]);
    state.applyUpdate([participant('PA_a', 'alice', 3, [], ParticipantInfo_State.DISCONNECTED)]);
    state.applyUpdate([participant('PA_a', 'alice', 2, [track('TR_v')])]); // delivered late
    assert.deepEqual(rec.take(), ['joined alice', 'left alice']);
    assert.equal(state.participants.size, 0);
  });

  it('ignores DISCONNECTED for someone it never saw, and ignores itself', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_x', 'x', 1, [], ParticipantInfo_State.DISCONNECTED)]);
    state.applyUpdate([participant('PA_me', 'me', 9, [track('TR_mine')])]);
    assert.deepEqual(rec.take(), []);
  });

  it('replaces a participant that rejoined with a new sid', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a1', 'alice', 3, [track('TR_1')])]);
    rec.take();
    state.applyUpdate([participant('PA_a2', 'alice', 1, [track('TR_2')])]);
    assert.deepEqual(rec.take(), ['unpublished alice TR_1', 'left alice', 'joined alice', 'published alice TR_2']);
    assert.equal(state.participants.get('alice')?.sid, 'PA_a2');
  });

  it('reconciles a rejoin: those gone leave, the rest are kept whatever their version', () => {
    const { state, rec } = setup();
    state.applyJoin([participant('PA_a', 'alice', 4, [track('TR_1')]), participant('PA_b', 'bob', 2)]);
    state.attachTrack(fakeTrack('TR_1'), 'PA_a|TR_1');
    rec.take();
    state.detachAll();
    state.applyJoin([participant('PA_a', 'alice', 4, [track('TR_1', { muted: true })]), participant('PA_c', 'carol', 1)]);
    assert.deepEqual(rec.take(), ['unsubscribed alice TR_1', 'left bob', 'muted alice TR_1', 'joined carol']);
    state.attachTrack(fakeTrack('TR_1b'), 'PA_a|TR_1');
    assert.deepEqual(rec.take(), ['subscribed alice TR_1']);
  });

  it('reports media that stopped arriving', () => {
    const { state, rec } = setup();
    const m = fakeTrack('TR_1');
    state.applyUpdate([participant('PA_a', 'alice', 1, [track('TR_1')])]);
    state.attachTrack(m, 'PA_a|TR_1');
    rec.take();
    state.detachTrack('TR_1', fakeTrack('other')); // not the current track: ignored
    assert.deepEqual(rec.take(), []);
    state.detachTrack('TR_1', m);
    assert.deepEqual(rec.take(), ['unsubscribed alice TR_1']);
    assert.equal(state.participants.get('alice')?.trackPublications.get('TR_1')?.subscribed, false);
  });

  it('routes subscription and settings requests through the control', () => {
    const { state, calls } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1, [track('TR_1')])]);
    const pub = state.participants.get('alice')?.trackPublications.get('TR_1');
    assert.ok(pub);
    pub.setSubscribed(false);
    pub.setVideoQuality('low');
    pub.setVideoQuality('low'); // unchanged: not sent again
    pub.setVideoDimensions(320.4, 180); // a size replaces the quality (back to high)
    pub.setEnabled(false);
    pub.setVideoQuality('medium'); // a quality replaces the size
    assert.deepEqual(calls, [
      'sub TR_1 false',
      'set TR_1 false low 0x0',
      'set TR_1 false high 320x180',
      'set TR_1 true high 320x180',
      'set TR_1 true medium 0x0',
    ]);
  });
});

describe('RoomState speakers and quality', () => {
  it('merges speaker changes and sorts by level', () => {
    const { state, rec, local } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1), participant('PA_b', 'bob', 1)]);
    rec.take();
    state.applySpeakers([new SpeakerInfo({ sid: 'PA_a', level: 0.2, active: true }), new SpeakerInfo({ sid: 'PA_me', level: 0.6, active: true })]);
    assert.deepEqual(rec.take(), ['speakers [me,alice]']);
    assert.equal(local.isSpeaking, true);
    state.applySpeakers([new SpeakerInfo({ sid: 'PA_me', active: false }), new SpeakerInfo({ sid: 'PA_b', level: 0.1, active: true })]);
    assert.deepEqual(rec.take(), ['speakers [alice,bob]']);
    assert.equal(local.isSpeaking, false);
    state.applyUpdate([participant('PA_a', 'alice', 2, [], ParticipantInfo_State.DISCONNECTED)]);
    assert.deepEqual(rec.take(), ['speakers [bob]', 'left alice']);
  });

  it('reports connection quality changes for known participants only', () => {
    const { state, rec } = setup();
    state.applyUpdate([participant('PA_a', 'alice', 1)]);
    rec.take();
    state.applyQuality([
      new ConnectionQualityInfo({ participantSid: 'PA_a', quality: ConnectionQuality.POOR }),
      new ConnectionQualityInfo({ participantSid: 'PA_me', quality: ConnectionQuality.EXCELLENT }),
      new ConnectionQualityInfo({ participantSid: 'PA_zz', quality: ConnectionQuality.GOOD }),
    ]);
    state.applyQuality([new ConnectionQualityInfo({ participantSid: 'PA_a', quality: ConnectionQuality.POOR })]);
    assert.deepEqual(rec.take(), ['quality alice poor', 'quality me excellent']);
  });
});

describe('parseStreamId', () => {
  it('splits PA_x|TR_y', () => {
    assert.deepEqual(parseStreamId('PA_x|TR_y'), { participantSid: 'PA_x', trackSid: 'TR_y' });
    assert.equal(parseStreamId('nobar'), undefined);
    assert.equal(parseStreamId('|TR_y'), undefined);
    assert.equal(parseStreamId('PA_x|'), undefined);
  });
});
