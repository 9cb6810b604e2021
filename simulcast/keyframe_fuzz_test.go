package simulcast

import (
	"bytes"
	"testing"
)

// keyframeSeeds are payload starts the keyframe parsers branch on.
var keyframeSeeds = [][]byte{
	{},
	{0x10, 0x10},                         // VP8: S bit, keyframe
	{0x90, 0x80, 0x80, 0x01, 0x10},       // VP8: X, I with 15-bit picture id, keyframe
	{0x90, 0xf0, 0x05, 0x01, 0x02, 0x10}, // VP8: X, I, L, T/K, keyframe
	{0x90, 0x80},                         // VP8: truncated after the extension byte
	{0x0c, 0x00},                         // VP9: B, E, not inter-predicted
	{0xac, 0x80},                         // VP9: I, L, B, E, truncated picture id
	{0x65, 0x88, 0x84},                   // H264: IDR slice
	{0x78, 0x00, 0x03, 0x67, 0x42, 0xe0, 0x00, 0x02, 0x68, 0xce}, // H264: STAP-A SPS, PPS
	{0x78, 0xff, 0xff, 0x65},                                     // H264: STAP-A with an oversized unit
	{0x7c, 0x85},                                                 // H264: FU-A start of an IDR
	{0x18},                                                       // AV1: N bit
}

// FuzzKeyframe runs every codec's keyframe detection on arbitrary payloads:
// it must not panic nor modify the payload, and a "keyframe" must at least
// look like one in its first byte.
func FuzzKeyframe(f *testing.F) {
	for _, s := range keyframeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		orig := bytes.Clone(payload)
		for c := CodecUnknown; c <= CodecAV1+1; c++ {
			key := IsKeyframe(c, payload)
			if !bytes.Equal(payload, orig) {
				t.Fatalf("IsKeyframe(%d) modified the payload", c)
			}
			if !key {
				if c == CodecOpus {
					t.Fatal("an Opus payload is not a keyframe")
				}
				continue
			}
			if c != CodecOpus && len(payload) == 0 {
				t.Fatalf("codec %d: empty payload is a keyframe", c)
			}
			switch c {
			case CodecUnknown, CodecAV1 + 1:
				t.Fatalf("codec %d has keyframes", c)
			case CodecVP8:
				if payload[0]&0x10 == 0 || payload[0]&0x07 != 0 {
					t.Fatalf("VP8 keyframe %x not at the start of partition 0", payload)
				}
			case CodecVP9:
				if payload[0]&0x40 != 0 || payload[0]&0x08 == 0 {
					t.Fatalf("VP9 keyframe %x inter-predicted or not a frame start", payload)
				}
			case CodecH264:
				if nal := payload[0] & 0x1f; nal != 5 && nal != 7 && nal != 24 && nal != 28 {
					t.Fatalf("H264 keyframe %x with NAL type %d", payload, nal)
				}
			case CodecAV1:
				if payload[0]&0x08 == 0 {
					t.Fatalf("AV1 keyframe %x without the N bit", payload)
				}
			}
		}
	})
}
