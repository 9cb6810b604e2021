// Per-subscriber simulcast layers against a real fanout binary, in headless
// Chromium.
//
// A page "pub" publishes the fake camera at 1280x720 (VP8, simulcast q/h/f =
// 320x180, 640x360, 1280x720) with dynacast on; a page "sub" receives it
// with the unmodified livekit-client 2.23.0 (adaptiveStream off). Once sub
// decodes the top layer it asks for VideoQuality.LOW (a trackSetting),
// waits until the decoded frame width is below 640 (320: layer q), stays
// there past fanout's ~3 s dynacast delay, then asks for VideoQuality.HIGH
// and waits for 1280 again. A sampler in the sub page reads the receiver's
// inbound-rtp stats every 100 ms the whole time: framesDecoded must keep
// rising, with no stretch longer than 500 ms without a new decoded frame
// (fanout switches at keyframes and munges the stream, so the picture must
// not freeze). Each switch must land within 10 s. sub must see no errors,
// and both rooms must leave cleanly (CLIENT_INITIATED, seen by fanout too,
// which closes both participants' connections).
//
// 1. pub is livekit-client 2.23.0 (Room option dynacast: true), and
// 2. pub is Fanout's own SDK (sdk/src): in both, while sub is at LOW pub must turn
//    layers h and f off when fanout asks (dynacast), and turn f back on at
//    once when sub asks for HIGH, so that the up-switch includes restarting
//    the f encoder.
//
// Run: cd webclient && node --test --test-concurrency=1 test/e2e/simulcast.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  WEBCLIENT_DIR, artifactPath, bundle, captureConsole, launchChromium, screenshot, serveStatic, sleep, startFanout,
  teardown, tempDir, waitFor, withTimeout,
} from './harness.mjs';

const NAME = 'simulcast';
const LK_DIR = join(WEBCLIENT_DIR, 'test', 'e2e', 'lk');
const SDK_DIR = join(WEBCLIENT_DIR, 'test', 'e2e', 'sdk');

/** The longest a layer switch may take, from the trackSetting to the first frame of the new size. */
const SWITCH_TIMEOUT_MS = 10_000;
/** The longest stretch without a newly decoded frame the subscriber may see. */
const MAX_GAP_MS = 500;
/** How long sub stays at LOW: past fanout's 3 s dynacast delay, so that going back up re-enables layers. */
const HOLD_LOW_MS = 4_500;

/** @type {Awaited<ReturnType<typeof startFanout>>} */
let fanout;
let site;
let browser;

before(async () => {
  const out = tempDir('fanout-simulcast-page-');
  const [fo] = await Promise.all([
    startFanout({ name: NAME }),
    bundle(join(LK_DIR, 'page.ts'), out),
    bundle(join(SDK_DIR, 'fanout-page.ts'), out),
  ]);
  fanout = fo;
  copyFileSync(join(LK_DIR, 'index.html'), join(out, 'index.html'));
  copyFileSync(join(SDK_DIR, 'index.html'), join(out, 'fanout.html'));
  site = await serveStatic(out);
  browser = await launchChromium();
}, { timeout: 120_000 });

after(teardown, { timeout: 30_000 });

/**
 * Opens a test page in a fresh context: sdk 'lk' (livekit-client,
 * window.lkTest) or 'fanout' (Fanout's SDK, window.fanoutTest).
 */
async function openPage(label, sdk, test) {
  const context = await browser.newContext({ viewport: { width: 720, height: 420 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: site.url });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleLines = captureConsole(page, `${NAME}-${test}-${label}`);
  const global = sdk === 'lk' ? 'lkTest' : 'fanoutTest';
  await page.goto(`${site.url}/${sdk === 'lk' ? 'index.html' : 'fanout.html'}`);
  await page.waitForFunction((g) => typeof window[g] === 'object', global);
  await page.evaluate((l) => { document.getElementById('who').textContent = l; }, `${sdk === 'lk' ? 'livekit-client' : 'Fanout SDK'} simulcast: ${label}`);
  return { page, label, sdk, global, consoleLines };
}

/** Calls window.<lkTest|fanoutTest>[fn](...args) in the page. */
function call(p, fn, ...args) {
  return p.page.evaluate(([g, f, a]) => window[g][f](...a), [p.global, fn, args]);
}

async function context(p) {
  const events = await call(p, 'events').catch(() => []);
  return `\n--- ${p.label} events ---\n${events.slice(-30).join('\n')}\n--- ${p.label} console (tail) ---\n${p.consoleLines.slice(-30).join('\n')}\n--- fanout log: ${fanout.logPath}`;
}

/** fanout's log lines (debug level in --dev) that match re. */
function fanoutLog(re) {
  return readFileSync(fanout.logPath, 'utf8').split('\n').filter((l) => re.test(l));
}

/**
 * Console lines of a page that report an error. livekit-client first tries
 * /rtc/v1 and falls back to /rtc on its 404: Chromium logs that 404 (the
 * validate fetch and the WebSocket handshake) as errors; they are expected.
 */
function consoleErrors(lines) {
  return lines.filter((l) => /\[(error|pageerror|requestfailed|crash)\]/.test(l))
    .filter((l) => !/Failed to load resource: the server responded with a status of 404/.test(l))
    .filter((l) => !/WebSocket connection to '[^']*\/rtc\/v1\?[^']*' failed: Error during WebSocket handshake: Unexpected response code: 404/.test(l));
}

/**
 * Polls the sub page's sampler until a sample after sinceT (page clock)
 * satisfies pred; returns that sample, or throws after timeout.
 */
async function waitForSample(sub, sinceT, pred, what, timeout = SWITCH_TIMEOUT_MS + 2_000) {
  let seen = 0;
  let last;
  return waitFor(async () => {
    const fresh = await call(sub, 'samples', seen);
    seen += fresh.length;
    for (const s of fresh) {
      last = s;
      if (s.t >= sinceT && pred(s)) return s;
    }
    return false;
  }, { timeout, interval: 100, what })
    .catch((e) => { throw new Error(`${e.message}; last sample ${JSON.stringify(last)}`); });
}

/** The publisher's camera encodings as [{rid, active}]. */
async function encodingsOf(pub) {
  const e = await call(pub, 'senderEncodings');
  return Array.isArray(e) ? e : e.encodings;
}

/** "q+ h- f-" */
const flags = (encodings) => encodings.map((e) => `${e.rid}${e.active ? '+' : '-'}`).join(' ');

/** Per-layer kbps over 1 s and the sender's encodings on the publisher page. */
async function publisherLayers(pub) {
  const bytes = async () => Object.fromEntries((await call(pub, 'outboundStats'))
    .filter((o) => o.source === 'camera').map((o) => [o.rid, o]));
  const a = await bytes();
  await sleep(1_000);
  const b = await bytes();
  const layers = Object.keys(b).sort().map((rid) => ({
    rid, kbps: Math.round(((b[rid].bytesSent - (a[rid]?.bytesSent ?? 0)) * 8) / 1000), w: b[rid].frameWidth,
    lim: b[rid].qualityLimitationReason,
  }));
  return { layers, encodings: flags(await encodingsOf(pub)) };
}

/** The dynacast updates fanout sent so far for a track ("top_layer=N" each). */
function dynacastLog(trackSid) {
  return fanoutLog(new RegExp(`msg=dynacast .*track=${trackSid} `)).map((l) => l.replace(/^.*(top_layer=\S+).*$/, '$1'));
}

/**
 * The shared scenario: pub has published its camera (trackSid); sub (a
 * livekit-client page) joins, decodes 1280, switches to LOW and back to
 * HIGH while sampling. hooks.atLow(lowAt) runs while sub stays at LOW
 * (lowAt: Date.now() of the LOW request), hooks.afterHigh() right after the
 * up-switch landed.
 */
async function switchLowHigh({ name, room, pub, sub, trackSid, hooks = {} }) {
  const token = await fanout.token(room, sub.label, { name: `${sub.label} (lk)` });
  await withTimeout(call(sub, 'connect', fanout.wsUrl, token, sub.label, { dynacast: true, adaptiveStream: false }), 20_000, 'sub connect');
  await waitFor(async () => {
    const rs = await call(sub, 'remotes');
    const cam = rs.find((x) => x.identity === pub.label)?.tracks.find((t) => t.source === 'camera');
    return cam?.subscribed && cam.hasTrack;
  }, { timeout: 20_000, what: `sub subscribed to ${pub.label}'s camera` })
    .catch(async (e) => { throw new Error(e.message + await context(sub)); });

  // Start at the top layer: the subscriber's default (HIGH), once Chromium
  // sends f (its bandwidth estimate has to allow it).
  const t0 = Date.now();
  await waitFor(async () => {
    const s = await call(sub, 'sampleCamera', pub.label);
    return s && s.framesDecoded > 0 && s.frameWidth === 1280 ? s : false;
  }, { timeout: 30_000, interval: 200, what: `sub decodes ${pub.label}'s camera at 1280 wide (layer f)` })
    .catch(async (e) => {
      const up = await publisherLayers(pub).catch(() => undefined);
      throw new Error(`${e.message}; publisher layers ${JSON.stringify(up)}${await context(sub)}`);
    });
  console.log(`# sub first decoded 1280x720 (layer f) ${Date.now() - t0} ms after its subscription was up`);

  await call(sub, 'startSampler', pub.label, 100);
  try {
    await sleep(1_000);

    // Down: LOW.
    const tLow = await call(sub, 'setVideoQuality', pub.label, 'low');
    const lowAt = Date.now();
    const low = await waitForSample(sub, tLow, (s) => s.frameWidth > 0 && s.frameWidth < 640,
      'sub decodes below 640 wide after setVideoQuality(LOW)')
      .catch(async (e) => { throw new Error(e.message + await context(sub)); });
    const downMs = Math.round(low.t - tLow);
    console.log(`# switch HIGH -> LOW: frameWidth ${low.frameWidth}x${low.frameHeight} after ${downMs} ms`);
    assert.ok(downMs <= SWITCH_TIMEOUT_MS, `LOW switch took ${downMs} ms`);
    assert.equal(low.frameWidth, 320, 'the LOW layer (q) is 320 wide');

    // Stay at LOW past the dynacast delay.
    const holdUntil = Date.now() + HOLD_LOW_MS;
    await hooks.atLow?.(lowAt);
    await sleep(Math.max(0, holdUntil - Date.now()));
    const duringLow = await publisherLayers(pub);
    console.log(`# publisher after ${((HOLD_LOW_MS + 1_000) / 1000).toFixed(1)} s at LOW: ${JSON.stringify(duringLow)}`);
    console.log(`# fanout dynacast updates so far: ${dynacastLog(trackSid).join(', ') || 'none'}`);
    const stillLow = await call(sub, 'sampleCamera', pub.label);
    assert.equal(stillLow.frameWidth, 320, `still at LOW: ${JSON.stringify(stillLow)}`);

    // Up: HIGH.
    const tHigh = await call(sub, 'setVideoQuality', pub.label, 'high');
    const high = await waitForSample(sub, tHigh, (s) => s.frameWidth === 1280,
      'sub decodes 1280 wide after setVideoQuality(HIGH)')
      .catch(async (e) => {
        const up = await publisherLayers(pub).catch(() => undefined);
        throw new Error(`${e.message}; publisher layers ${JSON.stringify(up)}; dynacast ${dynacastLog(trackSid).join(', ')}${await context(sub)}`);
      });
    const upMs = Math.round(high.t - tHigh);
    console.log(`# switch LOW -> HIGH: frameWidth ${high.frameWidth}x${high.frameHeight} after ${upMs} ms`);
    assert.ok(upMs <= SWITCH_TIMEOUT_MS, `HIGH switch took ${upMs} ms`);
    await hooks.afterHigh?.();
    await sleep(2_000);

    await call(sub, 'stopSampler');
    const samples = await call(sub, 'samples', 0);
    // Every sample, with times relative to the LOW request, for diagnosis.
    const path = artifactPath(`${NAME}-${name}-samples.json`);
    writeFileSync(path, JSON.stringify({ lowAtPageMs: tLow, highAtMs: Math.round(tHigh - tLow), samples: samples.map((x) => ({ ...x, t: Math.round(x.t - tLow) })) }, null, 1));

    // framesDecoded never goes back and keeps rising: the longest stretch
    // between two samples that saw new frames (100 ms resolution).
    assert.ok(samples.length > 50, `enough samples: ${samples.length}`);
    let longest = { ms: 0, at: 0, from: 0 };
    let lastNew = samples[0];
    const rel = (t) => Math.round(t - tLow);
    for (let i = 1; i < samples.length; i++) {
      const s = samples[i];
      const prev = samples[i - 1];
      assert.ok(s.framesDecoded >= prev.framesDecoded, `framesDecoded went back: ${JSON.stringify(prev)} -> ${JSON.stringify(s)}`);
      if (s.framesDecoded > prev.framesDecoded) {
        if (s.t - lastNew.t > longest.ms) longest = { ms: Math.round(s.t - lastNew.t), from: rel(lastNew.t), at: rel(s.t) };
        lastNew = s;
      }
    }
    if (samples.at(-1).t - lastNew.t > longest.ms) longest = { ms: Math.round(samples.at(-1).t - lastNew.t), from: rel(lastNew.t), at: rel(samples.at(-1).t) };
    const span = (samples.at(-1).t - samples[0].t) / 1000;
    const frames = samples.at(-1).framesDecoded - samples[0].framesDecoded;
    const intervals = samples.slice(1).map((s, i) => s.t - samples[i].t);
    const widths = [...new Set(samples.map((s) => s.frameWidth))].join(',');
    console.log(`# ${samples.length} samples over ${span.toFixed(1)} s (longest sampling interval ${Math.round(Math.max(...intervals))} ms): ` +
      `${frames} frames decoded (${(frames / span).toFixed(1)} fps), keyframes ${samples[0].keyFramesDecoded} -> ${samples.at(-1).keyFramesDecoded}, widths seen ${widths}`);
    console.log(`# longest stretch without a new decoded frame: ${longest.ms} ms (from ${longest.from} to ${longest.at} ms after setVideoQuality(LOW); HIGH was asked at ${rel(tHigh)} ms; samples in ${path})`);
    assert.ok(longest.ms <= MAX_GAP_MS, `no new decoded frame for ${longest.ms} ms (limit ${MAX_GAP_MS})`);
    assert.ok(frames / span >= 10, `frames keep coming: ${(frames / span).toFixed(1)} fps`);
    return { downMs, upMs, longestGapMs: longest.ms, duringLow };
  } finally {
    await call(sub, 'stopSampler').catch(() => {});
  }
}

/** Asserts sub saw no errors; logs pub's. */
async function checkErrors(pub, sub) {
  assert.deepEqual(await call(sub, 'problems'), [], 'sub: no failed subscription, reconnect or disconnect');
  assert.deepEqual(consoleErrors(sub.consoleLines), [], 'sub: no errors in the console');
  const pubErrors = [...await call(pub, 'problems'), ...consoleErrors(pub.consoleLines)];
  if (pubErrors.length) console.log(`# pub errors (not asserted): ${pubErrors.join(' | ')}`);
}

/** Both pages leave; fanout must see both leave on purpose and close their connections. */
async function leaveCleanly(room, pub, sub) {
  const lk = await withTimeout(call(sub, 'disconnect'), 5_000, 'sub disconnect');
  assert.equal(lk.state, 'disconnected', 'sub room state after disconnect');
  assert.equal(lk.reason, 'CLIENT_INITIATED', 'sub Disconnected reason');
  if (pub.sdk === 'lk') {
    const res = await withTimeout(call(pub, 'disconnect'), 5_000, 'pub disconnect');
    assert.equal(res.state, 'disconnected', 'pub room state after disconnect');
    assert.equal(res.reason, 'CLIENT_INITIATED', 'pub Disconnected reason');
  } else {
    const res = await withTimeout(call(pub, 'leave'), 5_000, 'pub leave');
    assert.equal(res.state, 'disconnected', 'pub room state after leave');
  }
  // The empty room itself stays for the departure timeout (20 s by default).
  await waitFor(() => [pub.label, sub.label].every((id) => {
    const mine = fanoutLog(new RegExp(`room=${room} .*identity=${id}\\b`));
    return mine.some((l) => /msg="participant leaving".*reason=CLIENT_INITIATED/.test(l)) &&
      mine.some((l) => /msg="publisher pc state".*state=closed/.test(l)) &&
      mine.some((l) => /msg="subscriber pc state".*state=closed/.test(l));
  }), { timeout: 5_000, what: 'fanout logs both participants leaving (CLIENT_INITIATED) and both their connections closed' });
  const bad = fanoutLog(new RegExp(`level=(WARN|ERROR).*room=${room}\\b`));
  if (bad.length) console.log(`# fanout warnings/errors for the room (not asserted):\n${bad.join('\n')}`);
  for (const p of [pub, sub]) assert.deepEqual(await call(p, 'problems'), [], `${p.label}: no problems after leaving`);
}

/** Runs body with two pages, screenshots on failure, closes both. */
async function withPages(test, pubSdk, body) {
  const [pub, sub] = await Promise.all([openPage('pub', pubSdk, test), openPage('sub', 'lk', test)]);
  try {
    await body(pub, sub);
  } catch (err) {
    for (const p of [pub, sub]) await screenshot(p.page, NAME, `${test}-${p.label}-failure`).catch(() => {});
    throw err;
  } finally {
    await Promise.all([pub, sub].map((p) =>
      withTimeout(call(p, p.sdk === 'lk' ? 'disconnect' : 'leave'), 5_000, `${p.label} leave`).catch(() => {})));
    await Promise.all([pub, sub].map((p) => p.page.context().close().catch(() => {})));
  }
}

test('livekit-client 2.23.0 publisher and subscriber: LOW -> HIGH without freezing', { timeout: 120_000 }, async () => {
  const room = `sim-lk-${Date.now().toString(36)}`;
  await withPages('lk', 'lk', async (pub, sub) => {
    const token = await fanout.token(room, pub.label, { name: 'pub (lk)' });
    await withTimeout(call(pub, 'connect', fanout.wsUrl, token, pub.label, { dynacast: true, adaptiveStream: false }), 20_000, 'pub connect');
    const published = await withTimeout(call(pub, 'publish'), 20_000, 'pub publish');
    assert.equal(published.encodings, 3, 'camera sends three simulcast encodings (q/h/f)');

    const r = await switchLowHigh({
      name: 'lk', room, pub, sub, trackSid: published.video,
      hooks: {
        // livekit-client follows the per-codec list of fanout's
        // subscribedQualityUpdate: h and f off while sub is at LOW...
        atLow: async (lowAt) => {
          await waitFor(async () => flags(await encodingsOf(pub)) === 'q+ h- f-', {
            timeout: 8_000, interval: 100, what: 'livekit-client pub turns layers h and f off (dynacast) while sub is at LOW',
          }).catch(async (e) => { throw new Error(`${e.message}; encodings ${flags(await encodingsOf(pub))}; dynacast ${dynacastLog(published.video).join(', ')}${await context(pub)}`); });
          console.log(`# livekit-client pub turned h and f off ${Date.now() - lowAt} ms after sub asked for LOW`);
        },
        // ...and back on when sub asks for HIGH.
        afterHigh: async () => {
          assert.equal(flags(await encodingsOf(pub)), 'q+ h+ f+', 'pub encodes every layer again after sub asked for HIGH');
        },
      },
    });
    delete r.duringLow;
    console.log(`# result (livekit-client pub): ${JSON.stringify(r)}`);
    await screenshot(sub.page, NAME, 'lk-sub');
    await screenshot(pub.page, NAME, 'lk-pub');
    await checkErrors(pub, sub);
    await leaveCleanly(room, pub, sub);
  });
});

test('Fanout SDK publisher follows dynacast; livekit-client subscriber: LOW -> HIGH without freezing', { timeout: 120_000 }, async () => {
  const room = `sim-sdk-${Date.now().toString(36)}`;
  await withPages('sdk', 'fanout', async (pub, sub) => {
    const token = await fanout.token(room, pub.label, { name: 'pub (fanout sdk)' });
    await withTimeout(call(pub, 'join', fanout.wsUrl, token, pub.label), 20_000, 'pub join');
    const published = await withTimeout(call(pub, 'publishCamera'), 20_000, 'pub publish');
    assert.equal(published.encodings, 3, 'camera sends three simulcast encodings (q/h/f)');

    const r = await switchLowHigh({
      name: 'sdk', room, pub, sub, trackSid: published.sid,
      hooks: {
        // fanout asks for q only ~3 s after the LOW request; the SDK turns
        // h and f off.
        atLow: async (lowAt) => {
          await waitFor(async () => flags(await encodingsOf(pub)) === 'q+ h- f-', {
            timeout: 8_000, interval: 100, what: 'pub turns layers h and f off (dynacast) while sub is at LOW',
          }).catch(async (e) => { throw new Error(`${e.message}; encodings ${flags(await encodingsOf(pub))}; dynacast ${dynacastLog(published.sid).join(', ')}${await context(pub)}`); });
          const sdkState = await call(pub, 'senderEncodings');
          console.log(`# pub turned h and f off ${Date.now() - lowAt} ms after sub asked for LOW (fanout asked for ${JSON.stringify(sdkState.subscribedQualities)})`);
        },
        // ...and f back on as soon as sub asks for HIGH.
        afterHigh: async () => {
          const enc = flags(await encodingsOf(pub));
          assert.equal(enc, 'q+ h+ f+', 'pub encodes every layer again after sub asked for HIGH');
        },
      },
    });
    const layers = await publisherLayers(pub);
    console.log(`# publisher after HIGH: ${JSON.stringify(layers)}`);
    assert.ok(layers.layers.find((l) => l.rid === 'f')?.kbps > 0, `layer f sends again: ${JSON.stringify(layers)}`);
    delete r.duringLow;
    console.log(`# result (Fanout SDK pub): ${JSON.stringify(r)}`);
    await screenshot(sub.page, NAME, 'sdk-sub');
    await screenshot(pub.page, NAME, 'sdk-pub');
    await checkErrors(pub, sub);
    await leaveCleanly(room, pub, sub);
  });
});
