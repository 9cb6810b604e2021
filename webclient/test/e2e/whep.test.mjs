// Acceptance (issue 6, point 4): the broadcast viewer page plays a
// participant over WHEP in headless Chromium. A demo room page publishes
// camera and microphone as identity `studio`; the viewer page, opened at
// /viewer?mode=whep&participant=studio, POSTs its offer to /whep, decodes
// the video (framesDecoded rising) and receives the audio; its Leave
// button DELETEs the session (200) and the viewer leaves the room. When
// a broadcaster leaves, its viewers are told. A viewer of an identity
// that is not in the room shows the server's 404 reason.
//
// Run: cd webclient && node --test --test-concurrency=1 test/e2e/whep.test.mjs

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, screenshot, sleep, startFanout, teardown, waitFor, fanoutLogTail, openOriginPage } from './harness.mjs';

const NAME = 'whep';
const ROOM = `whep-e2e-${Date.now().toString(36)}`;

let fanout;
let browser;

before(async () => {
  [fanout, browser] = await Promise.all([startFanout({ name: NAME }), launchChromium()]);
}, { timeout: 90_000 });

after(teardown, { timeout: 60_000 });

/** Opens a page of the fanout origin in a fresh context. */
const open = (label, path) => openOriginPage(browser, fanout, NAME, label, path);

/** The viewer's inbound RTP stats by kind, from its WHEP peer connection. */
function inbound(viewer) {
  return viewer.page.evaluate(async () => {
    const pc = window.__whep?.session?.pc;
    if (!pc) return {};
    const out = {};
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'inbound-rtp') out[s.kind] = { packets: s.packetsReceived, frames: s.framesDecoded, width: s.frameWidth };
    }
    return out;
  });
}


describe('WHEP playback in the broadcast viewer page', () => {
  it('plays a participant published by another page, and DELETEs on leave', async () => {
    const studio = await open('studio', `/?room=${ROOM}&name=Studio&identity=studio&autojoin=1`);
    const viewer = await open('viewer', `/viewer?room=${ROOM}&participant=studio&mode=whep&autojoin=1`);
    try {
      await studio.page.locator('[data-testid=connection-state][data-state=connected]').waitFor();
      // The viewer may have asked before the studio published: retry the
      // form until the server has the tracks to play.
      await waitFor(async () => {
        if (await viewer.page.locator('[data-testid=whep-video]').isVisible()) return true;
        const err = await viewer.page.locator('[data-testid=viewer-error]').textContent();
        if (err) await viewer.page.click('[data-testid=viewer-submit]');
        return false;
      }, { timeout: 20_000, interval: 1_000, what: 'the viewer plays over WHEP' });
      const first = await waitFor(async () => {
        const s = await inbound(viewer);
        return s.video?.frames > 0 && s.audio?.packets > 0 ? s : false;
      }, { timeout: 20_000, what: 'decoded video and received audio over WHEP' });
      await sleep(2_000);
      const second = await inbound(viewer);
      console.log(`# WHEP viewer: ${JSON.stringify(first)} -> ${JSON.stringify(second)}`);
      assert.ok(second.video.frames > first.video.frames, `framesDecoded rises: ${first.video.frames} -> ${second.video.frames}`);
      assert.ok(second.audio.packets > first.audio.packets, 'audio keeps arriving');
      assert.equal(await viewer.page.locator('[data-testid=connection-state]').getAttribute('data-state'), 'connected');
      await screenshot(viewer.page, NAME, 'viewer-playing');

      await viewer.page.click('[data-testid=viewer-leave]');
      const status = await waitFor(() => viewer.page.evaluate(() => window.__whep?.deleteStatus), { what: 'the DELETE' });
      assert.equal(status, 200, 'DELETE of the WHEP session');
      await waitFor(() => viewer.page.locator('[data-testid=viewer-join]').isVisible(), { what: 'the form again' });
    } catch (err) {
      for (const p of [studio, viewer]) await screenshot(p.page, NAME, `FAILED-${p.label}`).catch(() => {});
      err.message += `\n--- viewer console:\n${viewer.consoleLines.slice(-20).join('\n')}\n--- fanout log:\n${fanoutLogTail(fanout)}`;
      throw err;
    }
  });

  it('tells the viewer when the broadcaster leaves', async () => {
    const studio = await open('studio2', `/?room=${ROOM}&name=Studio2&identity=studio2&autojoin=1`);
    await studio.page.locator('[data-testid=connection-state][data-state=connected]').waitFor();
    const viewer = await open('viewer2', `/viewer?room=${ROOM}&participant=studio2&mode=whep`);
    await waitFor(async () => {
      if (await viewer.page.locator('[data-testid=whep-video]').isVisible()) return true;
      await viewer.page.click('[data-testid=viewer-submit]');
      return false;
    }, { timeout: 20_000, interval: 2_500, what: 'the viewer plays studio2' });
    await waitFor(async () => (await inbound(viewer)).video?.frames > 0, { timeout: 15_000, what: 'decoded video' });
    await studio.page.click('[data-testid=leave]');
    const text = await waitFor(async () => (await viewer.page.locator('[data-testid=viewer-error]').textContent()) || false,
      { timeout: 15_000, what: 'the viewer notices the end of the broadcast' });
    assert.match(text, /broadcast of studio2 ended/);
    assert.ok(await viewer.page.locator('[data-testid=viewer-join]').isVisible(), 'the form is back');
  });

  it('shows the server reason for a participant who is not there', async () => {
    const viewer = await open('viewer-404', `/viewer?room=${ROOM}&participant=nobody&mode=whep&autojoin=1`);
    const text = await waitFor(async () => (await viewer.page.locator('[data-testid=viewer-error]').textContent()) || false,
      { timeout: 15_000, what: 'an error message' });
    assert.match(text, /WHEP 404: .*"nobody" is not in room/);
  });
});
