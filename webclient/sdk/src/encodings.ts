import { SubscribedQualityUpdate, VideoLayer, VideoQuality as PbQuality } from '@livekit/protocol';

/** The video codecs a publisher can prefer. */
export type VideoCodec = 'vp8' | 'h264' | 'vp9' | 'av1';

/** The video codecs in the order they are offered in the demo. */
export const videoCodecs: readonly VideoCodec[] = ['vp8', 'h264', 'vp9', 'av1'];

/** One simulcast layer: rid, its downscale and quality. */
interface LayerSpec {
  rid: 'q' | 'h' | 'f';
  scale: number;
  quality: PbQuality;
}

const layerSpecs: readonly LayerSpec[] = [
  { rid: 'q', scale: 4, quality: PbQuality.LOW },
  { rid: 'h', scale: 2, quality: PbQuality.MEDIUM },
  { rid: 'f', scale: 1, quality: PbQuality.HIGH },
];

/** The smallest layer height worth sending. */
const minLayerHeight = 120;

/**
 * maxBitrateFor is the bitrate budget of a video layer of this size at
 * about 30 fps, in bits per second.
 */
export function maxBitrateFor(width: number, height: number): number {
  const p = Math.min(width, height) || height;
  if (p >= 1080) return 3_000_000;
  if (p >= 720) return 1_700_000;
  if (p >= 540) return 900_000;
  if (p >= 360) return 500_000;
  if (p >= 240) return 250_000;
  if (p >= 180) return 160_000;
  return 100_000;
}

/** A simulcast encoding with the rid and size it stands for. */
export interface PlannedLayer {
  encoding: RTCRtpEncodingParameters;
  quality: PbQuality;
  width: number;
  height: number;
}

/**
 * planSimulcast returns the layers q/h/f (scaled down by 4, 2 and 1) for a
 * capture of width x height, lowest first, dropping layers too small to
 * be useful.
 */
export function planSimulcast(width: number, height: number): PlannedLayer[] {
  const out: PlannedLayer[] = [];
  for (const l of layerSpecs) {
    const w = Math.round(width / l.scale);
    const h = Math.round(height / l.scale);
    if (l.scale > 1 && Math.min(w, h) < minLayerHeight) continue;
    out.push({
      encoding: { rid: l.rid, scaleResolutionDownBy: l.scale, maxBitrate: maxBitrateFor(w, h), active: true },
      quality: l.quality,
      width: w,
      height: h,
    });
  }
  return out;
}

/** planSingle returns the one encoding of a non-simulcast track (screen shares use a higher budget). */
export function planSingle(width: number, height: number, screen: boolean): PlannedLayer {
  const maxBitrate = screen ? Math.max(2_500_000, maxBitrateFor(width, height)) : maxBitrateFor(width, height);
  return { encoding: { maxBitrate, active: true }, quality: PbQuality.HIGH, width, height };
}

/** layersToProto describes planned layers for AddTrackRequest.layers. */
export function layersToProto(layers: PlannedLayer[]): VideoLayer[] {
  return layers.map(
    (l) =>
      new VideoLayer({
        quality: l.quality,
        width: l.width,
        height: l.height,
        bitrate: l.encoding.maxBitrate ?? 0,
        rid: l.encoding.rid ?? '',
      }),
  );
}

/** The codec entries setCodecPreferences takes. */
export interface CodecCapability {
  mimeType: string;
  clockRate: number;
  channels?: number;
  sdpFmtpLine?: string;
}

/**
 * sortCodecs puts the preferred codec first (for H.264 the constrained
 * baseline, packetization-mode=1 profiles before others), keeping every
 * other codec in its order so the answer can fall back to it.
 */
export function sortCodecs<C extends CodecCapability>(codecs: C[], preferred: VideoCodec): C[] {
  const mime = `video/${preferred}`.toLowerCase();
  const rank = (c: C): number => {
    if (c.mimeType.toLowerCase() !== mime) return 3;
    if (preferred !== 'h264') return 0;
    const fmtp = (c.sdpFmtpLine ?? '').toLowerCase();
    const mode1 = fmtp.includes('packetization-mode=1');
    const baseline = /profile-level-id=42(e0|00)1f/.test(fmtp);
    return mode1 && baseline ? 0 : mode1 ? 1 : 2;
  };
  return codecs
    .map((c, i) => ({ c, i, r: rank(c) }))
    .sort((a, b) => a.r - b.r || a.i - b.i)
    .map((x) => x.c);
}

/** supportsCodec reports whether a capability list has the codec. */
export function supportsCodec(codecs: CodecCapability[], codec: VideoCodec): boolean {
  const mime = `video/${codec}`;
  return codecs.some((c) => c.mimeType.toLowerCase() === mime);
}

/** ridQuality is the quality a simulcast rid stands for (q, h, f), undefined for others. */
export function ridQuality(rid: string | undefined): PbQuality | undefined {
  return layerSpecs.find((l) => l.rid === rid)?.quality;
}

/** codecName normalizes "video/VP8" or "VP8" to "vp8". */
function codecName(c: string): string {
  return c.toLowerCase().replace(/^video\//, '');
}

/**
 * wantedQualities reads a SubscribedQualityUpdate: which qualities of the
 * track the server wants encoded. The list for the track's codec in
 * subscribedCodecs wins (also when it is the only codec listed); otherwise
 * subscribedQualities. Empty when the update says nothing usable.
 */
export function wantedQualities(update: SubscribedQualityUpdate, codec: string): Map<PbQuality, boolean> {
  const name = codecName(codec);
  const codecs = update.subscribedCodecs;
  const entry = codecs.find((c) => codecName(c.codec) === name) ?? (codecs.length === 1 ? codecs[0] : undefined);
  const list = entry && entry.qualities.length > 0 ? entry.qualities : update.subscribedQualities;
  const out = new Map<PbQuality, boolean>();
  for (const q of list) out.set(q.quality, q.enabled);
  return out;
}

/**
 * setLayersActive turns the simulcast encodings on or off as wanted
 * (rid q/h/f = LOW/MEDIUM/HIGH; a quality the update does not mention is
 * left alone). A single encoding without a rid stays active while any
 * quality is wanted. Returns whether an encoding changed.
 */
export function setLayersActive(encodings: RTCRtpEncodingParameters[], wanted: Map<PbQuality, boolean>): boolean {
  if (wanted.size === 0) return false;
  const anyWanted = [...wanted.values()].some((v) => v);
  let changed = false;
  for (const e of encodings) {
    const q = ridQuality(e.rid);
    let active: boolean | undefined;
    if (q !== undefined) active = wanted.get(q);
    else if (!e.rid && encodings.length === 1) active = anyWanted;
    if (active === undefined || (e.active ?? true) === active) continue;
    e.active = active;
    changed = true;
  }
  return changed;
}
