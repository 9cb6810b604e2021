import { SubscribedCodec, SubscribedQuality, SubscribedQualityUpdate, VideoQuality } from '@livekit/protocol';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  layersToProto,
  maxBitrateFor,
  planSimulcast,
  planSingle,
  ridQuality,
  setLayersActive,
  sortCodecs,
  supportsCodec,
  wantedQualities,
} from '../src/encodings.js';

describe('simulcast planning', () => {
  it('plans q/h/f at 1/4, 1/2 and full size, lowest first', () => {
    const layers = planSimulcast(1280, 720);
    assert.deepEqual(
      layers.map((l) => [l.encoding.rid, l.encoding.scaleResolutionDownBy, l.width, l.height, l.encoding.maxBitrate]),
      [
        ['q', 4, 320, 180, 160_000],
        ['h', 2, 640, 360, 500_000],
        ['f', 1, 1280, 720, 1_700_000],
      ],
    );
    const proto = layersToProto(layers);
    assert.deepEqual(
      proto.map((l) => [l.quality, l.rid, l.width, l.height, l.bitrate]),
      [
        [0, 'q', 320, 180, 160_000],
        [1, 'h', 640, 360, 500_000],
        [2, 'f', 1280, 720, 1_700_000],
      ],
    );
  });

  it('drops layers too small to be useful', () => {
    assert.deepEqual(planSimulcast(640, 360).map((l) => l.encoding.rid), ['h', 'f']);
    assert.deepEqual(planSimulcast(160, 120).map((l) => l.encoding.rid), ['f']);
  });

  it('gives screen shares a larger budget', () => {
    assert.equal(planSingle(1920, 1080, true).encoding.maxBitrate, 3_000_000);
    assert.equal(planSingle(1280, 720, true).encoding.maxBitrate, 2_500_000);
    assert.equal(planSingle(1280, 720, false).encoding.maxBitrate, 1_700_000);
    assert.equal(planSingle(1280, 720, false).encoding.rid, undefined);
  });

  it('budgets by the short side, so portrait video gets the same as landscape', () => {
    assert.equal(maxBitrateFor(720, 1280), maxBitrateFor(1280, 720));
  });
});

describe('codec preferences', () => {
  const caps = [
    { mimeType: 'video/VP8', clockRate: 90000 },
    { mimeType: 'video/rtx', clockRate: 90000, sdpFmtpLine: 'apt=96' },
    { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f' },
    { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f' },
    { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' },
    { mimeType: 'video/VP9', clockRate: 90000, sdpFmtpLine: 'profile-id=0' },
    { mimeType: 'video/AV1', clockRate: 90000 },
  ];
  const order = (c: typeof caps) => c.map((x) => `${x.mimeType}${x.sdpFmtpLine?.match(/packetization-mode=\d;profile-level-id=\w+/)?.[0] ?? ''}`);

  it('puts the preferred codec first and keeps the rest in order', () => {
    assert.deepEqual(order(sortCodecs(caps, 'vp9')).slice(0, 2), ['video/VP9', 'video/VP8']);
    assert.equal(sortCodecs(caps, 'av1')[0].mimeType, 'video/AV1');
    assert.equal(sortCodecs(caps, 'vp8').length, caps.length);
  });

  it('prefers constrained baseline H.264 with packetization-mode=1', () => {
    assert.deepEqual(order(sortCodecs(caps, 'h264')).slice(0, 3), [
      'video/H264packetization-mode=1;profile-level-id=42e01f',
      'video/H264packetization-mode=1;profile-level-id=640c1f',
      'video/H264packetization-mode=0;profile-level-id=42e01f',
    ]);
  });

  it('tells whether a codec is available', () => {
    assert.equal(supportsCodec(caps, 'av1'), true);
    assert.equal(supportsCodec(caps.slice(0, 2), 'vp9'), false);
  });
});

describe('dynacast layers', () => {
  const qs = (...on: (boolean | undefined)[]) =>
    on.flatMap((enabled, q) => (enabled === undefined ? [] : [new SubscribedQuality({ quality: q as VideoQuality, enabled })]));
  const flags = (m: Map<VideoQuality, boolean>) => [...m].map(([q, on]) => `${VideoQuality[q]}${on ? '+' : '-'}`).join(' ');
  const encs = () => [{ rid: 'q', active: true }, { rid: 'h', active: true }, { rid: 'f', active: true }] as RTCRtpEncodingParameters[];

  it('maps rids q/h/f to LOW/MEDIUM/HIGH', () => {
    assert.deepEqual(['q', 'h', 'f', 'x', undefined].map(ridQuality), [VideoQuality.LOW, VideoQuality.MEDIUM, VideoQuality.HIGH, undefined, undefined]);
  });

  it('reads subscribedQualities, or the codec list of subscribedCodecs', () => {
    const base = { trackSid: 'TR_1', subscribedQualities: qs(true, false, false) };
    assert.equal(flags(wantedQualities(new SubscribedQualityUpdate(base), 'vp8')), 'LOW+ MEDIUM- HIGH-');
    const codecs = [
      new SubscribedCodec({ codec: 'vp8', qualities: qs(true, true, false) }),
      new SubscribedCodec({ codec: 'av1', qualities: qs(false, false, true) }),
    ];
    assert.equal(flags(wantedQualities(new SubscribedQualityUpdate({ ...base, subscribedCodecs: codecs }), 'video/VP8')), 'LOW+ MEDIUM+ HIGH-');
    assert.equal(flags(wantedQualities(new SubscribedQualityUpdate({ ...base, subscribedCodecs: codecs }), 'av1')), 'LOW- MEDIUM- HIGH+');
    // Several codecs, none ours: subscribedQualities.
    assert.equal(flags(wantedQualities(new SubscribedQualityUpdate({ ...base, subscribedCodecs: codecs }), 'h264')), 'LOW+ MEDIUM- HIGH-');
    // A single codec listed is the track's, whatever its name.
    const one = [new SubscribedCodec({ codec: 'VP8', qualities: qs(false, true, true) })];
    assert.equal(flags(wantedQualities(new SubscribedQualityUpdate({ trackSid: 'TR_1', subscribedCodecs: one }), 'h264')), 'LOW- MEDIUM+ HIGH+');
    assert.equal(wantedQualities(new SubscribedQualityUpdate({ trackSid: 'TR_1' }), 'vp8').size, 0);
  });

  it('sets active per encoding and reports whether anything changed', () => {
    const e = encs();
    assert.equal(setLayersActive(e, new Map([[VideoQuality.LOW, true], [VideoQuality.MEDIUM, false], [VideoQuality.HIGH, false]])), true);
    assert.deepEqual(e.map((x) => x.active), [true, false, false]);
    assert.equal(setLayersActive(e, new Map([[VideoQuality.LOW, true], [VideoQuality.MEDIUM, false]])), false, 'nothing to change');
    assert.equal(setLayersActive(e, new Map([[VideoQuality.HIGH, true]])), true, 'qualities not mentioned stay as they are');
    assert.deepEqual(e.map((x) => x.active), [true, false, true]);
    assert.equal(setLayersActive(e, new Map()), false);
    const noFlag = [{ rid: 'q' }] as RTCRtpEncodingParameters[];
    assert.equal(setLayersActive(noFlag, new Map([[VideoQuality.LOW, true]])), false, 'active defaults to true');
  });

  it('keeps a single encoding active while any quality is wanted', () => {
    const single = [{ active: true }] as RTCRtpEncodingParameters[];
    assert.equal(setLayersActive(single, new Map([[VideoQuality.LOW, false], [VideoQuality.HIGH, true]])), false);
    assert.equal(setLayersActive(single, new Map([[VideoQuality.LOW, false], [VideoQuality.HIGH, false]])), true);
    assert.equal(single[0].active, false);
    assert.equal(setLayersActive(single, new Map([[VideoQuality.HIGH, true]])), true);
    assert.equal(single[0].active, true);
  });
});
