// Congestion-driven layer selection, seen by a real browser behind a real
// bottleneck (issue 5, acceptance point 7).
//
// The test makes its own network namespace with a veth pair: the host end
// (10.201.x.1/30) stays in the root namespace, the other end (x.2) goes into
// the namespace, which has nothing but `lo` and that link (no default route,
// no IPv6). fanout and the static page server listen on the host end's
// address and fanout advertises it as its only ICE candidate, so that both
// browsers reach it:
// - "pub", a headless Chromium in the root namespace (its traffic to the
//   host end's address is local and never crosses the veth), publishes the
//   fake camera at 1280x720, VP8 simulcast q/h/f, with livekit-client 2.23.0;
// - "sub", a headless Chromium started inside the namespace (playwright runs
//   a wrapper script that execs `ip netns exec <ns> chromium`; it talks to it
//   over a pipe), subscribes with livekit-client 2.23.0, adaptiveStream off
//   and no quality asked for: the layer is left to fanout (HIGH ceiling).
// The page origin, http://10.201.x.1:<port>, is not a secure context as
// loopback is, so both browsers get --unsafely-treat-insecure-origin-as-secure
// for it (getUserMedia needs one).
//
// Everything fanout sends to sub leaves the root namespace through the host
// end of the veth, so a qdisc there shapes sub's downlink and nothing else:
//   tc qdisc add dev <host veth> root tbf rate 600kbit burst 2kb latency 200ms
// - burst 2kb (2 KiB): one full-size frame (1514 bytes on the wire) and a
//   little more, ~27 ms of the rate: like a real 600 kbit/s link, which
//   serializes packets one by one. A larger bucket lets a short train at line
//   rate through: with 16kb, a probe cluster of fanout's (packets sent in a
//   quick burst) passed the bucket untouched and was "confirmed" at
//   1.35 Mbit/s under the 600 kbit/s cap.
// - latency 200ms: the queue holds ~15 KB beyond the burst (limit = rate x
//   latency + burst) before it drops, like a modest access-link buffer: an
//   overload first shows as growing delay (what transport-cc based
//   estimators see first), then as loss. A short queue would give loss only;
//   a long one would stall the video for seconds on queueing alone.
//
// The scenario, with sub's inbound-rtp stats of the camera sampled every
// 100 ms throughout:
// 1. sub decodes 1280-wide frames, unconstrained; 4 s of baseline (the last
//    3 s measured: pub's layers and sub's received bitrate and frame rate).
// 2. The tbf qdisc goes on for 10 s. Acceptance: a lower layer is decoded
//    within 5 s, and framesDecoded keeps rising with no stretch over 1 s
//    without a new decoded frame, from the moment the qdisc goes on (so the
//    switch itself counts) until it comes off. A lower layer is a narrower
//    one, or 1280 at a lower temporal layer: fanout keeps a camera's upper
//    layer while half its frame rate fits (a slow machine's encoder makes
//    1280 at 10 fps fit in 600 kbit/s). fanout's log must show the lower
//    target, and sub must decode it: narrower frames, or 1280 at no more
//    than 60 % of the unconstrained frame rate over a second.
// 3. The qdisc comes off. Acceptance: 1280-wide frames at the full frame
//    rate (a 1 s window with at least 3/4 of the unconstrained one) are
//    decoded again within 20 s. Logged, not asserted: the longest decode gap
//    after the cap came off.
// The three acceptance checks are subtests, run after the whole scenario so
// that every figure is measured and logged (lines `congestion-metric: ...`)
// even when one fails. The infrastructure is checked on the way and fails the
// test outright: sub really runs in the namespace and its media arrives over
// the veth, it decoded 1280 wide before the cap, the unconstrained video
// alone is above the cap, the qdisc held packets back (overlimits), and
// under the cap both tc's counters and sub's received video stay at or under
// 600 kbit/s. fanout's estimates and layer decisions for sub are printed
// from its log.
//
// Skipped, with the reason, where it cannot build its network: not Linux,
// not root, no `ip`/`tc`, or `ip netns add`, the veth pair, a tbf qdisc or
// `ip netns exec` failing. The namespace and veth are named after the pid
// (fanout-cg-<pid>, fcg<pid>h / fcg<pid>n) and removed, with any process
// left inside the namespace, after the test, on exit and on SIGINT /
// SIGTERM / SIGHUP; leftovers of earlier runs whose pid is gone are removed
// at start.
//
// Run: cd webclient && node --test --test-concurrency=1 test/e2e/congestion.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CHROMIUM_PATH, WEBCLIENT_DIR, artifactPath, bundle, captureConsole, launchChromium, screenshot, serveStatic, sleep,
  startFanout, teardown, tempDir, waitFor, withTimeout,
} from './harness.mjs';

const NAME = 'congestion';
const LK_DIR = join(WEBCLIENT_DIR, 'test', 'e2e', 'lk');

/** The bottleneck on sub's downlink. */
const TBF_RATE_KBIT = 600;
const TBF_BURST = '2kb';
const TBF_BURST_BYTES = 2 * 1024;
const TBF_LATENCY = '200ms';

/** Acceptance: a narrower layer within this long after the cap goes on. */
const LOWER_WITHIN_MS = 5_000;
/** Acceptance: the longest stretch without a new decoded frame while capped. */
const MAX_STALL_MS = 1_000;
/** Acceptance: 1280 wide again within this long after the cap comes off. */
const RECOVER_WITHIN_MS = 20_000;
/** How long the cap stays on (the no-stall window). */
const CAP_HOLD_MS = 10_000;
/** Unconstrained sampling before the cap (its first second is not measured: the top layer is still ramping up). */
const BASELINE_MS = 4_000;
/** The top layer's width (the fake camera at 1280x720). */
const FULL_WIDTH = 1280;
/** pub's Room option; dynacast on as in a typical deployment. */
const PUB_DYNACAST = true;

// ------------------------------------------------------------ network setup

/** The path of a system tool (sbin directories are not always on PATH), or its bare name. */
const tool = (name) => ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((d) => join(d, name)).find((f) => existsSync(f)) ?? name;
const IP = tool('ip');
const TC = tool('tc');
const SYSCTL = tool('sysctl');
const NS_PREFIX = 'fanout-cg-';
const VETH_PREFIX = 'fcg';
const NS = `${NS_PREFIX}${process.pid}`;
const VETH_HOST = `${VETH_PREFIX}${process.pid}h`;
const VETH_NS = `${VETH_PREFIX}${process.pid}n`;
// A /30 of 10.201.0.0/16 picked by pid, so that parallel runs differ.
const SUBNET_BASE = (process.pid % 16384) * 4;
const subnetIP = (n) => `10.201.${(SUBNET_BASE + n) >> 8}.${(SUBNET_BASE + n) & 255}`;
const HOST_IP = subnetIP(1);
const NS_IP = subnetIP(2);

/** Runs a command; {ok, out, err}. Never throws. */
function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  const err = (r.error?.message ?? '') + (r.stderr ?? '');
  return { ok: r.status === 0, out: r.stdout ?? '', err: err.trim() };
}

/** Runs a command; throws with its stderr if it fails. */
function must(cmd, args) {
  const r = run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.err || 'failed'}`);
  return r.out;
}

const pidAlive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
};

/** Kills (SIGKILL) every process inside network namespace ns. */
function killNamespacePids(ns) {
  for (const p of run(IP, ['netns', 'pids', ns]).out.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Removes namespaces and veths of earlier runs of this test whose process is gone. */
function removeStale() {
  for (const line of run(IP, ['netns', 'list']).out.split('\n')) {
    const name = line.split(' ')[0];
    const m = name.match(new RegExp(`^${NS_PREFIX}(\\d+)$`));
    if (m && !pidAlive(Number(m[1]))) {
      console.log(`# removing stale namespace ${name}`);
      killNamespacePids(name);
      run(IP, ['netns', 'del', name]);
    }
  }
  for (const line of run(IP, ['-o', 'link', 'show']).out.split('\n')) {
    const name = (line.split(': ')[1] ?? '').split('@')[0];
    const m = name.match(new RegExp(`^${VETH_PREFIX}(\\d+)[hn]$`));
    if (m && !pidAlive(Number(m[1]))) {
      console.log(`# removing stale link ${name}`);
      run(IP, ['link', 'del', name]);
    }
  }
}

let netCreated = false;
let netRemoved = false;

/**
 * Removes this run's qdisc, veth pair and namespace, killing what runs in
 * it. Synchronous, so that it also runs from process 'exit'; idempotent.
 */
function removeNet() {
  if (!netCreated || netRemoved) return;
  netRemoved = true;
  killNamespacePids(NS);
  run(TC, ['qdisc', 'del', 'dev', VETH_HOST, 'root']);
  run(IP, ['link', 'del', VETH_HOST]);
  run(IP, ['netns', 'del', NS]);
}

function hookCleanup() {
  process.on('exit', removeNet);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.once(sig, () => {
      removeNet();
      process.exit(code);
    });
  }
}

const tbfArgs = (verb) => ['qdisc', verb, 'dev', VETH_HOST, 'root', 'tbf', 'rate', `${TBF_RATE_KBIT}kbit`,
  'burst', TBF_BURST, 'latency', TBF_LATENCY];

/**
 * Builds the namespace and veth pair; returns undefined, or why the test
 * has to be skipped.
 */
function setupNet() {
  if (process.platform !== 'linux') return `needs Linux network namespaces (platform is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace (ip netns add), a veth pair and a tc qdisc';
  for (const [cmd, arg] of [[IP, '-V'], [TC, '-V']]) {
    const r = run(cmd, [arg]);
    if (!r.ok) return `${cmd} is not usable: ${r.err}`;
  }
  removeStale();
  const used = run(IP, ['-o', '-4', 'addr', 'show', 'to', `${subnetIP(0)}/30`]);
  if (!used.ok || used.out.trim()) return `the test's subnet ${subnetIP(0)}/30 is already in use here: ${used.out.trim() || used.err}`;
  hookCleanup();
  const add = run(IP, ['netns', 'add', NS]);
  if (!add.ok) return `cannot create a network namespace (ip netns add ${NS}): ${add.err}`;
  netCreated = true;
  const veth = run(IP, ['link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_NS, 'netns', NS]);
  if (!veth.ok) {
    removeNet();
    return `cannot create a veth pair into the namespace: ${veth.err}`;
  }
  try {
    // IPv4 only: no link-local IPv6 addresses as extra ICE candidates (a
    // kernel without IPv6 has nothing to turn off; checkNamespace checks).
    run(SYSCTL, ['-q', '-w', `net.ipv6.conf.${VETH_HOST}.disable_ipv6=1`]);
    must(IP, ['addr', 'add', `${HOST_IP}/30`, 'dev', VETH_HOST]);
    must(IP, ['link', 'set', VETH_HOST, 'up']);
    must(IP, ['netns', 'exec', NS, '/bin/true']);
    run(IP, ['netns', 'exec', NS, SYSCTL, '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
    run(IP, ['netns', 'exec', NS, SYSCTL, '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1']);
    must(IP, ['-n', NS, 'addr', 'add', `${NS_IP}/30`, 'dev', VETH_NS]);
    must(IP, ['-n', NS, 'link', 'set', VETH_NS, 'up']);
    must(IP, ['-n', NS, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    removeNet();
    return `cannot set up the namespace's link: ${err.message}`;
  }
  const tbf = run(TC, tbfArgs('add'));
  if (!tbf.ok) {
    removeNet();
    return `cannot add a tbf qdisc (${tbfArgs('add').join(' ')}): ${tbf.err}`;
  }
  run(TC, ['qdisc', 'del', 'dev', VETH_HOST, 'root']);
  return undefined;
}

/** What the namespace holds; throws unless it is lo + the veth end, one route, up. */
function checkNamespace() {
  const links = JSON.parse(must(IP, ['-n', NS, '-j', 'link', 'show']));
  const names = links.map((l) => l.ifname).sort();
  assert.deepEqual(names, [VETH_NS, 'lo'].sort(), `links in ${NS}`);
  for (const l of links) assert.ok(l.flags.includes('UP'), `${l.ifname} is up in ${NS}: ${l.flags}`);
  const routes = JSON.parse(must(IP, ['-n', NS, '-j', '-4', 'route', 'show']));
  assert.deepEqual(routes.map((r) => `${r.dst} dev ${r.dev}`), [`${subnetIP(0)}/30 dev ${VETH_NS}`], `IPv4 routes in ${NS} (no default route)`);
  const v6 = JSON.parse(must(IP, ['-n', NS, '-j', '-6', 'route', 'show']));
  assert.deepEqual(v6, [], `no IPv6 routes in ${NS}`);
  const via = JSON.parse(must(IP, ['-n', NS, '-j', 'route', 'get', HOST_IP]))[0];
  assert.equal(via.dev, VETH_NS, `${NS} reaches ${HOST_IP} over ${VETH_NS}`);
  if (existsSync('/usr/bin/ping')) {
    const ping = run(IP, ['netns', 'exec', NS, '/usr/bin/ping', '-c', '1', '-W', '2', HOST_IP]);
    assert.ok(ping.ok, `ping ${HOST_IP} from ${NS}: ${ping.err || ping.out}`);
  }
  return `${names.join('+')}; route ${routes[0].dst} dev ${routes[0].dev}`;
}

/** The tbf qdisc's counters: bytes, packets, drops, overlimits. */
function tbfStats() {
  const q = JSON.parse(must(TC, ['-s', '-j', 'qdisc', 'show', 'dev', VETH_HOST])).find((x) => x.kind === 'tbf');
  if (!q) return undefined;
  return { bytes: q.bytes, packets: q.packets, drops: q.drops, overlimits: q.overlimits, backlog: q.backlog };
}

const skipReason = setupNet();
if (skipReason) console.log(`# congestion test skipped: ${skipReason}`);

// ------------------------------------------------------------ pages

after(async () => {
  await teardown();
  removeNet();
}, { timeout: 60_000 });

/** Calls window.lkTest[fn](...args) in the page. */
function call(p, fn, ...args) {
  return p.page.evaluate(([f, a]) => window.lkTest[f](...a), [fn, args]);
}

async function openPage(browser, label, origin) {
  const context = await browser.newContext({ viewport: { width: 720, height: 420 } });
  await context.grantPermissions(['camera', 'microphone'], { origin });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleLines = captureConsole(page, `${NAME}-${label}`);
  await page.goto(`${origin}/index.html`);
  await page.waitForFunction(() => typeof window.lkTest === 'object');
  await page.evaluate((l) => { document.getElementById('who').textContent = l; }, `congestion: ${label}`);
  return { page, label, consoleLines };
}

async function context(p, fanout) {
  const events = await call(p, 'events').catch(() => []);
  return `\n--- ${p.label} events ---\n${events.slice(-30).join('\n')}\n--- ${p.label} console (tail) ---\n${p.consoleLines.slice(-20).join('\n')}\n--- fanout log: ${fanout.logPath}`;
}

// ------------------------------------------------------------ sample analysis

/** kbit/s of received video payload between page times from and to. */
function kbps(samples, from, to) {
  const a = samples.find((s) => s.t >= from);
  const b = samples.findLast((s) => s.t <= to);
  if (!a || !b || b.t - a.t < 500) return undefined;
  return Math.round(((b.bytesReceived - a.bytesReceived) * 8) / (b.t - a.t));
}

/** Counter deltas between page times from and to. */
function deltas(samples, from, to) {
  const a = samples.findLast((s) => s.t <= from) ?? samples[0];
  const b = samples.findLast((s) => s.t <= to);
  const out = {};
  for (const k of ['framesDecoded', 'packetsReceived', 'packetsLost', 'nackCount', 'pliCount', 'firCount', 'freezeCount', 'framesDropped', 'keyFramesDecoded']) {
    out[k] = b[k] - a[k];
  }
  out.fps = Math.round((out.framesDecoded * 10_000) / (b.t - a.t)) / 10;
  return out;
}

/**
 * lowRate returns the frame rate decoded over the second before sample s,
 * if it is at most 60 % of baseFps (a lower temporal layer), else 0.
 */
function lowRate(samples, s, baseFps) {
  const ago = samples.findLast((x) => x.t <= s.t - 1_000);
  if (!ago || ago.frameWidth !== s.frameWidth) return 0;
  const fps = Math.round(((s.framesDecoded - ago.framesDecoded) * 10_000) / (s.t - ago.t)) / 10;
  return fps <= baseFps * 0.6 ? fps : 0;
}

/**
 * firstLowering finds, in fanout's log lines for sub, the first layer
 * allocation at or after capOn that lowered a track's target.
 */
function firstLowering(lines, capOn) {
  const rank = (l) => (l === 'paused' ? -1 : Number(l.slice(1, l.indexOf('t'))) * 10 + Number(l.slice(l.indexOf('t') + 1)));
  for (const l of lines) {
    const m = /^time=(\S+) .*msg="layer allocation" .*from=(\S+) to=(\S+)/.exec(l);
    if (!m) continue;
    const at = Date.parse(m[1]);
    if (at >= capOn.getTime() && rank(m[3]) < rank(m[2])) return { ms: at - capOn.getTime(), from: m[2], to: m[3] };
  }
  return undefined;
}

/**
 * The longest stretch without a new decoded frame between page times from
 * and to (100 ms resolution): from the last sample at or before `from`, and
 * a stretch still open at `to` counts up to `to`'s last sample.
 */
function longestGap(samples, from, to) {
  const start = Math.max(0, samples.findLastIndex((s) => s.t <= from));
  const end = samples.findLastIndex((s) => s.t <= to);
  let lastNew = samples[start];
  let longest = { ms: 0, from: lastNew.t, to: lastNew.t };
  for (let i = start + 1; i <= end; i++) {
    const s = samples[i];
    if (s.framesDecoded < samples[i - 1].framesDecoded) throw new Error(`framesDecoded went back: ${JSON.stringify(samples[i - 1])} -> ${JSON.stringify(s)}`);
    if (s.framesDecoded > samples[i - 1].framesDecoded) {
      if (s.t - lastNew.t > longest.ms) longest = { ms: Math.round(s.t - lastNew.t), from: lastNew.t, to: s.t };
      lastNew = s;
    }
  }
  const last = samples[end];
  if (last.t - lastNew.t > longest.ms) longest = { ms: Math.round(last.t - lastNew.t), from: lastNew.t, to: last.t, open: true };
  return longest;
}

const metric = (name, value, note = '') => console.log(`congestion-metric: ${name}=${value}${note ? ` (${note})` : ''}`);

// ------------------------------------------------------------ the test

test(`a subscriber behind a ${TBF_RATE_KBIT} kbit/s tbf bottleneck gets a lower layer without stalling, and 1280 at the full frame rate again once it is lifted`,
  { skip: skipReason ?? false, timeout: 240_000 }, async (t) => {
    const nsDesc = checkNamespace();
    console.log(`# namespace ${NS}: ${nsDesc}; host end ${VETH_HOST} ${HOST_IP}, namespace end ${VETH_NS} ${NS_IP}`);

    const out = tempDir('fanout-congestion-page-');
    const [fanout] = await Promise.all([
      startFanout({ name: NAME, host: HOST_IP }),
      bundle(join(LK_DIR, 'page.ts'), out),
    ]);
    copyFileSync(join(LK_DIR, 'index.html'), join(out, 'index.html'));
    const site = await serveStatic(out, { host: HOST_IP });
    // http://10.201.x.1 is not a secure context as loopback is: pub needs
    // one for getUserMedia; sub gets it too, as on an https deployment.
    const secure = `--unsafely-treat-insecure-origin-as-secure=${site.url}`;
    const wrapper = join(tempDir('fanout-congestion-bin-'), 'chromium-in-netns');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${IP} netns exec ${NS} ${CHROMIUM_PATH} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const [pubBrowser, subBrowser] = await Promise.all([
      launchChromium({ args: [secure] }),
      launchChromium({ args: [secure], executablePath: wrapper }),
    ]);
    // Only sub's Chromium runs in the namespace (pub's runs outside: the
    // namespace held nothing before sub's browser started).
    const nsExes = run(IP, ['netns', 'pids', NS]).out.split(/\s+/).filter(Boolean)
      .map((pid) => { try { return readlinkSync(`/proc/${pid}/exe`); } catch { return `gone:${pid}`; } });
    assert.ok(nsExes.length > 0 && nsExes.every((e) => /chromium/.test(e)), `the namespace runs sub's Chromium and nothing else: ${nsExes.join(' ')}`);
    console.log(`# ${nsExes.length} Chromium processes in ${NS}`);

    const pub = await openPage(pubBrowser, 'pub', site.url);
    const sub = await openPage(subBrowser, 'sub', site.url);
    const room = `cg-${Date.now().toString(36)}`;
    let capped = false;
    try {
      const pubToken = await fanout.token(room, 'pub', { name: 'pub (root namespace)' });
      await withTimeout(call(pub, 'connect', fanout.wsUrl, pubToken, 'pub', { dynacast: PUB_DYNACAST, adaptiveStream: false }), 20_000, 'pub connect');
      const published = await withTimeout(call(pub, 'publish'), 20_000, 'pub publish');
      assert.equal(published.encodings, 3, 'camera sends three simulcast encodings (q/h/f)');

      const subToken = await fanout.token(room, 'sub', { name: 'sub (netns)' });
      await withTimeout(call(sub, 'connect', fanout.wsUrl, subToken, 'sub', { dynacast: false, adaptiveStream: false }), 20_000, 'sub connect')
        .catch(async (e) => { throw new Error(e.message + await context(sub, fanout)); });
      await waitFor(async () => {
        const cam = (await call(sub, 'remotes')).find((x) => x.identity === 'pub')?.tracks.find((x) => x.source === 'camera');
        return cam?.subscribed && cam.hasTrack;
      }, { timeout: 20_000, what: 'sub subscribed to pub\'s camera' })
        .catch(async (e) => { throw new Error(e.message + await context(sub, fanout)); });

      const t0 = Date.now();
      await waitFor(async () => {
        const s = await call(sub, 'sampleCamera', 'pub');
        return s && s.framesDecoded > 0 && s.frameWidth === FULL_WIDTH ? s : false;
      }, { timeout: 30_000, what: `sub decodes pub's camera at ${FULL_WIDTH} wide, unconstrained` })
        .catch(async (e) => { throw new Error(e.message + await context(sub, fanout)); });
      metric('unconstrained_first_1280_ms', Date.now() - t0, 'from the subscription to the first 1280-wide frame');

      // sub's media arrives over the veth: its selected pair is NS_IP <-> HOST_IP.
      const tr = await call(sub, 'receiverTransport', 'pub');
      console.log(`# sub's selected candidate pair: local ${tr?.local}, remote ${tr?.remote}`);
      assert.match(tr?.local ?? '', new RegExp(`^udp ${NS_IP.replaceAll('.', '\\.')}:\\d+ `), 'sub receives on its veth address');
      assert.match(tr?.remote ?? '', new RegExp(`^udp ${HOST_IP.replaceAll('.', '\\.')}:${fanout.udpPort} `), 'sub receives from fanout\'s host-end address');

      await call(sub, 'startSampler', 'pub', 100);
      const pageNow = () => sub.page.evaluate(() => performance.now());
      await sleep(1_000);
      const pubBytes = async () => Object.fromEntries((await call(pub, 'outboundStats'))
        .filter((o) => o.source === 'camera').map((o) => [o.rid, o]));
      const pubA = await pubBytes();
      const pubAt = Date.now();
      await sleep(BASELINE_MS - 1_000);
      const pubB = await pubBytes();
      const pubLayers = Object.keys(pubB).sort().map((rid) => `${rid} ${pubB[rid].frameWidth}w ` +
        `${Math.round(((pubB[rid].bytesSent - (pubA[rid]?.bytesSent ?? 0)) * 8) / (Date.now() - pubAt))} kbit/s ${pubB[rid].qualityLimitationReason}`);
      metric('publisher_layers', pubLayers.join(', '), 'what pub sends of each layer, unconstrained');

      // The cap.
      must(TC, tbfArgs('add'));
      const capOnAt = new Date();
      capped = true;
      const tApply = await pageNow();
      const tcApplied = must(TC, ['qdisc', 'show', 'dev', VETH_HOST]).trim();
      console.log(`# cap on: ${tcApplied}`);
      const stats0 = tbfStats();
      const tStats0 = Date.now();
      await sleep(CAP_HOLD_MS);
      const stats1 = tbfStats();
      const tStats1 = Date.now();
      must(TC, ['qdisc', 'del', 'dev', VETH_HOST, 'root']);
      const capOffAt = new Date();
      capped = false;
      const tRemove = await pageNow();
      assert.equal(must(TC, ['qdisc', 'show', 'dev', VETH_HOST]).includes('tbf'), false, 'the tbf qdisc is gone');
      const capMs = tRemove - tApply;
      console.log(`# cap off after ${Math.round(capMs)} ms`);

      // Back to 1280: a newly decoded 1280-wide frame after the cap is off
      // (asserted); and, for the record, back to the unconstrained frame
      // rate (a 1 s window with at least 3/4 of it, at 1280).
      const before = await call(sub, 'samples', 0);
      const baseFps = deltas(before, tApply - BASELINE_MS + 1_000, tApply).fps;
      let seen = 0;
      const got = [];
      let decodedAtRemove;
      let back;
      let fullRate;
      await waitFor(async () => {
        const fresh = await call(sub, 'samples', seen);
        seen += fresh.length;
        for (const s of fresh) {
          got.push(s);
          if (s.t <= tRemove) {
            decodedAtRemove = s.framesDecoded;
            continue;
          }
          if (!back && s.frameWidth === FULL_WIDTH && s.framesDecoded > decodedAtRemove) back = s;
          const ago = got.findLast((x) => x.t <= s.t - 1_000);
          if (!fullRate && back && ago && ago.t >= tRemove && s.frameWidth === FULL_WIDTH &&
            (s.framesDecoded - ago.framesDecoded) * 1000 / (s.t - ago.t) >= baseFps * 0.75) fullRate = s;
        }
        return back && fullRate;
      }, { timeout: RECOVER_WITHIN_MS + 5_000, interval: 100, what: `${FULL_WIDTH}-wide frames at the full frame rate after the cap is off` })
        .catch((e) => console.log(`# ${e.message}; last sample ${JSON.stringify(got.at(-1))}`));
      const afterBack = 2_000;
      await sleep(afterBack);
      await call(sub, 'stopSampler');
      const samples = await call(sub, 'samples', 0);
      const path = artifactPath(`${NAME}-samples.json`);
      writeFileSync(path, JSON.stringify({
        capOnAtPageMs: tApply, capOffAtMs: Math.round(tRemove - tApply),
        samples: samples.map((s) => ({ ...s, t: Math.round(s.t - tApply) })),
      }, null, 1));
      const rel = (x) => Math.round(x - tApply);

      // ---- the figures
      const baseKbps = kbps(samples, tApply - BASELINE_MS + 1_000, tApply);
      const capKbps = kbps(samples, tApply + 2_000, tRemove);
      const capFirst2sKbps = kbps(samples, tApply, tApply + 2_000);
      const decisions = readFileSync(fanout.logPath, 'utf8').split('\n')
        .filter((l) => /identity=sub /.test(l) && /msg="(layer allocation|layer switch|probe [^"]*|bandwidth estimate)"/.test(l));
      const lowered = firstLowering(decisions, capOnAt);
      // The browser must show the layer fanout chose: narrower frames for a
      // lower spatial layer, a lower frame rate at 1280 for a lower
      // temporal one (not the frame-rate dip of a spatial switch).
      const temporalOnly = lowered?.to.startsWith('s2');
      const firstLow = samples.find((s) => s.t >= tApply && s.t <= tRemove && s.frameWidth > 0 &&
        (s.frameWidth < FULL_WIDTH || (temporalOnly && lowRate(samples, s, baseFps))));
      const widthsCapped = [...new Set(samples.filter((s) => s.t >= tApply && s.t <= tRemove).map((s) => s.frameWidth))];
      const gapCapped = longestGap(samples, tApply, tRemove);
      const gapAfter = longestGap(samples, tRemove, samples.at(-1).t);
      const dCap = deltas(samples, tApply, tRemove);
      const tcBytes = stats1.bytes - stats0.bytes;
      const tcKbps = Math.round((tcBytes * 8) / (tStats1 - tStats0));
      const tcDrops = stats1.drops - stats0.drops;
      const tcOver = stats1.overlimits - stats0.overlimits;
      const backMs = back ? Math.round(back.t - tRemove) : undefined;
      const fullRateMs = fullRate ? Math.round(fullRate.t - tRemove) : undefined;
      const afterKbps = kbps(samples, samples.at(-1).t - afterBack, samples.at(-1).t);

      metric('unconstrained_video_kbps', baseKbps, `sub's received video payload over the ${BASELINE_MS / 1000 - 1} s before the cap, at ${baseFps} fps`);
      metric('capped_video_kbps', capKbps, 'from 2 s after the cap went on until it came off');
      metric('capped_first_2s_video_kbps', capFirst2sKbps);
      metric('tbf_kbps', tcKbps, `all bytes the qdisc sent (L2 frames, media+RTCP+STUN) over ${CAP_HOLD_MS / 1000} s; cap ${TBF_RATE_KBIT}`);
      metric('tbf_packets', stats1.packets - stats0.packets);
      metric('tbf_drops', tcDrops);
      metric('tbf_overlimits', tcOver);
      const lateLow = firstLow ? undefined : samples.find((s) => s.t > tRemove && s.frameWidth > 0 && s.frameWidth < FULL_WIDTH);
      metric('time_to_lower_layer_ms', firstLow ? rel(firstLow.t) : 'never', firstLow ? `first ${firstLow.frameWidth}x${firstLow.frameHeight} frame${firstLow.frameWidth === FULL_WIDTH ? ` at ${lowRate(samples, firstLow, baseFps)} fps` : ''}`
        : `widths while capped: ${widthsCapped.join(',')}${lateLow ? `; a ${lateLow.frameWidth}-wide frame came ${rel(lateLow.t)} ms after the cap went on, after it came off` : ''}`);
      metric('widths_while_capped', widthsCapped.join(','));
      metric('longest_decode_gap_capped_ms', gapCapped.ms, `${rel(gapCapped.from)}..${rel(gapCapped.to)} ms after the cap went on${gapCapped.open ? ', still open when it came off' : ''}`);
      metric('capped_decoded_fps', dCap.fps);
      metric('capped_counters', JSON.stringify(dCap));
      metric('time_back_to_1280_ms', backMs ?? 'never', 'from the cap coming off to a newly decoded 1280-wide frame');
      metric('time_back_to_full_fps_ms', fullRateMs ?? 'never', `to a 1 s window at ${FULL_WIDTH} with >= 3/4 of the unconstrained ${baseFps} fps`);
      metric('longest_decode_gap_after_cap_ms', gapAfter.ms, `${rel(gapAfter.from)}..${rel(gapAfter.to)} ms after the cap went on`);
      metric('recovered_video_kbps', afterKbps, `over the last ${afterBack / 1000} s`);
      console.log(`# samples (times relative to the cap going on) in ${path}`);
      metric('time_to_lower_target_ms', lowered ? lowered.ms : 'never', lowered ? `fanout: ${lowered.from} -> ${lowered.to}` : 'no layer allocation lowered sub\'s camera under the cap');
      console.log(`# fanout's decisions for sub (cap on at ${capOnAt.toISOString()}, off at ${capOffAt.toISOString()}):\n` +
        decisions.map((l) => `#   ${l.replace(/ room=\S+ participant=\S+ identity=sub/, '').replace(/^time=\S*T/, '')}`).join('\n'));
      const problems = await call(sub, 'problems');
      if (problems.length) console.log(`# sub problems (not asserted): ${problems.join(' | ')}`);
      const pubEnc = await call(pub, 'senderEncodings');
      console.log(`# pub's encodings at the end: ${pubEnc.map((e) => `${e.rid}${e.active ? '+' : '-'}`).join(' ')}`);

      // ---- the infrastructure did its part
      assert.ok(samples.length > (BASELINE_MS + CAP_HOLD_MS) / 100 * 0.8, `enough samples: ${samples.length}`);
      // The cap binds: video payload alone (no audio, headers, RTCP) above it.
      assert.ok(baseKbps > TBF_RATE_KBIT, `unconstrained, sub receives more video than the cap: ${baseKbps} kbit/s`);
      assert.ok(tcOver > 0, `the qdisc held packets back (overlimits ${tcOver})`);
      const tcLimit = TBF_RATE_KBIT * 1.03 + (TBF_BURST_BYTES * 8) / CAP_HOLD_MS;
      assert.ok(tcKbps <= tcLimit, `the qdisc passed at most the cap: ${tcKbps} kbit/s (limit ${Math.round(tcLimit)})`);
      assert.ok(capKbps <= TBF_RATE_KBIT, `capped, sub received at most ${TBF_RATE_KBIT} kbit/s of video: ${capKbps}`);

      // ---- acceptance (issue 5, point 7)
      await t.test(`a lower layer is decoded within ${LOWER_WITHIN_MS / 1000} s of the cap`, () => {
        assert.ok(lowered && lowered.ms <= LOWER_WITHIN_MS, `fanout lowered sub's camera ${lowered ? `${lowered.ms} ms after the cap (${lowered.from} -> ${lowered.to})` : 'never'}`);
        assert.ok(firstLow, `no frame narrower than ${FULL_WIDTH} nor at a lower frame rate in ${Math.round(capMs)} ms under the cap (widths decoded: ${widthsCapped.join(',')}; ${dCap.fps} fps)`);
        assert.ok(rel(firstLow.t) <= LOWER_WITHIN_MS, `first lower-layer frame (${firstLow.frameWidth} wide) ${rel(firstLow.t)} ms after the cap went on`);
      });
      await t.test(`framesDecoded keeps rising under the cap, no stall over ${MAX_STALL_MS} ms`, () => {
        assert.ok(gapCapped.ms <= MAX_STALL_MS,
          `no new decoded frame for ${gapCapped.ms} ms (${rel(gapCapped.from)}..${rel(gapCapped.to)} ms after the cap went on); ${dCap.fps} fps decoded under the cap`);
      });
      await t.test(`${FULL_WIDTH} wide at the full frame rate again within ${RECOVER_WITHIN_MS / 1000} s of removing the cap`, () => {
        assert.ok(backMs !== undefined, `no ${FULL_WIDTH}-wide frame decoded in ${RECOVER_WITHIN_MS + 5_000} ms after the cap came off`);
        assert.ok(backMs <= RECOVER_WITHIN_MS, `back to ${FULL_WIDTH} after ${backMs} ms`);
        assert.ok(fullRateMs !== undefined && fullRateMs <= RECOVER_WITHIN_MS,
          `back to ${FULL_WIDTH} at the full frame rate ${fullRateMs === undefined ? 'never' : `after ${fullRateMs} ms`}`);
      });
    } catch (err) {
      for (const p of [pub, sub]) await screenshot(p.page, NAME, `${p.label}-failure`).catch(() => {});
      throw err;
    } finally {
      if (capped) run(TC, ['qdisc', 'del', 'dev', VETH_HOST, 'root']);
      await call(sub, 'stopSampler').catch(() => {});
      await Promise.all([pub, sub].map((p) => withTimeout(call(p, 'disconnect'), 5_000, `${p.label} leave`).catch(() => {})));
    }
  });
