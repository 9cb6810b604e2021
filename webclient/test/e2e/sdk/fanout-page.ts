// Browser side of browser tests that drive Fanout's own SDK (sdk/src)
// through `window.fanoutTest`. Bundled by the test with esbuild.

import { connect, type Room } from '../../../sdk/src/index.js';

const state = {
  room: undefined as Room | undefined,
  events: [] as string[],
  problems: [] as string[],
  identity: '',
  leaving: false,
};

function log(msg: string) {
  state.events.push(`${new Date().toISOString()} ${msg}`);
  console.log(`[fanoutTest ${state.identity}] ${msg}`);
}

function problem(msg: string) {
  state.problems.push(msg);
  log(`PROBLEM ${msg}`);
}

function room(): Room {
  if (!state.room) throw new Error('not connected');
  return state.room;
}

async function join(url: string, token: string, identity: string): Promise<{ sid: string }> {
  state.identity = identity;
  const r = await connect(url, token, { reconnect: false });
  state.room = r;
  r.on('trackStreamStateChanged', (pub, s, p) => log(`stream state ${p.identity} ${pub.sid} ${s}`));
  r.on('reconnecting', () => problem('reconnecting'));
  r.on('disconnected', (reason) => {
    log(`disconnected ${reason}`);
    if (!state.leaving) problem(`disconnected: ${reason}`);
  });
  log(`connected as ${r.localParticipant.identity} ${r.localParticipant.sid}`);
  return { sid: r.localParticipant.sid };
}

/** Publishes the fake camera at 1280x720 with simulcast q/h/f (VP8). */
async function publishCamera(): Promise<{ sid: string; encodings: number }> {
  const lp = room().localParticipant;
  await lp.setCameraEnabled(true, { simulcast: true, codec: 'vp8' });
  const pub = lp.findBySource('camera');
  if (!pub) throw new Error('camera not published');
  (document.getElementById('local') as HTMLVideoElement).srcObject = new MediaStream([pub.track]);
  const encodings = pub.sender?.getParameters().encodings ?? [];
  log(`published camera ${pub.sid} ${JSON.stringify(encodings.map((e) => e.rid))}`);
  return { sid: pub.sid, encodings: encodings.length };
}

/** The camera sender's encodings, and what the server last asked to encode. */
function senderEncodings(): { encodings: { rid?: string; active: boolean }[]; subscribedQualities?: string[] } {
  const pub = room().localParticipant.findBySource('camera');
  const encodings = pub?.sender?.getParameters().encodings ?? [];
  return {
    encodings: encodings.map((e) => ({ rid: e.rid, active: e.active ?? true })),
    subscribedQualities: pub?.subscribedQualities,
  };
}

/** The camera's outbound-rtp stats per layer. */
async function outboundStats(): Promise<{ source: string; rid?: string; bytesSent: number; frameWidth?: number; qualityLimitationReason?: string }[]> {
  const pub = room().localParticipant.findBySource('camera');
  if (!pub?.sender) return [];
  const out: { source: string; rid?: string; bytesSent: number; frameWidth?: number; qualityLimitationReason?: string }[] = [];
  (await pub.sender.getStats()).forEach((s) => {
    if (s.type !== 'outbound-rtp') return;
    out.push({ source: 'camera', rid: s.rid, bytesSent: s.bytesSent ?? 0, frameWidth: s.frameWidth, qualityLimitationReason: s.qualityLimitationReason });
  });
  return out;
}

async function leave(): Promise<{ state: string }> {
  state.leaving = true;
  await state.room?.leave();
  return { state: state.room?.state ?? 'none' };
}

const api = {
  join,
  publishCamera,
  senderEncodings,
  outboundStats,
  leave,
  events: () => state.events,
  problems: () => state.problems,
};

declare global {
  interface Window {
    fanoutTest: typeof api;
  }
}

window.fanoutTest = api;
document.title = 'Fanout SDK test page (ready)';
