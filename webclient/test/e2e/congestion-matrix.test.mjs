// Issue 13's namespace matrix for a Chromium subscriber (livekit-client
// 2.23.0, default options, adaptiveStream off): points 2-5 and 7.
//
// A Go publisher, `fanout-load publish` (cmd/fanout-load), runs in the root
// namespace and sends three VP8 simulcast layers (320x180 ~150, 640x360
// ~500, 1280x720 ~1500 kbit/s, 20 fps) plus Opus. The subscriber is a
// headless Chromium started inside a namespace of its own (netns.mjs): the
// server listens on the veth's host end, so a tbf qdisc there shapes
// everything the server sends the subscriber. Per link shape a new page
// joins, its camera's inbound-rtp stats are sampled every 50 ms, the open
// link is measured (first decoded 1280-wide frame), then the cap goes on
// for the settle budget plus the observation window, and comes off.
//
// Per run one `congestion-metric:` line: time to settle on the layer that
// fits (MEDIUM at 700 and 1,200 kbit/s, LOW at 300, paused at 100), the
// layers visited, changes after settling, the longest gap between decoded
// frames after the first 3 s of the cap, video loss after retransmission
// (packetsLost / expected over that span), audio loss, the time back to
// 1280 at >= 18 fps after the cap, and the open-link time to 1280.
//
// FANOUT_CC=full: the whole matrix with a 30 s window (make congestion);
// FANOUT_CC=short: one shape with a 10 s window; unset or off: skipped
// (issue 13 is open on it);
// FANOUT_CC_ONLY=<regexp> runs only the shapes whose name matches.
// LIVEKIT_SERVER=/path/to/livekit-server runs every case against it too
// (send-side BWE), for the anchor figures. Skipped, with the reason, where
// the namespace cannot be built (not root, no ip/tc).
//
// Run: cd webclient && FANOUT_CC=full node --test test/e2e/congestion-matrix.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { chmodSync, copyFileSync, createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CHROMIUM_PATH, REPO_ROOT, WEBCLIENT_DIR, artifactPath, bundle, captureConsole, launchChromium, onTeardown, serveStatic, sleep,
  startFanout, teardown, tempDir, waitFor, withTimeout,
} from './harness.mjs';
import { IP, makeNetns } from './netns.mjs';
import { analyze, checkRun, metricLine } from './ccanalysis.mjs';

const execFileP = promisify(execFile);
const NAME = 'congestion-matrix';
const LK_DIR = join(WEBCLIENT_DIR, 'test', 'e2e', 'lk');
// Not in make test by default: issue 13 is open on this point (about one
// run in ten finds the lifted cap only after 8 s); make congestion runs
// it, FANOUT_CC=short runs the short form.
const MODE = process.env.FANOUT_CC ?? 'off';
const FULL = MODE === 'full';
const LK_SECRET = 'congestion-secret-congestion-secret';

/** The cases: rate/burst/latency and the width that fits (0: paused). */
const CASES = FULL
  ? [
    ...[2, 16, 32].flatMap((burstKB) => [50, 100].map((latencyMs) => ({ rateKbit: 700, burstKB, latencyMs, want: 640 }))),
    { rateKbit: 300, burstKB: 16, latencyMs: 100, want: 320 },
    { rateKbit: 1200, burstKB: 16, latencyMs: 100, want: 640 },
    // A 2 kB bucket for the pause: tbf queues up to rate x latency + burst,
    // and at 100 kbit/s a 16 kB burst alone is 1.3 s of queue (frames sent
    // before the pause would still arrive 2 s after the cap).
    { rateKbit: 100, burstKB: 2, latencyMs: 100, want: 0 },
  ]
  : [{ rateKbit: 700, burstKB: 16, latencyMs: 100, want: 640 }];
/** FANOUT_CC_ONLY=<regexp> keeps the cases whose name matches (e.g. rate700k). */
const shapeName = (c) => `rate${c.rateKbit}k_burst${c.burstKB}kB_latency${c.latencyMs}ms`;
const ONLY = process.env.FANOUT_CC_ONLY ? new RegExp(process.env.FANOUT_CC_ONLY) : undefined;
const RUN_CASES = CASES.filter((c) => !ONLY || ONLY.test(shapeName(c)));
const WINDOW_MS = FULL ? 30_000 : 10_000;
const PAUSE_WINDOW_MS = 6_000;
const SETTLE_MS = 3_000;
const BASELINE_MS = 3_000;

const net = makeNetns({ prefix: 'fanout-ccm-', veth: 'fcm', octet: 203 });
const skipReason = MODE === 'off' ? 'FANOUT_CC=off' : net.setup();
if (skipReason) console.log(`# congestion matrix skipped: ${skipReason}`);

after(async () => {
  await teardown();
  net.remove();
}, { timeout: 60_000 });

const call = (p, fn, ...args) => p.page.evaluate(([f, a]) => window.lkTest[f](...a), [fn, args]);

/** Builds cmd/fanout-load once. */
async function buildLoad() {
  const bin = join(tempDir('fanout-load-bin-'), 'fanout-load');
  await withTimeout(execFileP('go', ['build', '-o', bin, './cmd/fanout-load'], { cwd: REPO_ROOT, maxBuffer: 16 << 20 }), 300_000, 'go build ./cmd/fanout-load');
  return bin;
}

/** Starts a process, its output to test-artifacts/<name>.log; killed at teardown. Resolves the first stdout line matching re. */
function startLogged(name, cmd, args, re) {
  const logPath = artifactPath(`${name}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  onTeardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await withTimeout(exited, 5_000, `${name} exit`).catch(() => child.kill('SIGKILL'));
    log.end();
  });
  child.stderr.pipe(log, { end: false });
  let buf = '';
  const matched = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      log.write(d);
      buf += d;
      const m = buf.split('\n').find((l) => re.test(l));
      if (m) resolve(m);
    });
    exited.then((code) => reject(new Error(`${name} exited (${code}) before ${re}; see ${logPath}`)));
  });
  return { child, logPath, matched };
}

/** A port free on host now (released at once: a small race, as in the harness). */
function freePort(kind, host) {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.bind(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
      return;
    }
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** livekit-server on the veth's host end, send-side BWE, its log in test-artifacts. */
async function startLivekit(host) {
  const dir = tempDir('livekit-cc-');
  const [port, tcpPort, udpPort] = [await freePort('tcp', host), await freePort('tcp', host), await freePort('udp', host)];
  const cfg = join(dir, 'livekit.yaml');
  writeFileSync(cfg, `port: ${port}\nbind_addresses: ["${host}"]\nkeys:\n  devkey: ${LK_SECRET}\nlogging:\n  level: debug\n` +
    `rtc:\n  udp_port: ${udpPort}\n  tcp_port: ${tcpPort}\n  node_ip: ${host}\n  use_external_ip: false\n` +
    `  stun_servers: ["127.0.0.1:3478"]\n  ips:\n    includes: ["${host}/32"]\n  congestion_control:\n    use_send_side_bwe: true\n`);
  const lk = startLogged(`${NAME}-livekit`, process.env.LIVEKIT_SERVER, ['--config', cfg], /^$/);
  lk.matched.catch(() => {});
  const url = `http://${host}:${port}`;
  await waitFor(async () => (await fetch(url, { signal: AbortSignal.timeout(1_000) })).status < 500,
    { timeout: 20_000, interval: 200, what: `livekit-server on ${url} (log ${lk.logPath})` });
  return { name: 'livekit', wsUrl: `ws://${host}:${port}`, logPath: lk.logPath, secret: LK_SECRET };
}

for (const serverKind of ['fanout', ...(process.env.LIVEKIT_SERVER ? ['livekit'] : [])]) {
  test(`${serverKind}: a Chromium subscriber behind tbf links settles on the layer that fits (issue 13 points 2-5, 7)`,
    { skip: skipReason ?? false, timeout: 60_000 + RUN_CASES.length * 90_000 }, async (t) => {
      const out = tempDir('fanout-ccm-page-');
      const [fanout, load] = await Promise.all([
        startFanout({ name: `${NAME}-${serverKind}`, host: net.hostIP }),
        buildLoad(),
        bundle(join(LK_DIR, 'page.ts'), out),
      ]);
      const server = serverKind === 'fanout'
        ? { name: 'fanout', wsUrl: fanout.wsUrl, logPath: fanout.logPath, secret: 'secret' }
        : await startLivekit(net.hostIP);
      const token = async (identity) => (await execFileP(fanout.bin, ['token', '--room', 'ccm', '--identity', identity,
        '--key', 'devkey', '--secret', server.secret])).stdout.trim();
      copyFileSync(join(LK_DIR, 'index.html'), join(out, 'index.html'));
      const site = await serveStatic(out, { host: net.hostIP });
      const wrapper = join(tempDir('fanout-ccm-bin-'), 'chromium-in-netns');
      writeFileSync(wrapper, `#!/bin/sh\nexec ${IP} netns exec ${net.ns} ${CHROMIUM_PATH} "$@"\n`);
      chmodSync(wrapper, 0o755);
      const browser = await launchChromium({ args: [`--unsafely-treat-insecure-origin-as-secure=${site.url}`], executablePath: wrapper });
      const pub = startLogged(`${NAME}-${serverKind}-publisher`, load, ['publish', '--url', server.wsUrl, '--api-key', 'devkey',
        '--api-secret', server.secret, '--room', 'ccm', '--identity', 'pub'], /^fanout-load: published/);
      console.log(`# ${await withTimeout(pub.matched, 20_000, 'fanout-load publish')}`);
      for (const c of RUN_CASES) {
        const shape = shapeName(c);
        await t.test(shape, async (st) => runCase(st, { browser, site, server, token, c, shape }));
      }
    });
}

async function openSub(browser, origin, label) {
  const context = await browser.newContext({ viewport: { width: 720, height: 420 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleLines = captureConsole(page, `${NAME}-${label}`);
  await page.goto(`${origin}/index.html`);
  await page.waitForFunction(() => typeof window.lkTest === 'object');
  return { page, context, label, consoleLines };
}

async function runCase(t, { browser, site, server, token, c, shape }) {
  const identity = `sub-${Date.now() % 1_000_000}`;
  const sub = await openSub(browser, site.url, `${server.name}-${shape}`);
  const pageNow = () => sub.page.evaluate(() => performance.now());
  let capped = false;
  try {
    // The sampler runs from before the join (it skips, logging, until the
    // camera's receiver exists), so a frame decoded right at the
    // subscription is not missed.
    await call(sub, 'startSampler', 'pub', 50);
    await withTimeout(call(sub, 'connect', server.wsUrl, await token(identity), identity, { dynacast: false, adaptiveStream: false }), 20_000, 'sub connect');
    const tJoined = await pageNow();
    const tSubscribed = await subscribedAt(sub);
    await waitFor(async () => (await call(sub, 'samples', 0)).some((s) => s.frameWidth === 1280 && s.framesDecoded > 0),
      { timeout: 20_000, interval: 100, what: 'sub decodes 1280 wide on the open link' });
    await sleep(BASELINE_MS);
    const tb0 = net.tbfStats();
    net.shape(c);
    capped = true;
    const t0 = await pageNow();
    const hold = SETTLE_MS + (c.want === 0 ? PAUSE_WINDOW_MS : WINDOW_MS);
    await sleep(3_000);
    const audioA = await audioCounters(sub);
    await sleep(hold - 3_000);
    const audioB = await audioCounters(sub);
    const tb1 = net.tbfStats();
    net.unshape();
    capped = false;
    const t1 = await pageNow();
    await waitFor(async () => analyze(await call(sub, 'samples', 0), { ...c, tJoined, tSubscribed, t0, t1 }).recoverMs >= 0 ||
      (c.want === 0 && (await pageNow()) - t1 > 3_000), { timeout: 10_000, interval: 200, what: 'recovery' }).catch(() => {});
    await sleep(500);
    await call(sub, 'stopSampler');
    const samples = await call(sub, 'samples', 0);
    writeFileSync(artifactPath(`${NAME}-${server.name}-${shape}-samples.json`), JSON.stringify({ t0, t1, tJoined, tSubscribed, samples }));
    const m = analyze(samples, { ...c, tJoined, tSubscribed, t0, t1 });
    m.audioLossPct = lossPct(audioA, audioB);
    m.tbfKbps = Math.round(((tb1.bytes - tb0.bytes) * 8) / (t1 - t0));
    m.tbfDrops = tb1.drops - tb0.drops;
    m.tbfOverlimits = tb1.overlimits - tb0.overlimits;
    console.log(metricLine('chromium', server.name, shape, m));
    if (server.name === 'fanout') console.log(`# fanout's decisions for ${identity}: grep 'identity=${identity}' ${server.logPath}`);
    const problems = checkRun(c, m, c.want === 0 ? PAUSE_WINDOW_MS : WINDOW_MS);
    assert.deepEqual(problems, [], `${server.name} ${shape}:\n  ${problems.join('\n  ')}`);
  } finally {
    if (capped) net.unshape();
    await call(sub, 'stopSampler').catch(() => {});
    await withTimeout(call(sub, 'disconnect'), 5_000, 'sub leave').catch(() => {});
    await sub.context.close().catch(() => {});
  }
}

/**
 * The page time of livekit-client's TrackSubscribed for pub's camera (its
 * event log has wall-clock times; performance.timeOrigin maps them).
 */
async function subscribedAt(sub) {
  let at;
  await waitFor(async () => {
    const [events, origin] = await Promise.all([call(sub, 'events'), sub.page.evaluate(() => performance.timeOrigin)]);
    const line = events.find((e) => / track subscribed pub video /.test(e));
    if (line) at = Date.parse(line.split(' ')[0]) - origin;
    return line !== undefined;
  }, { timeout: 20_000, interval: 50, what: 'TrackSubscribed for pub\'s camera' });
  return at;
}

/** The subscribed microphone's inbound-rtp counters. */
async function audioCounters(sub) {
  const a = (await call(sub, 'inboundStats')).find((s) => s.kind === 'audio');
  return a ? { received: a.packetsReceived, lost: a.packetsLost } : { received: 0, lost: 0 };
}

function lossPct(a, b) {
  const lost = b.lost - a.lost;
  const expected = (b.received - a.received) + lost;
  return expected > 0 ? Math.round((lost * 10_000) / expected) / 100 : 0;
}
