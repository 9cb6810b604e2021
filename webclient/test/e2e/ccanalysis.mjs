// Figures and issue 13's thresholds for one congestion run of a Chromium
// subscriber, from its camera's inbound-rtp samples (page time t, 50 ms
// apart): the layer is the decoded frameWidth, a frame is a framesDecoded
// increment. Pure functions, so congestion-matrix.test.mjs and
// ccanalysis.test.mjs share them.

/** Issue 13's thresholds (never loosened to make a run pass). */
export const LIMITS = {
  settleMs: 2_000, // point 2
  maxGapMs: 250, // point 3, after the first 3 s of the cap
  gapFromMs: 3_000,
  maxLossPct: 1, // point 3, video after retransmission and audio
  recoverMs: 8_000, // point 4
  pauseMs: 1_000, // point 5
  pauseAudioPct: 2, // point 5
  openMs: 500, // point 7
};
export const TOP_WIDTH = 1280;
/** 1280 at the full frame rate: >= 18 frames in a 1 s window (90 % of the publisher's 20 fps). */
export const FULL_FPS = 18;

const NAMES = { 1280: 'HIGH', 640: 'MEDIUM', 320: 'LOW' };
export const layerNames = (ws) => ws.map((w) => NAMES[w] ?? String(w)).join('>');

/** The samples where a new frame was decoded: {t, w}. */
function decodedFrames(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].framesDecoded > samples[i - 1].framesDecoded) out.push({ t: samples[i].t, w: samples[i].frameWidth });
  }
  return out;
}

/** The first page time after t1 at which the last 1 s held >= FULL_FPS frames, all 1280 wide, or -1. */
export function recoverAt(samples, t1) {
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (s.t - 1_000 < t1 || s.frameWidth !== TOP_WIDTH) continue;
    const j = samples.findLastIndex((x) => x.t <= s.t - 1_000);
    if (j < 0) continue;
    const win = samples.slice(j + 1, i + 1);
    if (win.every((x) => x.frameWidth === TOP_WIDTH) && (s.framesDecoded - samples[j].framesDecoded) * 1000 / (s.t - samples[j].t) >= FULL_FPS) return s.t;
  }
  return -1;
}

/**
 * analyze: c = {want, tJoined, tSubscribed, t0, t1} (page times: connect()
 * resolved, TrackSubscribed of the camera, cap on, cap off). Times in the result are ms relative to their event; -1: never.
 */
export function analyze(samples, { want, tJoined, tSubscribed, t0, t1 }) {
  const frames = decodedFrames(samples);
  const m = { openMs: -1, joinTo1280Ms: -1, settleMs: -1, layers: [], direct: true, aboveAfter: 0, changes: 0, changesPer30s: 0, windowMs: 0,
    gapMs: 0, videoLossPct: 0, videoLost: 0, videoExpected: 0, recoverMs: -1, pausedMs: -1, backMs: -1 };
  // From livekit-client's TrackSubscribed (the sampler runs from before the
  // join, every 50 ms) to the first sample with a decoded 1280-wide frame.
  const open = samples.find((s) => s.frameWidth === TOP_WIDTH && s.framesDecoded > 0);
  if (open) m.openMs = Math.round(open.t - tSubscribed);
  if (open) m.joinTo1280Ms = Math.round(open.t - tJoined);
  const start = frames.findLast((f) => f.t < t0)?.w ?? 0;
  m.layers = [start];
  let settleT = -1;
  if (want === 0) m.pausedMs = 0;
  for (const f of frames.filter((x) => x.t >= t0 && x.t <= t1)) {
    if (f.w !== m.layers.at(-1)) m.layers.push(f.w);
    if (want === 0) m.pausedMs = Math.round(f.t - t0);
    else if (settleT < 0) {
      if (f.w === want) settleT = f.t;
      else if (f.w < want || f.w !== start) m.direct = false;
    }
  }
  if (want === 0 && m.pausedMs > 0 && t1 - (t0 + m.pausedMs) < 500) m.pausedMs = -1;
  if (want > 0 && settleT < 0) m.direct = false;
  if (settleT >= 0) {
    m.settleMs = Math.round(settleT - t0);
    m.windowMs = Math.round(t1 - settleT);
    let last = want;
    for (const f of frames.filter((x) => x.t >= settleT && x.t <= t1)) {
      if (f.w !== last) { m.changes++; last = f.w; }
      if (f.w > want) m.aboveAfter++;
    }
    if (m.windowMs > 0) m.changesPer30s = Math.round((m.changes * 300_000) / m.windowMs) / 10;
  }
  // The longest stretch without a decoded frame in [t0 + 3 s, t1].
  let last = t0 + LIMITS.gapFromMs;
  for (const f of frames.filter((x) => x.t >= t0 + LIMITS.gapFromMs && x.t <= t1)) {
    m.gapMs = Math.max(m.gapMs, f.t - last);
    last = f.t;
  }
  m.gapMs = Math.round(Math.max(m.gapMs, t1 - last));
  // Loss after retransmission: packetsLost counts what never arrived (a
  // late retransmission lowers it again), over the same span.
  const a = samples.findLast((s) => s.t <= t0 + LIMITS.gapFromMs);
  const b = samples.findLast((s) => s.t <= t1);
  if (a && b) {
    m.videoLost = b.packetsLost - a.packetsLost;
    m.videoExpected = (b.packetsReceived - a.packetsReceived) + m.videoLost;
    m.videoLossPct = m.videoExpected > 0 ? Math.round((m.videoLost * 10_000) / m.videoExpected) / 100 : 0;
  }
  const r = recoverAt(samples, t1);
  if (r >= 0) m.recoverMs = Math.round(r - t1);
  const back = frames.find((f) => f.t > t1);
  if (back) m.backMs = Math.round(back.t - t1);
  return m;
}

/** The points 2-5 and 7 that a run misses, as messages (empty: all met). */
export function checkRun(c, m, windowMs) {
  const p = [];
  if (!(m.tbfOverlimits > 0)) p.push('infrastructure: the tbf qdisc never held a packet back: the cap did not bind');
  if (m.openMs < 0 || m.openMs > LIMITS.openMs) p.push(`point 7: first ${TOP_WIDTH}-wide frame ${m.openMs} ms after subscribing on the open link, want <= ${LIMITS.openMs}`);
  if (c.want === 0) {
    if (m.pausedMs < 0 || m.pausedMs > LIMITS.pauseMs) p.push(`point 5: video not paused within ${LIMITS.pauseMs} ms (last frame at ${m.pausedMs} ms; -1: frames until the cap came off)`);
    if (m.audioLossPct >= LIMITS.pauseAudioPct) p.push(`point 5: audio loss ${m.audioLossPct} % under the pause cap, want < ${LIMITS.pauseAudioPct} %`);
    if (m.backMs < 0 || m.backMs > LIMITS.recoverMs) p.push(`point 5: video back ${m.backMs} ms after the cap lifted, want <= ${LIMITS.recoverMs}`);
    return p;
  }
  if (m.settleMs < 0 || m.settleMs > LIMITS.settleMs) p.push(`point 2: settled on ${c.want} wide ${m.settleMs} ms after the cap (-1 never), want <= ${LIMITS.settleMs}; layers ${layerNames(m.layers)}`);
  if (!m.direct) p.push(`point 2: not direct to ${c.want} wide: layers after the cap ${layerNames(m.layers)}`);
  if (m.aboveAfter > 0) p.push(`point 2: after settling, ${m.aboveAfter} samples decoded a layer above the rate; layers ${layerNames(m.layers)}`);
  const allowed = Math.ceil(windowMs / 30_000);
  if (m.changes > allowed) p.push(`point 2: ${m.changes} layer changes in the ${Math.round(m.windowMs / 1000)} s after settling (${m.changesPer30s} per 30 s), want <= ${allowed}`);
  if (m.gapMs > LIMITS.maxGapMs) p.push(`point 3: a ${m.gapMs} ms gap between decoded frames after the first 3 s of the cap, want <= ${LIMITS.maxGapMs}`);
  if (m.videoLossPct >= LIMITS.maxLossPct) p.push(`point 3: video loss after retransmission ${m.videoLossPct} % (${m.videoLost} of ${m.videoExpected}), want < ${LIMITS.maxLossPct} %`);
  if (m.audioLossPct >= LIMITS.maxLossPct) p.push(`point 3: audio loss ${m.audioLossPct} %, want < ${LIMITS.maxLossPct} %`);
  if (m.recoverMs < 0 || m.recoverMs > LIMITS.recoverMs) p.push(`point 4: ${TOP_WIDTH} wide at >= ${FULL_FPS} fps ${m.recoverMs} ms after the cap came off (-1 never), want <= ${LIMITS.recoverMs}`);
  return p;
}

/** The run's `congestion-metric:` line (same keys as the Go subscriber's). */
export function metricLine(sub, server, shape, m) {
  return `congestion-metric: sub=${sub} server=${server} shape=${shape} open_ms=${m.openMs} join_to_1280_ms=${m.joinTo1280Ms} settle_ms=${m.settleMs} ` +
    `layers=${layerNames(m.layers)} direct=${m.direct} above_rate_samples=${m.aboveAfter} changes=${m.changes} ` +
    `changes_per_30s=${m.changesPer30s} window_s=${Math.round(m.windowMs / 1000)} max_gap_ms=${m.gapMs} ` +
    `video_loss=${m.videoLossPct}% (${m.videoLost}/${m.videoExpected}) audio_loss=${m.audioLossPct}% recover_ms=${m.recoverMs} ` +
    `paused_ms=${m.pausedMs} back_ms=${m.backMs} tbf_kbps=${m.tbfKbps} tbf_drops=${m.tbfDrops} tbf_overlimits=${m.tbfOverlimits}`;
}
