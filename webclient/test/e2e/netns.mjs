// A network namespace with one veth pair for tests whose subscriber must sit
// behind a shaped link (tc tbf on the veth's host end shapes everything sent
// into the namespace, and nothing else). Named after the pid (<prefix><pid>,
// <veth><pid>h / <veth><pid>n); removed with what runs inside it on exit and
// on SIGINT/SIGTERM/SIGHUP; leftovers of earlier runs whose pid is gone are
// removed first. The /30 is 10.<octet>.x.y, picked by pid.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The path of a system tool (sbin directories are not always on PATH), or its bare name. */
export const tool = (name) => ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((d) => join(d, name)).find((f) => existsSync(f)) ?? name;
export const IP = tool('ip');
export const TC = tool('tc');
const SYSCTL = tool('sysctl');

/** Runs a command; {ok, out, err}. Never throws. */
export function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  const err = (r.error?.message ?? '') + (r.stderr ?? '');
  return { ok: r.status === 0, out: r.stdout ?? '', err: err.trim() };
}

/** Runs a command; throws with its stderr if it fails. */
export function must(cmd, args) {
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

function killNamespacePids(ns) {
  for (const p of run(IP, ['netns', 'pids', ns]).out.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/**
 * makeNetns({prefix, veth, octet}) returns {ns, hostIf, nsIf, hostIP, nsIP,
 * setup() -> skip reason or undefined, remove(), shape({rateKbit, burstKB,
 * latencyMs}), unshape(), tbfStats()}.
 */
export function makeNetns({ prefix, veth, octet }) {
  const pid = process.pid;
  const base = (pid % 16384) * 4;
  const addr = (n) => `10.${octet}.${(base + n) >> 8}.${(base + n) & 255}`;
  const n = {
    ns: `${prefix}${pid}`, hostIf: `${veth}${pid}h`, nsIf: `${veth}${pid}n`, hostIP: addr(1), nsIP: addr(2),
    created: false, removed: false,
  };
  const removeStale = () => {
    for (const line of run(IP, ['netns', 'list']).out.split('\n')) {
      const name = line.split(' ')[0];
      const m = name.match(new RegExp(`^${prefix}(\\d+)$`));
      if (m && !pidAlive(Number(m[1]))) {
        killNamespacePids(name);
        run(IP, ['netns', 'del', name]);
      }
    }
    for (const line of run(IP, ['-o', 'link', 'show']).out.split('\n')) {
      const name = (line.split(': ')[1] ?? '').split('@')[0];
      const m = name.match(new RegExp(`^${veth}(\\d+)[hn]$`));
      if (m && !pidAlive(Number(m[1]))) run(IP, ['link', 'del', name]);
    }
  };
  n.remove = () => {
    if (!n.created || n.removed) return;
    n.removed = true;
    killNamespacePids(n.ns);
    run(TC, ['qdisc', 'del', 'dev', n.hostIf, 'root']);
    run(IP, ['link', 'del', n.hostIf]);
    run(IP, ['netns', 'del', n.ns]);
  };
  n.shape = ({ rateKbit, burstKB, latencyMs }) => must(TC, ['qdisc', 'replace', 'dev', n.hostIf, 'root', 'tbf',
    'rate', `${rateKbit}kbit`, 'burst', `${burstKB}kb`, 'latency', `${latencyMs}ms`]);
  n.unshape = () => must(TC, ['qdisc', 'del', 'dev', n.hostIf, 'root']);
  n.tbfStats = () => {
    const q = JSON.parse(must(TC, ['-s', '-j', 'qdisc', 'show', 'dev', n.hostIf])).find((x) => x.kind === 'tbf');
    return q ? { bytes: q.bytes, drops: q.drops, overlimits: q.overlimits } : { bytes: 0, drops: 0, overlimits: 0 };
  };
  n.setup = () => {
    if (process.platform !== 'linux') return `needs Linux network namespaces (platform is ${process.platform})`;
    if (process.getuid?.() !== 0) return 'needs root to create a network namespace, a veth pair and a tc qdisc';
    for (const cmd of [IP, TC]) {
      const r = run(cmd, ['-V']);
      if (!r.ok) return `${cmd} is not usable: ${r.err}`;
    }
    removeStale();
    process.on('exit', n.remove);
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
      process.once(sig, () => { n.remove(); process.exit(code); });
    }
    const add = run(IP, ['netns', 'add', n.ns]);
    if (!add.ok) return `cannot create a network namespace (ip netns add ${n.ns}): ${add.err}`;
    n.created = true;
    try {
      must(IP, ['link', 'add', n.hostIf, 'type', 'veth', 'peer', 'name', n.nsIf, 'netns', n.ns]);
      run(SYSCTL, ['-q', '-w', `net.ipv6.conf.${n.hostIf}.disable_ipv6=1`]);
      must(IP, ['addr', 'add', `${n.hostIP}/30`, 'dev', n.hostIf]);
      must(IP, ['link', 'set', n.hostIf, 'up']);
      run(IP, ['netns', 'exec', n.ns, SYSCTL, '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
      run(IP, ['netns', 'exec', n.ns, SYSCTL, '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1']);
      must(IP, ['-n', n.ns, 'addr', 'add', `${n.nsIP}/30`, 'dev', n.nsIf]);
      must(IP, ['-n', n.ns, 'link', 'set', n.nsIf, 'up']);
      must(IP, ['-n', n.ns, 'link', 'set', 'lo', 'up']);
      n.shape({ rateKbit: 700, burstKB: 16, latencyMs: 100 });
      n.unshape();
    } catch (err) {
      n.remove();
      return `cannot set up the namespace's link: ${err.message}`;
    }
    return undefined;
  };
  return n;
}
