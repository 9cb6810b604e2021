// The broadcast viewer: joins a room without publishing and shows the
// participants that publish. Later the same page plays WHEP or HLS.
import { Room, connect, type Participant, type RemoteParticipant } from '../sdk/src/index.js';
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
let room: Room | undefined;
let soundOn = false;

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
  if (!roomName) return;
  watchBtn.disabled = true;
  errorEl.textContent = '';
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
});
$('btn-stop').addEventListener('click', () => void room?.leave());

function init(): void {
  roomInput.value = params.get('room') ?? 'demo';
  tokenInput.value = params.get('token') ?? '';
  urlInput.value = params.get('url') ?? defaultServerURL();
  if (params.get('token')) $<HTMLDetailsElement>('token-details').open = true;
  form.dataset.ready = 'true';
  if (params.get('autojoin') === '1') void watch();
}

window.addEventListener('beforeunload', () => void room?.leave());
init();
