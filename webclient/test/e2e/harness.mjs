// Shared helpers for Fanout's browser tests: a real fanout binary on free
// loopback ports, headless Debian Chromium through playwright-core, a static
// file server on another origin, bundling with esbuild, screenshots and logs.
//
// Every helper that starts something registers it for teardown: call
// `teardown()` from an `after()` hook (or use `useHarness()`), and nothing is
// left running even when a test fails or times out.

import { spawn, spawnSync, execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname, extname, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** webclient/ */
export const WEBCLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The Go module root (cmd/fanout lives there). */
export const REPO_ROOT = resolve(WEBCLIENT_DIR, '..');
/** Where screenshots and logs of test runs go (git-ignored). */
export const ARTIFACTS_DIR = join(WEBCLIENT_DIR, 'test-artifacts');
/** Debian's Chromium; playwright-core never downloads a browser here. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Chromium flags every browser test uses.
 * - --no-sandbox: tests run as root, where the sandbox refuses to start.
 * - --disable-gpu: no GPU here; software rendering and libvpx/OpenH264 encoders.
 * - --use-fake-device-for-media-stream / --use-fake-ui-for-media-stream: a
 *   synthetic camera (20 fps pattern) and microphone (beeps), permission
 *   prompts auto-accepted.
 * - --disable-background-networking, --disable-component-update,
 *   --disable-sync, --no-first-run: otherwise Chromium keeps trying hosts this
 *   network refuses.
 * - --autoplay-policy=no-user-gesture-required: remote <audio>/<video>
 *   elements play without a click.
 * - --allow-loopback-in-peer-connection: lets WebRTC gather 127.0.0.1
 *   candidates. A fanout started with --bind/--node-ip 127.0.0.1 offers only
 *   a 127.0.0.1 host candidate. On a machine with another interface
 *   Chromium connects without this flag: it sends its checks from its eth0
 *   host candidate to 127.0.0.1 (the kernel routes them over lo) and fanout
 *   learns that address as a peer-reflexive candidate. Where loopback is the
 *   only interface (e.g. inside a fresh network namespace) Chromium gathers
 *   no candidate at all without it and the SDK fails with "engine not
 *   connected within timeout" (both checked on these machines).
 * Not needed: --disable-features=WebRtcHideLocalIpsWithMdns. Receive-only
 * pages (no camera permission) send `.local` mDNS names that fanout cannot
 * resolve, but their checks still arrive and pair as peer-reflexive.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--autoplay-policy=no-user-gesture-required',
  '--allow-loopback-in-peer-connection',
];

// ---------------------------------------------------------------- teardown

const cleanups = [];

/** Registers fn to run at teardown (last registered runs first). */
export function onTeardown(fn) {
  cleanups.push(fn);
}

/** Runs and forgets every registered cleanup; never throws. */
export async function teardown() {
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    try {
      await withTimeout(Promise.resolve().then(fn), 15_000, 'teardown step');
    } catch (err) {
      console.error('teardown:', err?.message ?? err);
    }
  }
}

/**
 * Registers `teardown` as an after() hook of the calling test file. Pass
 * node:test's `after`.
 */
export function useHarness(after) {
  after(teardown);
}

// Child processes killed synchronously if node exits without teardown (an
// uncaught error, the test runner stopping the file with a signal).
// playwright-core kills the browsers it launched on its own.
const liveChildren = new Set();
function killChildren() {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killChildren);
let signalsHooked = false;
function hookSignals() {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.once(sig, () => {
      killChildren();
      process.exit(code);
    });
  }
}

// ---------------------------------------------------------------- utilities

/** Rejects with a clear message if promise does not settle within ms. */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after ms. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls fn until it returns a truthy value (returned) or ms elapse (throws
 * with the last value or error, for the failure message).
 */
export async function waitFor(fn, { timeout = 10_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
      lastErr = undefined;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`${what} not met within ${timeout} ms (${detail})`);
    }
    await sleep(interval);
  }
}

/** A file-name-safe version of s. */
export function slug(s) {
  return String(s).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80) || 'x';
}

/** Creates test-artifacts/ and returns the path of a file in it. */
export function artifactPath(name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return join(ARTIFACTS_DIR, name);
}

/** A temporary directory removed at teardown. */
export function tempDir(prefix = 'fanout-e2e-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function freeTCPPort() {
  return new Promise((res, rej) => {
    const srv = createNetServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function freeUDPPort() {
  return new Promise((res, rej) => {
    const sock = createSocket('udp4');
    sock.on('error', rej);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => res(port));
    });
  });
}

/** n distinct free loopback ports of a kind ('tcp' or 'udp'). */
async function freePorts(kind, n, avoid = new Set()) {
  const out = [];
  while (out.length < n) {
    const p = kind === 'udp' ? await freeUDPPort() : await freeTCPPort();
    if (!avoid.has(p) && !out.includes(p)) out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------- fanout

let buildPromise;

/**
 * Builds cmd/fanout once per process into a temp dir and returns the
 * binary's path. FANOUT_BIN skips the build and uses that binary.
 */
export function buildFanout() {
  if (process.env.FANOUT_BIN) return Promise.resolve(process.env.FANOUT_BIN);
  if (!buildPromise) {
    buildPromise = (async () => {
      const dir = mkdtempSync(join(tmpdir(), 'fanout-bin-'));
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      const bin = join(dir, 'fanout');
      try {
        await withTimeout(
          execFileP('go', ['build', '-o', bin, './cmd/fanout'], { cwd: REPO_ROOT, maxBuffer: 16 << 20 }),
          300_000,
          'go build ./cmd/fanout',
        );
      } catch (err) {
        throw new Error(`go build ./cmd/fanout failed: ${err.stderr || err.message}`);
      }
      return bin;
    })();
  }
  return buildPromise;
}

/**
 * Starts a fanout node in dev mode on free loopback ports and waits for
 * /healthz. Its stderr (debug log in --dev) goes to
 * test-artifacts/<name>-fanout.log. Stopped at teardown.
 *
 * opts.host (default 127.0.0.1) is the IPv4 address fanout binds (HTTP, UDP,
 * ICE-TCP) and advertises as its ICE host candidate (--bind, --node-ip); url
 * and wsUrl use it. A test whose browser runs in another network namespace
 * passes the host end of its veth link here. The free ports are picked on
 * 127.0.0.1 (a port free there is almost always free on a local address).
 *
 * Returns {url, wsUrl, port, udpPort, tcpPort, logPath, bin, pid, stop(), token(room, identity, opts)}.
 * token opts: {name, publish, subscribe, publishData, admin, record, validFor} map to
 * the `fanout token` flags of the same names (publishData -> --publish-data).
 */
export async function startFanout(opts = {}) {
  // The free ports are released before fanout binds them: another process
  // may take one meanwhile, so a node that fails to start is retried.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startFanoutOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/exited early/.test(err.message)) throw err;
    }
  }
}

async function startFanoutOnce({ name = 'fanout', host = '127.0.0.1', allInterfaces = false, args = [], env = {}, timeout = 20_000 } = {}) {
  const bin = await buildFanout();
  const [port, tcpPort] = await freePorts('tcp', 2);
  const [udpPort] = await freePorts('udp', 1);
  const logPath = artifactPath(`${slug(name)}-fanout.log`);
  const log = createWriteStream(logPath);
  // allInterfaces: media on every interface with their own addresses as
  // candidates (outside clients such as whip-client gather no loopback
  // candidates); HTTP is still reached at host.
  const where = allInterfaces ? ['--bind', '0.0.0.0'] : ['--bind', host, '--node-ip', host];
  const fullArgs = [
    '--dev', ...where, '--port', String(port), '--udp-port', String(udpPort),
    '--tcp-port', String(tcpPort), ...args,
  ];
  // FANOUT_* from the caller's environment would override nothing we pass
  // explicitly, but could add keys or a config file: drop them.
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FANOUT_')));
  hookSignals();
  const child = spawn(bin, fullArgs, { cwd: REPO_ROOT, env: { ...cleanEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise((res) => child.once('exit', (code, signal) => {
    liveChildren.delete(child);
    res({ code, signal });
  }));
  let stopped = false;
  const stop = async () => {
    if (stopped) return exited;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const res = await withTimeout(exited, 5_000, 'fanout exit').catch(() => null);
      if (!res) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await new Promise((r) => log.end(r));
    return exited;
  };
  onTeardown(stop);

  const url = `http://${host}:${port}`;
  let started = false;
  let exitedEarly = false;
  const failed = exited.then((r) => {
    exitedEarly = true;
    if (!started) throw new Error(`fanout exited early (${JSON.stringify(r)}); see ${logPath}`);
  });
  failed.catch(() => {});
  const ready = waitFor(async () => {
    if (exitedEarly) return 'exited'; // ends the polling; `failed` reports it
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
    return res.status === 200;
  }, { timeout, interval: 100, what: `fanout /healthz on ${url} (log ${logPath})` });
  try {
    await Promise.race([ready, failed]);
  } catch (err) {
    await stop();
    throw err;
  }
  started = true;

  const token = async (room, identity, opts = {}) => {
    const targs = ['token', '--room', room, '--identity', identity];
    const flag = (k, f) => { if (opts[k] !== undefined) targs.push(`--${f}=${opts[k]}`); };
    flag('name', 'name');
    flag('publish', 'publish');
    flag('subscribe', 'subscribe');
    flag('publishData', 'publish-data');
    flag('admin', 'admin');
    flag('record', 'record');
    flag('validFor', 'valid-for');
    const { stdout } = await withTimeout(execFileP(bin, targs, { env: cleanEnv }), 10_000, 'fanout token');
    return stdout.trim();
  };

  return { url, wsUrl: `ws://${host}:${port}`, port, udpPort, tcpPort, logPath, bin, pid: child.pid, stop, token };
}

// ---------------------------------------------------------------- chromium

/**
 * Launches headless Chromium with CHROMIUM_ARGS (plus extra args); closed at
 * teardown. Waits up to 5 min for /usr/bin/chromium to appear (it may still
 * be installing). executablePath replaces /usr/bin/chromium, e.g. with a
 * wrapper script that starts it in a network namespace (playwright talks to
 * it over a pipe, which works across namespaces).
 */
export async function launchChromium({ args = [], timeout = 30_000, executablePath = CHROMIUM_PATH } = {}) {
  await waitFor(() => existsSync(CHROMIUM_PATH), { timeout: 300_000, interval: 10_000, what: `${CHROMIUM_PATH} to exist` });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout,
  });
  onTeardown(async () => {
    await withTimeout(browser.close(), 10_000, 'browser.close').catch(() => {
      // A wedged browser: kill its process tree.
      const proc = browser.process?.();
      if (proc) proc.kill('SIGKILL');
    });
  });
  return browser;
}

/**
 * Copies every console message, page error and failed request of a page to
 * test-artifacts/<name>-console.log, and keeps them in memory (returned
 * array of strings) for assertions and failure messages.
 */
export function captureConsole(page, name) {
  const lines = [];
  const out = createWriteStream(artifactPath(`${slug(name)}-console.log`));
  onTeardown(() => new Promise((r) => out.end(r)));
  const add = (line) => {
    const l = `${new Date().toISOString()} ${line}`;
    lines.push(l);
    // A page may still log while teardown closes things: after the file
    // is closed, the line is kept in memory only.
    if (!out.writableEnded) out.write(l + '\n');
  };
  page.on('console', (msg) => add(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => add(`[pageerror] ${err.stack || err.message}`));
  page.on('requestfailed', (req) => add(`[requestfailed] ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));
  page.on('crash', () => add('[crash] page crashed'));
  return lines;
}

/** Saves a PNG of the page to test-artifacts/<test>-<name>.png and returns its path. */
export async function screenshot(page, test, name) {
  const path = artifactPath(`${slug(test)}-${slug(name)}.png`);
  await withTimeout(page.screenshot({ path, fullPage: true }), 15_000, `screenshot ${name}`);
  return path;
}

// ---------------------------------------------------------------- static files

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
};

/**
 * Serves dir on http://127.0.0.1:<free port> (another origin than fanout, so
 * browser pages also exercise fanout's CORS), or on host instead of
 * 127.0.0.1. Closed at teardown. Returns {url, port, close()}.
 */
export async function serveStatic(dir, { host = '127.0.0.1' } = {}) {
  const root = resolve(dir);
  const server = createServer(async (req, res) => {
    try {
      const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      let file = normalize(join(root, pathname));
      if (file !== root && !file.startsWith(root + sep)) {
        res.writeHead(403).end();
        return;
      }
      if ((await stat(file).catch(() => null))?.isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, {
        'Content-Type': MIME[extname(file)] ?? 'application/octet-stream',
        'Cache-Control': 'no-store',
      });
      res.end(body);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    }
  });
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, host, r));
  const { port } = server.address();
  let closed = false;
  const close = () => {
    if (closed) return Promise.resolve();
    closed = true;
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  };
  onTeardown(close);
  return { url: `http://${host}:${port}`, port, close };
}

// ---------------------------------------------------------------- bundling

/**
 * Bundles a browser entry point (TS or JS) with esbuild into outdir as
 * `<basename>.js` (ESM, sourcemap). Returns the output file path.
 */
export async function bundle(entry, outdir, { define = {} } = {}) {
  const esbuild = await import('esbuild');
  onTeardown(() => esbuild.stop());
  const out = join(outdir, entry.replace(/^.*[\\/]/, '').replace(/\.[cm]?[jt]s$/, '.js'));
  await esbuild.build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    sourcemap: true,
    logLevel: 'warning',
    absWorkingDir: WEBCLIENT_DIR,
    define,
  });
  return out;
}

/**
 * Opens a page of a fanout node's origin (path) in a fresh browser context
 * with camera and microphone allowed; console lines are kept for failure
 * messages. Returns {page, label, consoleLines}.
 */
export async function openOriginPage(browser, fanout, test, label, path) {
  const context = await browser.newContext({ viewport: { width: 960, height: 600 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: fanout.url });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleLines = captureConsole(page, `${test}-${label}`);
  await page.goto(`${fanout.url}${path}`);
  return { page, label, consoleLines };
}

/** The last lines of a fanout node's log, for failure messages. */
export function fanoutLogTail(fanout, lines = 30) {
  try {
    return readFileSync(fanout.logPath, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** whip-client's pipelines: a live 640x360 H.264 test picture and an Opus tone. */
export const WHIP_VIDEO = 'videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! queue ! ' +
  'x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800 ! rtph264pay config-interval=-1 pt=96 ! queue ! ' +
  'application/x-rtp,media=video,encoding-name=H264,payload=96';
export const WHIP_AUDIO = 'audiotestsrc is-live=true ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=111 ! queue ! ' +
  'application/x-rtp,media=audio,encoding-name=OPUS,payload=111';

/**
 * whipClientMissing says why Debian's whip-client cannot run here, or ''.
 */
export function whipClientMissing() {
  for (const tool of ['whip-client', 'cc']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`]);
    if (r.status !== 0) return `${tool} not installed (Debian packages simple-whip-client and gcc)`;
  }
  return '';
}

/**
 * startWhipClient publishes whip-client's H.264 and Opus test sources to a
 * WHIP URL with a token; it is killed at teardown.
 */
export function startWhipClient(url, token, name = 'whip-client') {
  // The no-op libgupnp-igd whip-client needs (the C file says why).
  const dir = tempDir('fanout-gupnp-');
  const stub = join(REPO_ROOT, 'signaling', 'testdata', 'gupnp-igd-stub.c');
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-Wl,-soname,libgupnp-igd-1.0.so.4', '-o', join(dir, 'libgupnp-igd-1.0.so.4'), stub]);
  if (cc.status !== 0) throw new Error(`build the libgupnp-igd stub: ${cc.stderr}`);
  const log = createWriteStream(artifactPath(`${slug(name)}.log`));
  const child = spawn('whip-client', ['-u', url, '-t', token, '-V', WHIP_VIDEO, '-A', WHIP_AUDIO, '-o', '-l', '4'], {
    env: { ...process.env, LD_LIBRARY_PATH: dir }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  onTeardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  return child;
}
