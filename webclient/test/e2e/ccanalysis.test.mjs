// The congestion matrix's figures on synthetic samples (no browser): the
// layer path, settling, changes, a visit above the rate, gaps, loss and
// recovery must come out as the issue defines them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyze, checkRun, layerNames } from './ccanalysis.mjs';

/** 50 ms samples from 5 s to 30 s: 1280 before the cap at 10 s, widthAt(t) after. */
function samples(widthAt, { stallFrom = -1, stallTo = -1, lostAt = -1 } = {}) {
  const out = [];
  let decoded = 0;
  let lost = 0;
  let received = 0;
  for (let t = 5_000; t < 30_000; t += 50) {
    if (!(t >= stallFrom && t < stallTo)) decoded++;
    received += 8;
    if (t === lostAt) lost += 20;
    out.push({ t, framesDecoded: decoded, frameWidth: widthAt(t), packetsReceived: received, packetsLost: lost });
  }
  return out;
}

const run = { tJoined: 4_900, tSubscribed: 4_950, t0: 10_000, t1: 25_000 };

test('a direct switch to MEDIUM that holds passes every point', () => {
  const m = analyze(samples((t) => (t > 10_800 && t <= 25_000 ? 640 : 1280)), { ...run, want: 640 });
  assert.equal(m.settleMs, 850);
  assert.equal(layerNames(m.layers), 'HIGH>MEDIUM');
  assert.equal(m.direct, true);
  assert.equal(m.changes, 0);
  assert.equal(m.gapMs, 50);
  assert.equal(m.recoverMs, 1_000);
  assert.deepEqual(checkRun({ want: 640 }, { ...m, audioLossPct: 0, tbfOverlimits: 1, openMs: 100 }, 30_000), []);
});

test('a detour through LOW, a climb back to HIGH, a stall and loss are all reported', () => {
  const w = (t) => (t <= 10_500 || (t > 15_000 && t <= 16_000) || t > 25_000 ? 1280 : t <= 11_500 ? 320 : 640);
  const m = analyze(samples(w, { stallFrom: 18_000, stallTo: 18_600, lostAt: 20_000 }), { ...run, want: 640 });
  assert.equal(layerNames(m.layers), 'HIGH>LOW>MEDIUM>HIGH>MEDIUM');
  assert.equal(m.direct, false);
  assert.equal(m.changes, 2);
  assert.ok(m.aboveAfter > 0);
  assert.equal(m.gapMs, 650);
  assert.ok(m.videoLossPct > 1, `loss ${m.videoLossPct}`);
  const problems = checkRun({ want: 640 }, { ...m, audioLossPct: 0, tbfOverlimits: 1, openMs: 100 }, 30_000);
  for (const re of [/not direct/, /above the rate/, /layer changes/, /gap/, /video loss/]) {
    assert.ok(problems.some((p) => re.test(p)), `${re} in ${problems.join(' | ')}`);
  }
});

test('pause: frames stop under the cap and come back after it', () => {
  const m = analyze(samples(() => 320, { stallFrom: 10_700, stallTo: 25_300 }), { ...run, want: 0 });
  assert.equal(m.pausedMs, 650);
  assert.equal(m.backMs, 300);
});
