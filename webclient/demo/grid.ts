// The video grid of the demo pages: one tile per participant camera (an
// avatar while there is no video) and one per screen share, with name,
// mute and speaking indicators and a stats overlay.
import {
  LocalParticipant,
  LocalTrackPublication,
  StatsSampler,
  formatBitrate,
  type Participant,
  type RemoteTrackPublication,
  type TrackPublication,
  type TrackStats,
} from '../sdk/src/index.js';
import { el, hue, icons, initials } from './common.js';

/** The video sources that get a tile. */
type TileSource = 'camera' | 'screen_share';

interface Tile {
  root: HTMLElement;
  video: HTMLVideoElement;
  stats: HTMLElement;
  name: HTMLElement;
  avatar: HTMLElement;
  participant: Participant;
  local: boolean;
  pub: TrackPublication | undefined;
  resize?: ResizeObserver;
}

/** VideoGrid renders participants' video tiles into a container. */
export class VideoGrid {
  private tiles = new Map<string, Tile>();
  private audios = new Map<MediaStreamTrack, HTMLAudioElement>();
  private sampler = new StatsSampler();
  private timer: ReturnType<typeof setInterval> | undefined;

  /** Creates a grid drawing into grid, playing audio through elements in audioSink. */
  constructor(
    private readonly grid: HTMLElement,
    private readonly audioSink: HTMLElement,
  ) {}

  private key(p: Participant, source: TileSource): string {
    return `${p.identity}\u0000${source}`;
  }

  /** Makes sure a participant has its camera tile (showing an avatar until video arrives). */
  addParticipant(p: Participant, local: boolean): void {
    this.ensure(p, 'camera', local);
    this.refresh(p);
  }

  private ensure(p: Participant, source: TileSource, local: boolean): Tile {
    const k = this.key(p, source);
    let t = this.tiles.get(k);
    if (t) {
      t.participant = p;
      return t;
    }
    const video = el('video', { playsinline: '', autoplay: '', 'data-testid': 'tile-video' });
    video.muted = true;
    const avatar = el('div', { class: 'avatar', 'data-testid': 'tile-avatar' });
    const stats = el('div', { class: 'stats', 'data-testid': 'tile-stats' });
    const name = el('span', { class: 'name', 'data-testid': 'tile-name' });
    const micIcon = el('span', { class: 'muted-icon', 'data-testid': 'tile-muted', title: 'Microphone muted' });
    micIcon.innerHTML = icons.micOff;
    const plate = el('div', { class: 'nameplate' }, micIcon, name);
    const root = el(
      'div',
      {
        class: 'tile',
        'data-testid': 'tile',
        'data-identity': p.identity,
        'data-source': source,
        'data-local': String(local),
      },
      video,
      avatar,
      stats,
      plate,
    );
    if (local && source === 'camera') video.classList.add('mirror');
    root.style.setProperty('--hue', String(hue(p.identity)));
    t = { root, video, stats, name, avatar, participant: p, local, pub: undefined };
    this.tiles.set(k, t);
    this.grid.append(root);
    this.layout();
    return t;
  }

  /** Removes every tile of a participant. */
  removeParticipant(p: Participant): void {
    for (const source of ['camera', 'screen_share'] as const) this.removeTile(this.key(p, source));
  }

  private removeTile(k: string): void {
    const t = this.tiles.get(k);
    if (!t) return;
    t.resize?.disconnect();
    t.video.srcObject = null;
    t.root.remove();
    this.tiles.delete(k);
    this.layout();
  }

  /**
   * Re-derives a participant's tiles from its publications: video shown
   * or avatar, screen share tile present or not, mute and speaking marks.
   */
  refresh(p: Participant): void {
    const cam = this.tiles.get(this.key(p, 'camera'));
    if (!cam) return;
    const local = cam.local;
    const pubOf = (source: TileSource | 'microphone') =>
      p instanceof LocalParticipant ? p.findBySource(source) : p.getTrackPublication(source);
    this.show(cam, pubOf('camera'));
    const mic = pubOf('microphone');
    const screen = pubOf('screen_share');
    const screenKey = this.key(p, 'screen_share');
    if (screen && screen.track) this.show(this.ensure(p, 'screen_share', local), screen);
    else this.removeTile(screenKey);
    for (const t of [cam, this.tiles.get(screenKey)]) {
      if (!t) continue;
      const label = p.name || p.identity;
      t.name.textContent = t === cam ? (local ? `${label} (you)` : label) : `${label} · screen`;
      t.root.dataset.name = label;
      t.root.dataset.audioMuted = String(!mic || mic.muted);
      t.root.dataset.speaking = String(p.isSpeaking);
      t.avatar.textContent = initials(label);
    }
  }

  private show(t: Tile, pub: TrackPublication | undefined): void {
    const track = pub && !pub.muted ? pub.track : undefined;
    t.pub = pub;
    t.root.dataset.videoMuted = String(!pub || pub.muted);
    t.root.dataset.video = track ? 'on' : 'off';
    const current = (t.video.srcObject as MediaStream | null)?.getVideoTracks()[0];
    if (track && current !== track) {
      t.video.srcObject = new MediaStream([track]);
      t.video.play().catch(() => undefined);
    } else if (!track && current) {
      t.video.srcObject = null;
    }
    if (!t.local && !t.resize) {
      t.resize = new ResizeObserver(([e]) => {
        const r = devicePixelRatio || 1;
        const remote = t.pub as RemoteTrackPublication | undefined;
        if (remote && 'setVideoDimensions' in remote) remote.setVideoDimensions(e.contentRect.width * r, e.contentRect.height * r);
      });
      t.resize.observe(t.root);
    }
  }

  /** Plays a remote audio track. */
  addAudio(track: MediaStreamTrack): void {
    if (this.audios.has(track)) return;
    const a = el('audio', { autoplay: '', 'data-testid': 'remote-audio' });
    a.srcObject = new MediaStream([track]);
    this.audioSink.append(a);
    a.play().catch(() => undefined);
    this.audios.set(track, a);
  }

  /** Stops playing a remote audio track. */
  removeAudio(track: MediaStreamTrack): void {
    const a = this.audios.get(track);
    if (!a) return;
    a.srcObject = null;
    a.remove();
    this.audios.delete(track);
  }

  /** Marks the speaking participants. */
  setSpeakers(speakers: readonly Participant[]): void {
    const ids = new Set(speakers.map((s) => s.identity));
    for (const t of this.tiles.values()) t.root.dataset.speaking = String(ids.has(t.participant.identity));
  }

  /** Sizes the grid: about square, screen shares first. */
  layout(): void {
    const n = Math.max(1, this.tiles.size);
    const cols = Math.ceil(Math.sqrt(n));
    const rows = Math.ceil(n / cols);
    this.grid.style.setProperty('--cols', String(cols));
    this.grid.style.setProperty('--rows', String(rows));
    this.grid.dataset.count = String(this.tiles.size);
    this.grid.dataset.dense = String(this.tiles.size >= 3);
    // Screen shares first; an incomplete last row is centred (each tile
    // spans two half-columns, so the row's first tile can start mid-way).
    const ordered = [...this.tiles.values()]
      .map((t) => t.root)
      .sort((a, b) => Number(a.dataset.source !== 'screen_share') - Number(b.dataset.source !== 'screen_share'));
    const rest = ordered.length % cols;
    ordered.forEach((root, i) => {
      root.style.order = String(i);
      root.style.gridColumn = rest && i === ordered.length - rest ? `${cols - rest + 1} / span 2` : 'span 2';
    });
  }

  /** Starts updating the stats overlays every second. */
  startStats(): void {
    this.timer ??= setInterval(() => void this.sampleAll(), 1000);
  }

  private async sampleAll(): Promise<void> {
    for (const t of this.tiles.values()) {
      const pub = t.pub;
      let s: TrackStats | undefined;
      try {
        if (pub instanceof LocalTrackPublication) s = await this.sampler.local(pub);
        else if (pub && 'receiver' in pub) s = await this.sampler.remote(pub as RemoteTrackPublication);
      } catch {
        s = undefined;
      }
      t.stats.textContent = s && s.width ? describe(s, pub instanceof LocalTrackPublication) : '';
      t.root.dataset.layer = s?.layer ?? '';
    }
  }

  /** Removes every tile and stops the stats. */
  clear(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const k of [...this.tiles.keys()]) this.removeTile(k);
    for (const tr of [...this.audios.keys()]) this.removeAudio(tr);
  }
}

function describe(s: TrackStats, local: boolean): string {
  const parts = [`${s.width}×${s.height}`, `${Math.round(s.fps)} fps`, formatBitrate(s.bitrate)];
  if (s.layer) parts.push(local ? `sending ${s.layer}` : `layer ${s.layer}`);
  if (s.codec) parts.push(s.codec);
  return parts.join(' · ');
}
