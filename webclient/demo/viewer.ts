// The broadcast viewer: joins a room without publishing and shows the
// participants that publish, or plays one broadcaster over WHEP.
import { Room, connect, playWHEP, type Participant, type RemoteParticipant, type WHEPSession } from '../sdk/src/index.js';
import { $, credentials, defaultServerURL, params } from './common.js';
import { VideoGrid } from './grid.js';

const form = $<HTMLFormElement>('viewer-form');
const roomInput = $<HTMLInputElement>('room');
const tokenInput = $<HTMLTextAreaElement>('token');
const urlInput = $<HTMLInputElement>('url');
const watchBtn = $<HTMLButtonElement>('watch-btn');
const errorEl = $('viewer-error');
const grid = new VideoGrid($('grid'), $('audio-sink'));
const soundBtn = $<HTMLButtonElement>('btn-sound');
const participantInput = $<HTMLInputElement>('participant');
const whepVideo = $<HTMLVideoElement>('whep-video');
let room: Room | undefined;
let whep: WHEPSession | undefined;
let soundOn = false;

const hlsInput = $<HTMLInputElement>('hls-url');

/** mode is the form's choice: the room connection, WHEP or HLS. */
function mode(): 'room' | 'whep' | 'hls' {
  const v = form.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value;
  return v === 'whep' || v === 'hls' ? v : 'room';
}

function showMode(): void {
  const m = mode();
  $('participant-label').hidden = m !== 'whep';
  participantInput.required = m === 'whep';
  $('hls-label').hidden = m !== 'hls';
  hlsInput.required = m === 'hls';
  roomInput.required = m !== 'hls';
}

/** Test hooks: the WHEP session and the status of its DELETE; the hls.js player. */
declare global {
  interface Window {
    __whep?: { session?: WHEPSession; deleteStatus?: number };
    __hls?: { latency: number; destroy(): void };
  }
}

/**
 * watchHLS plays an HLS playlist in the page's video element: with hls.js
 * in low-latency mode (loaded on demand, it is large), or natively where
 * the browser plays HLS itself.
 */
async function watchHLS(url: string): Promise<void> {
  if (!whepVideo.canPlayType('application/vnd.apple.mpegurl') || window.MediaSource) {
    const { default: Hls } = await import('hls.js');
    if (!Hls.isSupported()) throw new Error('This browser cannot play HLS');
    const hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (data.fatal) errorEl.textContent = `HLS: ${data.type} ${data.details}`;
    });
    hls.loadSource(url);
    hls.attachMedia(whepVideo);
    window.__hls = hls;
  } else {
    whepVideo.src = url;
  }
  whepVideo.hidden = false;
  $('grid').hidden = true;
  $('waiting').hidden = true;
  $('live-badge').hidden = false;
  $('room-title').textContent = 'HLS';
  $('conn-state').textContent = 'playing';
  $('conn-state').dataset.state = 'connected';
  $('viewer-join').hidden = true;
  $('viewer-stage').hidden = false;
  await whepVideo.play().catch(() => undefined);
}

/** stopHLS ends HLS playback and shows the form again. */
function stopHLS(): void {
  if (!window.__hls && !whepVideo.src) return;
  window.__hls?.destroy();
  window.__hls = undefined;
  whepVideo.removeAttribute('src');
  whepVideo.hidden = true;
  $('grid').hidden = false;
  $('viewer-join').hidden = false;
  $('viewer-stage').hidden = true;
}

/** watchWHEP plays one participant over WHEP in the page's video element. */
async function watchWHEP(roomName: string): Promise<void> {
  const who = participantInput.value.trim();
  const identity = `whep-viewer-${Math.random().toString(36).slice(2, 8)}`;
  const cred = await credentials(roomName, identity, 'Viewer', true, tokenInput, urlInput);
  const s = await playWHEP({ url: cred.url, token: cred.token, participant: who });
  whep = s;
  window.__whep = { session: s };
  whepVideo.srcObject = s.stream;
  whepVideo.hidden = false;
  $('grid').hidden = true;
  $('waiting').hidden = true;
  $('live-badge').hidden = false;
  $('room-title').textContent = `${roomName} · ${who}`;
  // The server ends the session when the broadcaster leaves: the
  // connection then goes disconnected for good, or failed.
  let gone: ReturnType<typeof setTimeout> | undefined;
  const state = () => {
    const st = s.pc.connectionState;
    $('conn-state').textContent = st;
    $('conn-state').dataset.state = st;
    clearTimeout(gone);
    if (st === 'failed') void stopWHEP(`The broadcast of ${who} ended or its connection failed`);
    if (st === 'disconnected') gone = setTimeout(() => void stopWHEP(`The broadcast of ${who} ended`), 3000);
  };
  s.pc.addEventListener('connectionstatechange', state);
  state();
  $('viewer-join').hidden = true;
  $('viewer-stage').hidden = false;
}

/** stopWHEP ends the WHEP session (DELETE) and shows the form again. */
async function stopWHEP(reason?: string): Promise<void> {
  const s = whep;
  if (!s) return;
  whep = undefined;
  window.__whep = { session: s, deleteStatus: await s.stop() };
  whepVideo.srcObject = null;
  whepVideo.hidden = true;
  $('grid').hidden = false;
  $('viewer-join').hidden = false;
  $('viewer-stage').hidden = true;
  if (reason) errorEl.textContent = reason;
}

function publishing(p: Participant): boolean {
  return p.trackPublications.size > 0;
}

function sync(p: RemoteParticipant): void {
  if (publishing(p)) {
    grid.addParticipant(p, false);
    grid.refresh(p);
  } else {
    grid.removeParticipant(p);
  }
  const live = [...(room?.remoteParticipants.values() ?? [])].some(publishing);
  $('waiting').hidden = live;
  $('live-badge').hidden = !live;
}

function applySound(): void {
  for (const a of document.querySelectorAll<HTMLAudioElement>('#audio-sink audio')) {
    a.muted = !soundOn;
    if (soundOn) a.play().catch(() => undefined);
  }
  soundBtn.textContent = soundOn ? 'Mute sound' : 'Unmute sound';
  soundBtn.setAttribute('aria-pressed', String(soundOn));
}

async function watch(): Promise<void> {
  const roomName = roomInput.value.trim();
  if (!roomName && mode() !== 'hls') return;
  watchBtn.disabled = true;
  errorEl.textContent = '';
  if (mode() !== 'room') {
    try {
      if (mode() === 'hls') await watchHLS(hlsInput.value.trim());
      else await watchWHEP(roomName);
    } catch (err) {
      errorEl.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      watchBtn.disabled = false;
    }
    return;
  }
  try {
    const identity = `viewer-${Math.random().toString(36).slice(2, 8)}`;
    const cred = await credentials(roomName, identity, 'Viewer', true, tokenInput, urlInput);
    const r = await connect(cred.url, cred.token, { autoSubscribe: true });
    room = r;
    const on = (p: RemoteParticipant) => sync(p);
    r.on('participantJoined', on);
    r.on('participantLeft', (p) => {
      grid.removeParticipant(p);
      sync(p);
    });
    r.on('trackPublished', (_t, p) => on(p));
    r.on('trackUnpublished', (_t, p) => on(p));
    r.on('trackSubscribed', (track, _t, p) => {
      if (track.kind === 'audio') {
        grid.addAudio(track);
        applySound();
      }
      on(p);
    });
    r.on('trackUnsubscribed', (track, _t, p) => {
      if (track.kind === 'audio') grid.removeAudio(track);
      on(p);
    });
    r.on('trackMuted', (_t, p) => grid.refresh(p));
    r.on('trackUnmuted', (_t, p) => grid.refresh(p));
    r.on('activeSpeakersChanged', (s) => grid.setSpeakers(s));
    r.on('connectionStateChanged', (s) => {
      $('conn-state').textContent = s;
      $('conn-state').dataset.state = s;
      $('reconnect-banner').hidden = s !== 'reconnecting';
    });
    r.on('disconnected', (reason) => {
      grid.clear();
      room = undefined;
      $('viewer-join').hidden = false;
      $('viewer-stage').hidden = true;
      if (reason !== 'client left') errorEl.textContent = `Disconnected: ${reason}`;
    });
    $('conn-state').textContent = r.state;
    $('conn-state').dataset.state = r.state;
    $('room-title').textContent = r.name;
    $('viewer-join').hidden = true;
    $('viewer-stage').hidden = false;
    for (const p of r.remoteParticipants.values()) sync(p);
    $('waiting').hidden = [...r.remoteParticipants.values()].some(publishing);
    grid.startStats();
  } catch (err) {
    errorEl.textContent = err instanceof Error ? err.message : String(err);
  } finally {
    watchBtn.disabled = false;
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  void watch();
});
soundBtn.addEventListener('click', () => {
  soundOn = !soundOn;
  applySound();
  whepVideo.muted = !soundOn;
  if (soundOn) whepVideo.play().catch(() => undefined);
});
$('btn-stop').addEventListener('click', () => {
  void room?.leave();
  void stopWHEP();
  stopHLS();
});
for (const r of form.querySelectorAll<HTMLInputElement>('input[name="mode"]')) r.addEventListener('change', showMode);

function init(): void {
  roomInput.value = params.get('room') ?? 'demo';
  tokenInput.value = params.get('token') ?? '';
  urlInput.value = params.get('url') ?? defaultServerURL();
  if (params.get('token')) $<HTMLDetailsElement>('token-details').open = true;
  participantInput.value = params.get('participant') ?? '';
  hlsInput.value = params.get('hls') ?? '';
  const m = params.get('mode');
  if (m === 'whep' || m === 'hls') form.querySelector<HTMLInputElement>(`input[value="${m}"]`)!.checked = true;
  showMode();
  form.dataset.ready = 'true';
  if (params.get('autojoin') === '1') void watch();
}

window.addEventListener('beforeunload', () => {
  void room?.leave();
  void whep?.stop();
});
init();
