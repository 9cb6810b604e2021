package sfu

import (
	"encoding/binary"
	"testing"

	"github.com/fanout-sfu/fanout/simulcast"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// fuzzCodecs are the codecs FuzzUpTrackForward selects with its first byte.
var fuzzCodecs = []webrtc.RTPCodecParameters{fixtureVP8, fixtureH264, fixtureVP9, fixtureAV1, fixtureOpus}

// Option bits of FuzzUpTrackForward's first byte, above the codec selector.
const (
	fuzzOptPause = 1 << 3 // pause the second DownTrack after the first packet, resume after the next
	fuzzOptLevel = 1 << 4 // the second DownTrack negotiated the audio level extension
)

// fuzzSeed is a named seed input of a fuzz target.
type fuzzSeed struct {
	name string
	data []byte
}

// fuzzFrames encodes a FuzzUpTrackForward input: the option byte, then each
// packet prefixed by its length (2 bytes, big-endian).
func fuzzFrames(opts byte, pkts ...[]byte) []byte {
	out := []byte{opts}
	for _, p := range pkts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}

// splitFuzzFrames undoes fuzzFrames; a truncated last packet is kept as is.
func splitFuzzFrames(data []byte) [][]byte {
	var pkts [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return append(pkts, data)
		}
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n > len(data) {
			n = len(data)
		}
		pkts = append(pkts, data[:n])
		data = data[n:]
	}
	return pkts
}

// fuzzForwardSeeds are meaningful inputs of FuzzUpTrackForward: streams as
// publishers send them, and damaged ones.
func fuzzForwardSeeds() []fuzzSeed {
	pkt := func(mime string, seq uint16, ts uint32, key bool, level int) []byte {
		return pubPacket{seq: seq, ts: ts, marker: true, payload: mediaPayload(mime, key, 60, byte(seq)), level: level}.marshal(96)
	}
	vp8, h264, opus := webrtc.MimeTypeVP8, webrtc.MimeTypeH264, webrtc.MimeTypeOpus
	stapA := pubPacket{seq: 11, ts: 900, payload: []byte{0x78, 0, 3, 0x67, 0x42, 0xe0, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84}, level: -1}.marshal(102)
	fuA := pubPacket{seq: 12, ts: 900, payload: []byte{0x7c, 0x85, 0x88, 0x84, 0x21}, level: -1}.marshal(102)
	return []fuzzSeed{
		{"vp8-stream", fuzzFrames(0,
			pkt(vp8, 100, 3000, true, -1), pkt(vp8, 101, 6000, false, -1),
			pubPacket{seq: 102, ts: 6000, padding: 40, level: -1}.marshal(96),
			pkt(vp8, 103, 9000, false, -1), pkt(vp8, 105, 15000, false, -1), pkt(vp8, 104, 12000, false, -1))},
		{"vp8-paused-wrap", fuzzFrames(fuzzOptPause,
			pkt(vp8, 65534, 1, true, -1), pkt(vp8, 65535, 3001, false, -1),
			pkt(vp8, 0, 6001, false, -1), pkt(vp8, 1, 9001, true, -1), pkt(vp8, 2, 12001, false, -1))},
		{"h264-stap-a-fu-a", fuzzFrames(1,
			pkt(h264, 10, 0, false, -1), stapA, fuA, pkt(h264, 13, 3900, false, -1))},
		{"vp9", fuzzFrames(2,
			pkt(webrtc.MimeTypeVP9, 7, 0, true, -1), pkt(webrtc.MimeTypeVP9, 8, 3000, false, -1))},
		{"av1", fuzzFrames(3,
			pkt(webrtc.MimeTypeAV1, 7, 0, true, -1), pkt(webrtc.MimeTypeAV1, 9, 6000, false, -1))},
		{"opus-levels", fuzzFrames(4|fuzzOptLevel|fuzzOptPause,
			pkt(opus, 1, 960, false, 0x80|20), pkt(opus, 2, 1920, false, 127),
			pkt(opus, 3, 2880, false, -1), pkt(opus, 2, 1920, false, 0))},
		{"seq-jumps", fuzzFrames(0,
			pkt(vp8, 5, 0, true, -1), pkt(vp8, 40000, 1, false, -1), pkt(vp8, 6, 2, false, -1),
			pkt(vp8, 5, 0, true, -1), pkt(vp8, 5, 0, true, -1))},
		{"malformed", fuzzFrames(0,
			[]byte{0x80}, append([]byte{0x8f}, make([]byte, 15)...),
			append(append([]byte{0x90}, make([]byte, 11)...), 0xbe, 0xde, 0, 9),
			append(append([]byte{0xa0}, make([]byte, 11)...), 1, 2, 200),
			pkt(vp8, 1, 0, true, -1)[:20])},
	}
}

// FuzzUpTrackForward feeds arbitrary packets through UpTrack.forward to two
// bound DownTracks, then NACKs what they sent: nothing may panic, and every
// packet written carries the subscriber's SSRC and payload type.
func FuzzUpTrackForward(f *testing.F) {
	for _, seed := range fuzzForwardSeeds() {
		f.Add(seed.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		opts := data[0]
		codec := fuzzCodecs[int(opts&7)%len(fuzzCodecs)]
		up, clock, _ := newFixtureUpTrack(codec, 16)
		type sub struct {
			w    *recordingWriter
			d    *DownTrack
			ssrc uint32
			pt   uint8
		}
		subs := []sub{{w: &recordingWriter{}, ssrc: 1, pt: 100}, {w: &recordingWriter{}, ssrc: 2, pt: 101}}
		for i := range subs {
			level := 0
			if i == 1 && opts&fuzzOptLevel != 0 {
				level = 5
			}
			subs[i].d = newBoundDownTrack(t, up, string(rune('A'+i)), subscriberContext(codec, webrtc.PayloadType(subs[i].pt), subs[i].ssrc, level, subs[i].w))
		}
		// Video arrives on three simulcast layers (each frame's first byte
		// picks one); the second subscriber wants the lowest.
		layers := 1
		if codec.MimeType != webrtc.MimeTypeOpus {
			layers = simulcast.MaxSpatial
			for l := int8(1); l < simulcast.MaxSpatial; l++ {
				up.layers[l].Store(up.newLayer(l, nil, fixturePubSSRC+uint32(l)))
			}
			subs[1].d.SetMaxLayer(simulcast.Layer{Spatial: 0, Temporal: simulcast.AllTemporal})
		}
		for i, raw := range splitFuzzFrames(data[1:]) {
			clock.advance(20e6)
			layer := 0
			if len(raw) > 0 {
				layer = int(raw[len(raw)-1]) % layers
			}
			fw := &forwarder{up: up, layer: int8(layer)}
			fw.forward(raw)
			if opts&fuzzOptPause != 0 && i < 2 {
				subs[1].d.SetPaused(i == 0)
			}
		}
		for _, s := range subs {
			var nacks []rtcp.NackPair
			for _, p := range s.w.packets() {
				nacks = append(nacks, rtcp.NackPair{PacketID: p.hdr.SequenceNumber - 1, LostPackets: 0x3})
			}
			s.d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: nacks}, &rtcp.PictureLossIndication{}})
			for _, p := range s.w.packets() {
				if p.hdr.SSRC != s.ssrc || p.hdr.PayloadType != s.pt {
					t.Fatalf("sent with ssrc %x pt %d, want %x %d", p.hdr.SSRC, p.hdr.PayloadType, s.ssrc, s.pt)
				}
			}
			s.w.check(t)
		}
	})
}

// fuzzRTCPSeeds are RTCP packets a subscriber sends, as marshalled bytes.
func fuzzRTCPSeeds() []fuzzSeed {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			panic(err)
		}
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 9, LastSequenceNumber: 1004}}}
	return []fuzzSeed{
		{"nack-one", marshal(&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 1002}}})},
		{"nack-mask", marshal(&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 999, LostPackets: 0xffff}, {PacketID: 1010, LostPackets: 0x8001}}})},
		{"nack-wrap", marshal(&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 65535, LostPackets: 0xffff}}})},
		{"pli", marshal(&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 9})},
		{"fir", marshal(&rtcp.FullIntraRequest{SenderSSRC: 1, MediaSSRC: 9, FIR: []rtcp.FIREntry{{SSRC: 9, SequenceNumber: 3}}})},
		{"rr-nack-pli", marshal(rr, &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 1003, LostPackets: 1}}}, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 9})},
		{"remb", marshal(rr, &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1e6, SSRCs: []uint32{9}})},
		// Transport-wide CC feedback for one packet, as browsers pad it.
		{"twcc", []byte{
			0xaf, 0xcd, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 9,
			0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x05, 0x01, 0x20, 0x01, 0xfa, 0x01,
		}},
		{"sli", marshal(&rtcp.SliceLossIndication{SenderSSRC: 1, MediaSSRC: 9, SLI: []rtcp.SLIEntry{{First: 1, Number: 2, Picture: 3}}})},
		{"bye", marshal(&rtcp.Goodbye{Sources: []uint32{1}, Reason: "bye"})},
		{"junk", []byte{0x81, 205, 0, 2, 0, 0, 0, 1}},
	}
}

// FuzzDownTrackRTCP hands arbitrary subscriber RTCP to a DownTrack that has
// forwarded packets across a pause, padding and a loss: nothing may panic,
// and retransmissions carry the subscriber's SSRC and payload type.
func FuzzDownTrackRTCP(f *testing.F) {
	for _, seed := range fuzzRTCPSeeds() {
		f.Add(seed.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := rtcp.Unmarshal(data)
		if err != nil {
			return
		}
		up, clock, _ := newFixtureUpTrack(fixtureVP8, 16)
		w := &recordingWriter{}
		d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
		driveDownTrack(newMediaSource(up, clock, 1000), d, "KddPdddRdKdpdxdd")
		d.handleRTCP(pkts)
		for _, p := range w.packets() {
			if p.hdr.SSRC != 9 || p.hdr.PayloadType != 100 {
				t.Fatalf("sent with ssrc %x pt %d, want 9, 100", p.hdr.SSRC, p.hdr.PayloadType)
			}
		}
		w.check(t)
	})
}
