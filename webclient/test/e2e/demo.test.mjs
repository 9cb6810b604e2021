// Acceptance: Fanout's own demo room page (served by the fanout binary at `/`,
// dev tokens from /api/dev-token) in headless Chromium. Two pages join one
// room through the join form; each decodes the other's camera and receives
// its audio; a camera mute shows on the other page; a screen share appears
// as a second tile; a data message arrives; killing one page's WebSocket
// (not the page) makes it reconnect and media flows again; leaving removes
// the tile on the other page within 2 s. Screenshots go to test-artifacts/.
//
// Run: cd webclient && node --test --test-concurrency=1 test/e2e/demo.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  captureConsole, launchChromium, screenshot, sleep, startFanout, teardown, waitFor,
} from './harness.mjs';

const NAME = 'demo';
const ROOM = `demo-e2e-${Date.now().toString(36)}`;

// getDisplayMedia in headless Chromium needs no extra flag: the harness's
// --use-fake-ui-for-media-stream accepts the picker and
// --use-fake-device-for-media-stream supplies a synthetic screen (checked:
// --auto-select-desktop-capture-source changes nothing). The click on the
// page's share button is the user gesture it wants.

// Keeps every WebSocket the page creates in window.__e2eSockets so the test
// can kill the signalling connection without touching the page.
const WS_SPY = () => {
  const Orig = window.WebSocket;
  window.__e2eSockets = [];
  class SpyWebSocket extends Orig {
    constructor(...args) {
      super(...args);
      window.__e2eSockets.push(this);
    }
  }
  window.WebSocket = SpyWebSocket;
};

/** @type {Awaited<ReturnType<typeof startFanout>>} */
let fanout;
let browser;
/** @type {{page: import('playwright-core').Page, label: string, identity: string, consoleLines: string[]}} */
let alice;
/** @type {typeof alice} */
let bob;

before(async () => {
  [fanout, browser] = await Promise.all([startFanout({ name: NAME }), launchChromium()]);
}, { timeout: 90_000 });

after(teardown, { timeout: 60_000 });

/** Opens the demo page in a fresh context and joins ROOM through the join form. */
async function joinThroughForm(label) {
  const context = await browser.newContext({ viewport: { width: 960, height: 600 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: fanout.url });
  await context.addInitScript(WS_SPY);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleLines = captureConsole(page, `${NAME}-${label}`);
  await page.goto(`${fanout.url}/`);
  await page.locator('[data-testid=join-form][data-ready=true]').waitFor();
  await page.fill('[data-testid=join-room]', ROOM);
  await page.fill('[data-testid=join-name]', label);
  await page.click('[data-testid=join-submit]');
  await page.locator('[data-testid=connection-state][data-state=connected]').waitFor();
  await page.locator('body[data-view=room]').waitFor();
  const identity = await page.evaluate(() => window.fanoutRoom.localParticipant.identity);
  assert.ok(identity, 'local identity');
  return { page, label, identity, consoleLines };
}

/** The recent console lines of a page and the server log's tail, for failure messages. */
function diag(...pages) {
  const parts = pages.map((p) => `--- ${p.label} console (last 25):\n${p.consoleLines.slice(-25).join('\n')}`);
  try {
    const log = readFileSync(fanout.logPath, 'utf8').trim().split('\n');
    parts.push(`--- fanout log (last 25 of ${fanout.logPath}):\n${log.slice(-25).join('\n')}`);
  } catch {
    // no log yet
  }
  return parts.join('\n');
}

/** Runs fn; on failure rethrows with a diagnosis and saves a screenshot of each page. */
async function withDiag(step, fn, ...pages) {
  try {
    return await fn();
  } catch (err) {
    for (const p of pages) await screenshot(p.page, NAME, `FAILED-${step}-${p.label}`).catch(() => {});
    err.message = `${step}: ${err.message}\n${diag(...pages)}`;
    throw err;
  }
}

/**
 * Inbound RTP stats of `from`'s track of `source` as `viewer` receives it,
 * through the SDK's publication receiver, plus the tile's <video> size.
 */
async function remoteMedia(viewer, from, source, kind = 'video') {
  return viewer.page.evaluate(async ({ identity, source, kind }) => {
    const room = window.fanoutRoom;
    const p = room?.remoteParticipants.get(identity);
    const pub = p?.getTrackPublication(source);
    const r = pub?.receiver;
    if (!r) return { error: `no receiver (participant ${!!p}, publication ${!!pub})` };
    let inbound;
    for (const s of (await r.getStats()).values()) if (s.type === 'inbound-rtp' && s.kind === kind) inbound = s;
    const video = document.querySelector(
      `[data-testid=tile][data-identity="${CSS.escape(identity)}"][data-source="${source}"] [data-testid=tile-video]`,
    );
    // Tags the receiver object: a rejoin gives new peer connections and new
    // receivers, while the track id (the publisher's track sid) may stay.
    r.__e2eTag ??= Math.random().toString(36).slice(2);
    return {
      receiver: r.__e2eTag,
      trackId: r.track?.id,
      framesDecoded: inbound?.framesDecoded ?? 0,
      packetsReceived: inbound?.packetsReceived ?? 0,
      videoWidth: video?.videoWidth ?? 0,
      videoHeight: video?.videoHeight ?? 0,
    };
  }, { identity: from.identity, source, kind });
}

/** Asserts that viewer decodes from's `source` video: videoWidth > 0 and framesDecoded rising over 3 s. */
async function assertVideoFlows(viewer, from, source = 'camera') {
  const first = await waitFor(async () => {
    const m = await remoteMedia(viewer, from, source);
    return m.videoWidth > 0 && m.framesDecoded > 0 ? m : null;
  }, { timeout: 15_000, what: `${viewer.label} decoding ${from.label}'s ${source}` });
  await sleep(3_000);
  const second = await remoteMedia(viewer, from, source);
  assert.equal(second.receiver, first.receiver, 'same receiver over the 3 s window');
  assert.ok(second.videoWidth > 0, `${viewer.label}: ${from.label}'s ${source} videoWidth ${second.videoWidth}`);
  // The fake camera runs at 20 fps: 3 s should give ~60 frames; ask for 15.
  assert.ok(second.framesDecoded - first.framesDecoded >= 15,
    `${viewer.label}: ${from.label}'s ${source} framesDecoded ${first.framesDecoded} -> ${second.framesDecoded} in 3 s`);
  return second;
}

/** Asserts that viewer receives from's audio packets (rising). */
async function assertAudioFlows(viewer, from) {
  const first = await waitFor(async () => {
    const m = await remoteMedia(viewer, from, 'microphone', 'audio');
    return m.packetsReceived > 0 ? m : null;
  }, { timeout: 15_000, what: `${viewer.label} receiving ${from.label}'s audio` });
  await sleep(1_000);
  const second = await remoteMedia(viewer, from, 'microphone', 'audio');
  assert.ok(second.packetsReceived - first.packetsReceived >= 20,
    `${viewer.label}: ${from.label}'s audio packetsReceived ${first.packetsReceived} -> ${second.packetsReceived} in 1 s`);
}

/** A locator for viewer's tile of participant p and source. */
const tile = (viewer, p, source = 'camera') =>
  viewer.page.locator(`[data-testid=tile][data-identity="${p.identity}"][data-source="${source}"]`);

describe('demo room page', { timeout: 115_000 }, () => {
  it('two pages join the same room through the join form', { timeout: 40_000 }, async () => {
    alice = await joinThroughForm('alice');
    bob = await joinThroughForm('bob');
    await withDiag('join', async () => {
      await tile(alice, bob).waitFor({ timeout: 10_000 });
      await tile(bob, alice).waitFor({ timeout: 10_000 });
    }, alice, bob);
  });

  it('each page decodes the other\'s video and receives its audio', { timeout: 45_000 }, async () => {
    await withDiag('media', async () => {
      const [a, b] = await Promise.all([assertVideoFlows(alice, bob), assertVideoFlows(bob, alice)]);
      await Promise.all([assertAudioFlows(alice, bob), assertAudioFlows(bob, alice)]);
      console.log(`# alice sees bob ${a.videoWidth}x${a.videoHeight}, bob sees alice ${b.videoWidth}x${b.videoHeight}`);
    }, alice, bob);
    await screenshot(alice.page, NAME, '1-joined-alice');
    await screenshot(bob.page, NAME, '1-joined-bob');
  });

  it('muting the camera shows as muted on the other page', { timeout: 20_000 }, async () => {
    await withDiag('mute', async () => {
      await alice.page.click('[data-testid=toggle-camera]');
      await tile(bob, alice).and(bob.page.locator('[data-video-muted=true]')).waitFor({ timeout: 5_000 });
      await screenshot(bob.page, NAME, '2-alice-camera-muted-bob');
      await alice.page.click('[data-testid=toggle-camera]');
      await tile(bob, alice).and(bob.page.locator('[data-video-muted=false]')).waitFor({ timeout: 5_000 });
    }, alice, bob);
  });

  it('a data message arrives', { timeout: 15_000 }, async () => {
    await withDiag('data', async () => {
      await bob.page.evaluate(() => {
        window.__e2eData = [];
        window.fanoutRoom.on('dataReceived', (payload, topic, sender, kind) => {
          window.__e2eData.push({ text: new TextDecoder().decode(payload), topic, sender: sender?.identity, kind });
        });
      });
      await alice.page.evaluate(() => window.fanoutRoom.localParticipant.sendData('hello from alice', { topic: 'chat', kind: 'reliable' }));
      const got = await waitFor(() => bob.page.evaluate(() => window.__e2eData[0]), { timeout: 5_000, what: 'bob receiving the data message' });
      assert.deepEqual({ text: got.text, topic: got.topic, sender: got.sender }, { text: 'hello from alice', topic: 'chat', sender: alice.identity });
    }, alice, bob);
  });

  it('a screen share appears as a second tile', { timeout: 30_000 }, async () => {
    await withDiag('screen share', async () => {
      await bob.page.click('[data-testid=toggle-screen]');
      await tile(alice, bob, 'screen_share').waitFor({ timeout: 10_000 });
      await assertVideoFlows(alice, bob, 'screen_share');
      assert.equal(await alice.page.locator(`[data-testid=tile][data-identity="${bob.identity}"]`).count(), 2, 'bob has two tiles');
      await screenshot(alice.page, NAME, '3-bob-screen-share-alice');
      await bob.page.click('[data-testid=toggle-screen]');
      await tile(alice, bob, 'screen_share').waitFor({ state: 'detached', timeout: 5_000 });
    }, alice, bob);
  });

  it('killing the WebSocket reconnects and restores media', { timeout: 50_000 }, async () => {
    await withDiag('reconnect', async () => {
      // Record the page's connection states from now on.
      await alice.page.evaluate(() => {
        window.__e2eStates = [];
        const el = document.querySelector('[data-testid=connection-state]');
        new MutationObserver(() => window.__e2eStates.push(el.dataset.state)).observe(el, { attributes: true, attributeFilter: ['data-state'] });
      });
      const before = await remoteMedia(alice, bob, 'camera');
      const killed = await alice.page.evaluate(() => {
        const open = window.__e2eSockets.filter((s) => s.readyState === WebSocket.OPEN);
        for (const s of open) s.close(4000, 'e2e: killed');
        return open.length;
      });
      assert.equal(killed, 1, 'one open signalling WebSocket');
      // The close event comes asynchronously: wait for the page to have gone
      // through 'reconnecting' and be 'connected' again, not just 'connected'.
      const t0 = Date.now();
      const states = await waitFor(() => alice.page.evaluate(() => {
        const el = document.querySelector('[data-testid=connection-state]');
        return window.__e2eStates.includes('reconnecting') && el.dataset.state === 'connected' ? window.__e2eStates : null;
      }), { timeout: 25_000, interval: 50, what: 'alice going reconnecting -> connected' });
      console.log(`# alice: ${states.join(' -> ')} in ${Date.now() - t0} ms after the WebSocket kill`);
      assert.equal(states.at(-1), 'connected');
      assert.ok(await alice.page.locator('[data-testid=reconnect-banner]').isHidden(), 'reconnect banner hidden again');
      await screenshot(alice.page, NAME, '4-reconnected-alice');
      const after = await assertVideoFlows(alice, bob);
      assert.notEqual(after.receiver, before.receiver, 'media arrives on a new receiver after the rejoin');
      await assertVideoFlows(bob, alice);
      await Promise.all([assertAudioFlows(alice, bob), assertAudioFlows(bob, alice)]);
      await screenshot(bob.page, NAME, '4-reconnected-bob');
    }, alice, bob);
  });

  it('leaving removes the tile on the other page within 2 s', { timeout: 15_000 }, async () => {
    await withDiag('leave', async () => {
      await tile(alice, bob).waitFor({ timeout: 5_000 });
      const t0 = Date.now();
      await bob.page.click('[data-testid=leave]');
      await tile(alice, bob).waitFor({ state: 'detached', timeout: 5_000 });
      const ms = Date.now() - t0;
      console.log(`# bob's tile left alice's page ${ms} ms after the click`);
      await screenshot(alice.page, NAME, '5-bob-left-alice');
      assert.ok(ms <= 2_000, `tile removed after ${ms} ms`);
    }, alice, bob);
  });
});
