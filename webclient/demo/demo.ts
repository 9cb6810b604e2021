// The demo room page: join form, video grid, controls, participant list.
import { Room, connect, videoCodecs, type Participant, type VideoCodec } from '../sdk/src/index.js';
import { $, credentials, defaultServerURL, icons, identityFor, params } from './common.js';
import { VideoGrid } from './grid.js';
import { ParticipantList } from './people.js';

const form = $<HTMLFormElement>('join-form');
const roomInput = $<HTMLInputElement>('room');
const nameInput = $<HTMLInputElement>('name');
const tokenInput = $<HTMLTextAreaElement>('token');
const urlInput = $<HTMLInputElement>('url');
const codecSelect = $<HTMLSelectElement>('codec');
const simulcastBox = $<HTMLInputElement>('simulcast');
const camBox = $<HTMLInputElement>('start-camera');
const micBox = $<HTMLInputElement>('start-mic');
const joinBtn = $<HTMLButtonElement>('join-btn');
const joinError = $('join-error');
const btnMic = $<HTMLButtonElement>('btn-mic');
const btnCam = $<HTMLButtonElement>('btn-camera');
const btnScreen = $<HTMLButtonElement>('btn-screen');
const btnPeople = $<HTMLButtonElement>('btn-people');
const btnLeave = $<HTMLButtonElement>('btn-leave');
const grid = new VideoGrid($('grid'), $('audio-sink'));
const people = new ParticipantList($('participants'), $('people-count'));

let room: Room | undefined;

function setView(inRoom: boolean): void {
  $('join-view').hidden = inRoom;
  $('room-view').hidden = !inRoom;
  document.body.dataset.view = inRoom ? 'room' : 'join';
}

function setConnState(state: string): void {
  const pill = $('conn-state');
  pill.textContent = state;
  pill.dataset.state = state;
  $('reconnect-banner').hidden = state !== 'reconnecting';
}

async function join(): Promise<void> {
  const roomName = roomInput.value.trim();
  const name = nameInput.value.trim();
  if (!roomName || !name) return;
  joinBtn.disabled = true;
  joinError.textContent = '';
  try {
    const cred = await credentials(roomName, identityFor(name), name, false, tokenInput, urlInput);
    const codec = codecSelect.value as VideoCodec;
    const r = await connect(cred.url, cred.token, { videoCodec: codec });
    room = r;
    (window as unknown as { fanoutRoom?: Room }).fanoutRoom = r; // for browser tests and the console
    wire(r);
    setView(true);
    $('room-title').textContent = r.name;
    history.replaceState(null, '', `?room=${encodeURIComponent(r.name)}`);
    grid.addParticipant(r.localParticipant, true);
    people.upsert(r.localParticipant);
    for (const p of r.remoteParticipants.values()) addRemote(p);
    grid.startStats();
    const simulcast = simulcastBox.checked;
    await Promise.all([
      camBox.checked ? r.localParticipant.setCameraEnabled(true, { simulcast }).catch(mediaError('camera')) : undefined,
      micBox.checked ? r.localParticipant.setMicrophoneEnabled(true).catch(mediaError('microphone')) : undefined,
    ]);
    refreshLocal();
  } catch (err) {
    joinError.textContent = err instanceof Error ? err.message : String(err);
    setView(false);
  } finally {
    joinBtn.disabled = false;
  }
}

function mediaError(what: string) {
  return (err: unknown) => {
    console.warn(`cannot publish ${what}`, err);
    toast(`Cannot use the ${what}: ${err instanceof Error ? err.message : String(err)}`);
  };
}

function toast(text: string): void {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => (t.hidden = true), 5000);
}

function addRemote(p: Participant): void {
  grid.addParticipant(p, false);
  people.upsert(p);
}

function refresh(p: Participant): void {
  grid.refresh(p);
  people.upsert(p);
}

function wire(r: Room): void {
  r.on('participantJoined', addRemote);
  r.on('participantLeft', (p) => {
    grid.removeParticipant(p);
    people.remove(p);
  });
  r.on('trackPublished', (_pub, p) => refresh(p));
  r.on('trackUnpublished', (_pub, p) => refresh(p));
  r.on('trackSubscribed', (track, _pub, p) => {
    if (track.kind === 'audio') grid.addAudio(track);
    refresh(p);
  });
  r.on('trackUnsubscribed', (track, _pub, p) => {
    if (track.kind === 'audio') grid.removeAudio(track);
    refresh(p);
  });
  r.on('trackMuted', (_pub, p) => refresh(p));
  r.on('trackUnmuted', (_pub, p) => refresh(p));
  r.on('localTrackPublished', () => refreshLocal());
  r.on('localTrackUnpublished', () => refreshLocal());
  r.on('participantMetadataChanged', (_prev, p) => refresh(p));
  r.on('activeSpeakersChanged', (speakers) => {
    grid.setSpeakers(speakers);
    people.setSpeakers(speakers);
  });
  r.on('connectionStateChanged', setConnState);
  r.on('reconnected', () => {
    for (const p of r.remoteParticipants.values()) refresh(p);
    refreshLocal();
  });
  r.on('disconnected', (reason) => {
    grid.clear();
    people.clear();
    room = undefined;
    setView(false);
    if (reason !== 'client left') joinError.textContent = `Disconnected: ${reason}`;
  });
  setConnState(r.state);
}

function refreshLocal(): void {
  if (!room) return;
  const lp = room.localParticipant;
  refresh(lp);
  const cam = lp.findBySource('camera');
  const mic = lp.findBySource('microphone');
  const screen = lp.findBySource('screen_share');
  setToggle(btnMic, !!mic && !mic.muted, icons.mic, icons.micOff, 'Mute', 'Unmute');
  setToggle(btnCam, !!cam && !cam.muted, icons.cam, icons.camOff, 'Stop video', 'Start video');
  setToggle(btnScreen, !!screen, icons.screen, icons.screen, 'Stop sharing', 'Share screen');
}

function setToggle(b: HTMLButtonElement, on: boolean, iconOn: string, iconOff: string, labelOn: string, labelOff: string): void {
  b.setAttribute('aria-pressed', String(on));
  b.dataset.on = String(on);
  b.innerHTML = `${on ? iconOn : iconOff}<span>${on ? labelOn : labelOff}</span>`;
}

function control(b: HTMLButtonElement, action: (r: Room) => Promise<void>): void {
  b.addEventListener('click', async () => {
    if (!room) return;
    b.disabled = true;
    try {
      await action(room);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err));
    } finally {
      b.disabled = false;
      refreshLocal();
    }
  });
}

control(btnMic, async (r) => {
  const mic = r.localParticipant.findBySource('microphone');
  await r.localParticipant.setMicrophoneEnabled(!mic || mic.muted);
});
control(btnCam, async (r) => {
  const cam = r.localParticipant.findBySource('camera');
  await r.localParticipant.setCameraEnabled(!cam || cam.muted, { simulcast: simulcastBox.checked });
});
control(btnScreen, async (r) => {
  await r.localParticipant.setScreenShareEnabled(!r.localParticipant.findBySource('screen_share'));
});
control(btnLeave, async (r) => r.leave());
btnPeople.addEventListener('click', () => {
  const open = document.body.dataset.people !== 'open';
  document.body.dataset.people = open ? 'open' : 'closed';
  btnPeople.setAttribute('aria-pressed', String(open));
});
btnPeople.innerHTML = `${icons.people}<span>People</span>`;
btnLeave.innerHTML = `${icons.leave}<span>Leave</span>`;

form.addEventListener('submit', (e) => {
  e.preventDefault();
  void join();
});

function init(): void {
  for (const c of videoCodecs) codecSelect.append(new Option(c === 'h264' ? 'H.264' : c.toUpperCase(), c));
  roomInput.value = params.get('room') ?? 'demo';
  nameInput.value = params.get('name') ?? localStorage.getItem('fanout.name') ?? '';
  codecSelect.value = params.get('codec') ?? 'vp8';
  if (params.get('simulcast') === '0') simulcastBox.checked = false;
  if (params.get('camera') === '0') camBox.checked = false;
  if (params.get('mic') === '0') micBox.checked = false;
  if (params.get('token')) tokenInput.value = params.get('token') ?? '';
  urlInput.value = params.get('url') ?? defaultServerURL();
  nameInput.addEventListener('change', () => localStorage.setItem('fanout.name', nameInput.value.trim()));
  setView(false);
  setConnState('disconnected');
  if (params.get('token')) $<HTMLDetailsElement>('token-details').open = true;
  form.dataset.ready = 'true';
  if (params.get('autojoin') === '1' && nameInput.value) void join();
}

window.addEventListener('beforeunload', () => void room?.leave());
init();
