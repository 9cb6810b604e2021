import { DataPacket, JoinResponse, LeaveRequest, LeaveRequest_Action, ParticipantUpdate, SignalRequest, SignalResponse } from '@livekit/protocol';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeUserData, encodeUserData } from '../src/data.js';
import { JoinError, SignalChannel, explainJoinFailure, signalURL, validateURL, type SocketLike } from '../src/signal.js';
import { FakeClock, flush } from './fakes.js';

/** FakeSocket is a WebSocket the test plays the server of. */
class FakeSocket implements SocketLike {
  binaryType = 'blob';
  sent: SignalRequest[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  send(data: Uint8Array): void {
    this.sent.push(SignalRequest.fromBinary(data));
  }

  close(): void {
    this.closed = true;
  }

  serve(message: SignalResponse['message']): void {
    const bytes = new SignalResponse({ message }).toBinary();
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
}

function setup() {
  const clock = new FakeClock();
  const socket = new FakeSocket();
  const ch = new SignalChannel('ws://x/rtc', () => socket, clock, () => clock.now);
  return { clock, socket, ch };
}

describe('SignalChannel', () => {
  it('resolves with the join response and hands later messages to the handler, in order', async () => {
    const { socket, ch } = setup();
    const joined = ch.connect();
    assert.equal(socket.binaryType, 'arraybuffer');
    socket.serve({ case: 'join', value: new JoinResponse({ serverVersion: '1.0' }) });
    socket.serve({ case: 'update', value: new ParticipantUpdate() });
    const join = await joined;
    assert.equal(join.serverVersion, '1.0');
    const seen: string[] = [];
    ch.setHandler((m) => seen.push(m.message.case ?? '?'));
    socket.serve({ case: 'pong', value: 1n });
    assert.deepEqual(seen, ['update', 'pong']);
    assert.equal(ch.send({ case: 'ping', value: 5n }), true);
    assert.equal(socket.sent[0].message.case, 'ping');
  });

  it('rejects the join when the server answers with a leave', async () => {
    const { socket, ch } = setup();
    const joined = ch.connect();
    socket.serve({ case: 'leave', value: new LeaveRequest({ action: LeaveRequest_Action.RECONNECT }) });
    await assert.rejects(joined, (e: unknown) => e instanceof JoinError && e.leave?.value.action === LeaveRequest_Action.RECONNECT);
    assert.equal(socket.closed, true);
  });

  it('rejects the join when the socket closes first', async () => {
    const { socket, ch } = setup();
    const joined = ch.connect();
    socket.onclose?.({ code: 1006, reason: '' });
    await assert.rejects(joined, /closed before join \(code 1006\)/);
  });

  it('reports a lost connection after a close, but not after close()', async () => {
    const { socket, ch } = setup();
    const joined = ch.connect();
    socket.serve({ case: 'join', value: new JoinResponse() });
    await joined;
    const lost: string[] = [];
    ch.onClose = (r) => lost.push(r);
    socket.onclose?.({ code: 1001, reason: 'going away' });
    assert.deepEqual(lost, ['signal connection closed (code 1001: going away)']);
    ch.close();
    assert.deepEqual(lost.length, 1);
  });

  it('pings and declares the connection lost when the server goes silent', async () => {
    const { clock, socket, ch } = setup();
    const joined = ch.connect();
    socket.serve({ case: 'join', value: new JoinResponse() });
    await joined;
    const lost: string[] = [];
    ch.onClose = (r) => lost.push(r);
    ch.setHandler(() => {});
    ch.startPing(10, 30);
    await clock.advance(10_000);
    assert.equal(socket.sent.filter((r) => r.message.case === 'ping').length, 1);
    socket.serve({ case: 'pong', value: 1n });
    await clock.advance(30_000);
    assert.deepEqual(lost, []);
    await clock.advance(20_000);
    assert.deepEqual(lost, ['signal ping timeout']);
    assert.equal(socket.closed, true);
    await flush();
  });

  it('builds the /rtc and /rtc/validate URLs', () => {
    assert.equal(signalURL('http://h:7880/', 't k', { protocol: '16' }), 'ws://h:7880/rtc?access_token=t+k&protocol=16');
    assert.equal(signalURL('wss://h/base', 't', {}), 'wss://h/base/rtc?access_token=t');
    assert.equal(validateURL('ws://h:7880/rtc?access_token=t&protocol=16'), 'http://h:7880/rtc/validate?access_token=t&protocol=16');
    assert.equal(validateURL('wss://h/rtc?access_token=t'), 'https://h/rtc/validate?access_token=t');
  });
});

describe('explainJoinFailure', () => {
  it('replaces a bare WebSocket failure by what /rtc/validate says', async () => {
    const g = globalThis as { fetch?: unknown };
    const saved = g.fetch;
    const asked: string[] = [];
    g.fetch = async (url: string) => {
      asked.push(url);
      return { ok: false, status: 401, text: async () => 'token expired\n' };
    };
    try {
      const err = await explainJoinFailure('ws://h/rtc?access_token=t', new JoinError('signal connection failed'));
      assert.equal((err as Error).message, 'join refused (HTTP 401): token expired');
      assert.deepEqual(asked, ['http://h/rtc/validate?access_token=t']);
      const other = new Error('not a join error');
      assert.equal(await explainJoinFailure('ws://h/rtc', other), other);
    } finally {
      g.fetch = saved;
    }
  });
});

describe('data packets', () => {
  it('round-trips a user message with topic and destinations', () => {
    const bytes = encodeUserData(new TextEncoder().encode('hello'), { topic: 'chat', destinationIdentities: ['bob'] });
    const pkt = DataPacket.fromBinary(bytes);
    assert.deepEqual(pkt.destinationIdentities, ['bob']);
    pkt.participantIdentity = 'alice';
    pkt.participantSid = 'PA_a';
    const got = decodeUserData(pkt.toBinary(), '_reliable');
    assert.ok(got);
    assert.equal(new TextDecoder().decode(got.payload), 'hello');
    assert.equal(got.topic, 'chat');
    assert.equal(got.senderIdentity, 'alice');
    assert.equal(got.kind, 'reliable');
    assert.equal(decodeUserData(pkt.toBinary(), '_lossy')?.kind, 'lossy');
  });

  it('ignores packets that are not user messages or not protobuf', () => {
    assert.equal(decodeUserData(new DataPacket({ value: { case: 'speaker', value: {} as never } }).toBinary(), '_reliable'), undefined);
    assert.equal(decodeUserData(new Uint8Array([0xff, 0xff, 0xff]), '_reliable'), undefined);
  });
});
