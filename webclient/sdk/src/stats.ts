import type { LocalTrackPublication } from './local.js';
import type { RemoteTrackPublication } from './tracks.js';

/** What a video tile shows about its track. */
export interface TrackStats {
  /** Frame size received (remote) or of the largest layer sent (local). */
  width: number;
  /** Frame size received (remote) or of the largest layer sent (local). */
  height: number;
  /** Frames per second. */
  fps: number;
  /** Bits per second since the previous sample (all layers for local tracks). */
  bitrate: number;
  /** Codec, e.g. VP8. */
  codec: string;
  /** Remote: the simulcast layer received, e.g. "f (high)"; local: the layers sent, e.g. "q h f". */
  layer: string;
}

interface Sample {
  bytes: number;
  at: number;
}

/** StatsSampler computes per-track figures from getStats, remembering the previous sample for bitrates. */
export class StatsSampler {
  private last = new WeakMap<object, Sample>();

  /** Samples a remote track; undefined when nothing is received. */
  async remote(pub: RemoteTrackPublication): Promise<TrackStats | undefined> {
    const receiver = pub.receiver;
    if (!receiver) return undefined;
    const report = await receiver.getStats();
    let inbound: Record<string, unknown> | undefined;
    report.forEach((s: Record<string, unknown>) => {
      if (s.type === 'inbound-rtp') inbound = s;
    });
    if (!inbound) return undefined;
    const width = num(inbound.frameWidth);
    const height = num(inbound.frameHeight);
    const layer = pub.kind === 'video' && width > 0 && pub.layers.length > 1 ? pub.layerForWidth(width) : undefined;
    return {
      width,
      height,
      fps: num(inbound.framesPerSecond),
      bitrate: this.rate(pub, num(inbound.bytesReceived), num(inbound.timestamp)),
      codec: codecName(report, inbound.codecId),
      layer: layer ? `${layer.rid || '-'} (${layer.quality})` : '',
    };
  }

  /** Samples a local track; undefined before it is sent. */
  async local(pub: LocalTrackPublication): Promise<TrackStats | undefined> {
    const sender = pub.sender;
    if (!sender) return undefined;
    const report = await sender.getStats();
    const out: Record<string, unknown>[] = [];
    report.forEach((s: Record<string, unknown>) => {
      if (s.type === 'outbound-rtp') out.push(s);
    });
    if (out.length === 0) return undefined;
    let bytes = 0;
    let at = 0;
    let top: Record<string, unknown> | undefined;
    const rids: string[] = [];
    for (const s of out) {
      bytes += num(s.bytesSent);
      at = Math.max(at, num(s.timestamp));
      if (num(s.frameWidth) > 0 && num(s.framesPerSecond) > 0) { // layers paused for CPU or bandwidth have no fps
        if (typeof s.rid === 'string') rids.push(s.rid);
        if (!top || num(s.frameWidth) > num(top.frameWidth)) top = s;
      }
    }
    const order = ['q', 'h', 'f'];
    rids.sort((a, b) => order.indexOf(a) - order.indexOf(b));
    return {
      width: num(top?.frameWidth),
      height: num(top?.frameHeight),
      fps: num(top?.framesPerSecond),
      bitrate: this.rate(pub, bytes, at),
      codec: codecName(report, (top ?? out[0]).codecId),
      layer: rids.join(' '),
    };
  }

  private rate(key: object, bytes: number, at: number): number {
    const prev = this.last.get(key);
    this.last.set(key, { bytes, at });
    if (!prev || at <= prev.at || bytes < prev.bytes) return 0;
    return ((bytes - prev.bytes) * 8 * 1000) / (at - prev.at);
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function codecName(report: RTCStatsReport, id: unknown): string {
  if (typeof id !== 'string') return '';
  const c = report.get(id) as { mimeType?: string } | undefined;
  return c?.mimeType?.split('/')[1] ?? '';
}

/** formatBitrate writes a bitrate as "850 kbps" or "1.7 Mbps". */
export function formatBitrate(bps: number): string {
  if (bps >= 1_000_000) return `${(bps / 1_000_000).toFixed(1)} Mbps`;
  return `${Math.round(bps / 1000)} kbps`;
}
