import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reconnector, defaultBackoff, type ReconnectParams } from '../src/reconnect.js';
import { FakeClock } from './fakes.js';

/** A rejoin whose outcome each test decides, attempt by attempt. */
class FakeRejoin {
  calls = 0;
  signals: AbortSignal[] = [];
  private settle: { resolve: () => void; reject: (e: Error) => void }[] = [];

  fn = (_attempt: number, signal: AbortSignal): Promise<void> => {
    this.calls++;
    this.signals.push(signal);
    return new Promise<void>((resolve, reject) => this.settle.push({ resolve, reject }));
  };

  succeed(): void {
    this.settle.shift()?.resolve();
  }

  fail(msg = 'network down'): void {
    this.settle.shift()?.reject(new Error(msg));
  }
}

function setup(extra: Partial<ReconnectParams> = {}) {
  const clock = new FakeClock();
  const rejoin = new FakeRejoin();
  const log: string[] = [];
  const r = new Reconnector({
    rejoin: rejoin.fn,
    timers: clock,
    maxAttempts: 3,
    attemptTimeoutMs: 10_000,
    onReconnecting: (reason) => log.push(`reconnecting: ${reason}`),
    onReconnected: () => log.push('reconnected'),
    onGiveUp: (err) => log.push(`gave up: ${(err as Error).message}`),
    onAttemptFailed: (n) => log.push(`attempt ${n} failed`),
    ...extra,
  });
  return { clock, rejoin, log, r };
}

describe('Reconnector', () => {
  it('drop → reconnecting → backoff → rejoin → reconnected', async () => {
    const { clock, rejoin, log, r } = setup();
    assert.equal(r.state, 'idle');
    r.drop('ignored before the first connection');
    assert.equal(r.state, 'idle');
    r.connected();
    r.drop('ws closed');
    assert.equal(r.state, 'waiting');
    assert.deepEqual(log, ['reconnecting: ws closed']);
    assert.deepEqual(clock.pending(), [250]);
    await clock.advance(249);
    assert.equal(rejoin.calls, 0);
    await clock.advance(1);
    assert.equal(rejoin.calls, 1);
    assert.equal(r.state, 'rejoining');
    r.drop('a second drop while rejoining is ignored');
    rejoin.succeed();
    await clock.advance(0);
    assert.equal(r.state, 'connected');
    assert.deepEqual(log, ['reconnecting: ws closed', 'reconnected']);
    assert.deepEqual(clock.pending(), [], 'the attempt deadline is cleared');
  });

  it('backs off between failed attempts and gives up after maxAttempts', async () => {
    const { clock, rejoin, log, r } = setup();
    r.connected();
    r.drop('ice failed');
    await clock.advance(250);
    rejoin.fail();
    await clock.advance(0);
    assert.equal(r.state, 'waiting');
    assert.deepEqual(clock.pending(), [500]);
    await clock.advance(500);
    rejoin.fail();
    await clock.advance(0);
    assert.deepEqual(clock.pending(), [1000]);
    await clock.advance(1000);
    assert.equal(rejoin.calls, 3);
    rejoin.fail('still down');
    await clock.advance(0);
    assert.equal(r.state, 'disconnected');
    assert.deepEqual(log, [
      'reconnecting: ice failed',
      'attempt 0 failed',
      'attempt 1 failed',
      'attempt 2 failed',
      'gave up: still down',
    ]);
    await clock.advance(60_000);
    assert.equal(rejoin.calls, 3, 'no attempt after giving up');
  });

  it('counts an attempt that hangs as failed, and aborts it', async () => {
    const { clock, rejoin, log, r } = setup();
    r.connected();
    r.drop('ws closed');
    await clock.advance(250);
    await clock.advance(10_000);
    assert.equal(rejoin.signals[0].aborted, true);
    assert.deepEqual(log, ['reconnecting: ws closed', 'attempt 0 failed']);
    await clock.advance(500);
    assert.equal(rejoin.calls, 2);
    rejoin.fail(); // the first, already abandoned
    rejoin.succeed();
    await clock.advance(0);
    assert.equal(r.state, 'connected');
  });

  it('leave while waiting cancels the attempt', async () => {
    const { clock, rejoin, log, r } = setup();
    r.connected();
    r.drop('ws closed');
    r.leave();
    assert.equal(r.state, 'disconnected');
    await clock.advance(10_000);
    assert.equal(rejoin.calls, 0);
    assert.deepEqual(log, ['reconnecting: ws closed']);
  });

  it('leave while rejoining aborts it and ignores its outcome', async () => {
    const { clock, rejoin, log, r } = setup();
    r.connected();
    r.drop('ws closed');
    await clock.advance(250);
    r.leave();
    assert.equal(rejoin.signals[0].aborted, true);
    rejoin.succeed();
    await clock.advance(20_000);
    assert.equal(r.state, 'disconnected');
    assert.deepEqual(log, ['reconnecting: ws closed']);
  });

  it('starts again from the first backoff after a successful rejoin', async () => {
    const { clock, rejoin, r } = setup();
    r.connected();
    r.drop('one');
    await clock.advance(250);
    rejoin.fail();
    await clock.advance(500);
    rejoin.succeed();
    await clock.advance(0);
    assert.equal(r.state, 'connected');
    r.drop('two');
    assert.deepEqual(clock.pending(), [250]);
  });

  it('default backoff doubles up to 8 s', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(defaultBackoff), [250, 500, 1000, 2000, 4000, 8000, 8000]);
  });
});
