package sfu

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// fakeTrack is a Track that only counts keyframe requests: it shows what a
// DownTrack asks of its track, before any rate limiting.
type fakeTrack struct {
	codec    webrtc.RTPCodecParameters
	kind     webrtc.RTPCodecType
	requests int
}

func (f *fakeTrack) ID() livekit.TrackID                         { return "TR_fake" }
func (f *fakeTrack) Kind() webrtc.RTPCodecType                   { return f.kind }
func (f *fakeTrack) Codec() webrtc.RTPCodecParameters            { return f.codec }
func (f *fakeTrack) AddSink(Sink)                                {}
func (f *fakeTrack) RemoveSink(string)                           {}
func (f *fakeTrack) RequestKeyframe(int8)                        { f.requests++ }
func (f *fakeTrack) ReadCached(int8, uint16, []byte) (int, bool) { return 0, false }
func (f *fakeTrack) AvailableLayers() simulcast.LayerMask        { return 1 }
func (f *fakeTrack) TimestampDelta(int8, int8) (uint32, bool)    { return 0, false }

// sinkPacket parses raw as UpTrack.forward would hand it to a sink.
func sinkPacket(t *testing.T, codec webrtc.RTPCodecParameters, raw []byte) *Packet {
	t.Helper()
	var pkt rtp.Packet
	if err := pkt.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	p := &Packet{Header: &pkt.Header, Payload: pkt.Payload, Raw: raw, Arrival: time.Now().UnixNano()}
	describePacket(simulcast.CodecFromMime(codec.MimeType), p)
	return p
}

// driveDownTrack sends steps from src (see mediaSource.send); P pauses d
// and R resumes it.
func driveDownTrack(src *mediaSource, d *DownTrack, steps string) {
	for i := 0; i < len(steps); i++ {
		switch steps[i] {
		case 'P':
			d.SetPaused(true)
		case 'R':
			d.SetPaused(false)
		default:
			src.send(steps[i : i+1])
		}
	}
}

func TestDownTrackBind(t *testing.T) {
	h264High := fixtureH264
	h264High.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"
	h264OtherLevel := fixtureH264
	h264OtherLevel.SDPFmtpLine = "packetization-mode=1;profile-level-id=42e034"
	vp8Upper := fixtureVP8
	vp8Upper.MimeType = "VIDEO/VP8"
	tests := []struct {
		name      string
		published webrtc.RTPCodecParameters
		offered   []webrtc.RTPCodecParameters
		wantPT    webrtc.PayloadType // 0: Bind fails
	}{
		{"same codec", fixtureVP8, []webrtc.RTPCodecParameters{fixtureVP8}, 96},
		{"mime case differs", fixtureVP8, []webrtc.RTPCodecParameters{vp8Upper}, 96},
		{"picks the published codec", fixtureVP8, []webrtc.RTPCodecParameters{fixtureH264, fixtureVP8}, 96},
		{"codec missing", fixtureVP8, []webrtc.RTPCodecParameters{fixtureH264, fixtureVP9}, 0},
		{"h264 other profile", fixtureH264, []webrtc.RTPCodecParameters{h264High}, 0},
		{"h264 other level", fixtureH264, []webrtc.RTPCodecParameters{h264OtherLevel}, 102},
		{"h264 profile chosen", fixtureH264, []webrtc.RTPCodecParameters{h264High, fixtureH264}, 102},
		{"opus", fixtureOpus, []webrtc.RTPCodecParameters{fixtureVP8, fixtureOpus}, 111},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := webrtc.RTPCodecTypeVideo
			if tt.published.MimeType == webrtc.MimeTypeOpus {
				kind = webrtc.RTPCodecTypeAudio
			}
			track := &fakeTrack{codec: tt.published, kind: kind}
			d := NewDownTrack(DownTrackParams{Track: track, Subscriber: "PA_sub", Logger: discardLogger})
			ctx := &fakeTrackContext{codecs: tt.offered, ssrc: 42, writer: &recordingWriter{}}
			got, err := d.Bind(ctx)
			if tt.wantPT == 0 {
				if !errors.Is(err, ErrCodecNotNegotiated) {
					t.Fatalf("Bind error = %v, want ErrCodecNotNegotiated", err)
				}
				if d.bound.Load() != nil {
					t.Fatal("failed Bind left the DownTrack bound")
				}
				return
			}
			if err != nil || got.PayloadType != tt.wantPT {
				t.Fatalf("Bind = %d, %v; want payload type %d", got.PayloadType, err, tt.wantPT)
			}
			wantRequests := 0
			if kind == webrtc.RTPCodecTypeVideo {
				wantRequests = 1
			}
			if track.requests != wantRequests {
				t.Errorf("Bind made %d keyframe requests, want %d", track.requests, wantRequests)
			}
		})
	}
}

// TestDownTrackAsksForKeyframe checks what a video DownTrack asks of its
// track: a keyframe at Bind, then one per packet it has to drop while
// waiting for a keyframe (the track rate-limits them), and again on resume.
func TestDownTrackAsksForKeyframe(t *testing.T) {
	for _, codec := range []webrtc.RTPCodecParameters{fixtureVP8, fixtureVP9, fixtureH264, fixtureAV1} {
		t.Run(codec.MimeType, func(t *testing.T) {
			track := &fakeTrack{codec: codec, kind: webrtc.RTPCodecTypeVideo}
			w := &recordingWriter{}
			d := NewDownTrack(DownTrackParams{Track: track, Subscriber: "PA_sub", Logger: discardLogger})
			d.WriteRTP(sinkPacket(t, codec, pubPacket{seq: 1, payload: mediaPayload(codec.MimeType, true, 100, 1), level: -1}.marshal(96)))
			if track.requests != 0 || w.n.Load() != 0 {
				t.Fatalf("unbound DownTrack: %d requests, %d packets", track.requests, w.n.Load())
			}
			if _, err := d.Bind(subscriberContext(codec, 100, 7, 0, w)); err != nil {
				t.Fatal(err)
			}
			seq := uint16(10)
			write := func(key bool) {
				raw := pubPacket{seq: seq, ts: uint32(seq) * 3000, payload: mediaPayload(codec.MimeType, key, 100, byte(seq)), level: -1}.marshal(96)
				seq++
				d.WriteRTP(sinkPacket(t, codec, raw))
			}
			expect := func(step string, requests, written int) {
				t.Helper()
				if track.requests != requests || int(w.n.Load()) != written {
					t.Fatalf("%s: %d keyframe requests, %d written; want %d, %d", step, track.requests, w.n.Load(), requests, written)
				}
			}
			expect("bind", 1, 0)
			for range 5 {
				write(false)
			}
			expect("5 deltas", 6, 0)
			write(true)
			write(false)
			expect("keyframe and delta", 6, 2)
			d.SetPaused(true)
			write(false)
			d.SetPaused(true)
			expect("paused", 6, 2)
			d.SetPaused(false)
			expect("resume (the request waits for the next packet)", 6, 2)
			d.SetPaused(false)
			write(false)
			expect("delta after resume", 7, 2)
			write(true)
			expect("keyframe after resume", 7, 3)
		})
	}
	t.Run("audio", func(t *testing.T) {
		track := &fakeTrack{codec: fixtureOpus, kind: webrtc.RTPCodecTypeAudio}
		w := &recordingWriter{}
		d := NewDownTrack(DownTrackParams{Track: track, Subscriber: "PA_sub", Logger: discardLogger})
		if _, err := d.Bind(subscriberContext(fixtureOpus, 111, 7, 0, w)); err != nil {
			t.Fatal(err)
		}
		d.WriteRTP(sinkPacket(t, fixtureOpus, pubPacket{seq: 1, payload: mediaPayload(webrtc.MimeTypeOpus, false, 80, 1), level: -1}.marshal(111)))
		d.SetPaused(true)
		d.SetPaused(false)
		if track.requests != 0 || w.n.Load() != 1 {
			t.Fatalf("audio: %d keyframe requests, %d written; want 0, 1", track.requests, w.n.Load())
		}
	})
}

// TestDownTrackWaitsForKeyframe runs a video DownTrack behind a real UpTrack:
// nothing is forwarded before a keyframe, and the publisher gets at most one
// PLI per 300 ms meanwhile.
func TestDownTrackWaitsForKeyframe(t *testing.T) {
	for _, codec := range []webrtc.RTPCodecParameters{fixtureVP8, fixtureVP9, fixtureH264, fixtureAV1} {
		t.Run(codec.MimeType, func(t *testing.T) {
			up, clock, rec := newFixtureUpTrack(codec, 0)
			w := &recordingWriter{}
			newBoundDownTrack(t, up, "PA_sub", subscriberContext(codec, 100, 7, 0, w))
			src := newMediaSource(up, clock, 500)
			if rec.pliCount() != 1 {
				t.Fatalf("Bind sent %d PLIs, want 1", rec.pliCount())
			}
			src.send("ddddddddd") // 297 ms
			if n := w.n.Load(); n != 0 || rec.pliCount() != 1 {
				t.Fatalf("after 297 ms of deltas: %d written, %d PLIs; want 0, 1", n, rec.pliCount())
			}
			src.send("d") // 330 ms
			if rec.pliCount() != 2 {
				t.Fatalf("after 330 ms of deltas: %d PLIs, want 2", rec.pliCount())
			}
			src.send("Kddddddddddddddddddddddddddddd") // one second
			if n := w.n.Load(); n != 30 || rec.pliCount() != 2 {
				t.Fatalf("after a keyframe: %d written, %d PLIs; want 30, 2", n, rec.pliCount())
			}
			if got := w.packets()[0]; got.hdr.SequenceNumber != 510 || !bytes.Equal(got.payload, src.sent[10].payload) {
				t.Fatalf("first packet forwarded: seq %d, want the keyframe (510)", got.hdr.SequenceNumber)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, ssrc := range rec.plis {
				if ssrc != fixturePubSSRC {
					t.Errorf("PLI for SSRC %x, want the publisher's %x", ssrc, fixturePubSSRC)
				}
			}
			w.check(t)
		})
	}
}

// forwardedInputs returns the packets of src that a DownTrack bound before
// the first one forwards when never paused: all media packets from the first
// keyframe on (from the first packet for audio).
func forwardedInputs(src *mediaSource) []pubSent {
	var out []pubSent
	started := src.forwarder.up.Kind() == webrtc.RTPCodecTypeAudio
	for _, s := range src.sent {
		if s.lost || s.payload == nil {
			continue
		}
		if !started && simulcast.IsKeyframe(simulcast.CodecFromMime(src.mime), s.payload) {
			started = true
		}
		if started {
			out = append(out, s)
		}
	}
	return out
}

// TestDownTrackRewritesHeaders checks that each subscriber gets its own SSRC
// and payload type, the publisher's timestamps, and sequence numbers without
// holes except for packets lost before the SFU (which the subscriber NACKs).
func TestDownTrackRewritesHeaders(t *testing.T) {
	tests := []struct {
		name     string
		codec    webrtc.RTPCodecParameters
		seq      uint16
		steps    string
		wantSeqs []uint16
	}{
		{"in order", fixtureVP8, 100, "Kddd", []uint16{100, 101, 102, 103}},
		{"sequence wrap", fixtureVP8, 65533, "Kdddd", []uint16{65533, 65534, 65535, 0, 1}},
		{"deltas before the first keyframe", fixtureH264, 50, "ddKdd", []uint16{52, 53, 54}},
		{"padding-only packets dropped", fixtureVP8, 100, "Kdppdd", []uint16{100, 101, 102, 103}},
		{"padding dropped across wrap", fixtureVP8, 65534, "Kpdpd", []uint16{65534, 65535, 0}},
		{"loss before the SFU stays a gap", fixtureVP8, 100, "Kdxxd", []uint16{100, 101, 104}},
		{"padding then loss", fixtureVP9, 100, "Kdpxdd", []uint16{100, 101, 103, 104}},
		{"opus", fixtureOpus, 7, "ddddd", []uint16{7, 8, 9, 10, 11}},
		{"opus wrap with loss", fixtureOpus, 65535, "ddxd", []uint16{65535, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, clock, _ := newFixtureUpTrack(tt.codec, 0)
			subs := []struct {
				pt   webrtc.PayloadType
				ssrc uint32
				w    *recordingWriter
				d    *DownTrack
			}{{pt: 100, ssrc: 0xa0a0a0a0}, {pt: 127, ssrc: 0x0b}}
			for i := range subs {
				s := &subs[i]
				s.w = &recordingWriter{}
				s.d = newBoundDownTrack(t, up, "PA_sub"+string(rune('A'+i)), subscriberContext(tt.codec, s.pt, s.ssrc, 0, s.w))
			}
			src := newMediaSource(up, clock, tt.seq)
			src.send(tt.steps)
			in := forwardedInputs(src)
			if len(in) != len(tt.wantSeqs) {
				t.Fatalf("test wants %d sequence numbers for %d forwarded inputs", len(tt.wantSeqs), len(in))
			}
			for _, s := range subs {
				got := s.w.packets()
				if len(got) != len(tt.wantSeqs) {
					t.Fatalf("subscriber %x got %d packets, want %d", s.ssrc, len(got), len(tt.wantSeqs))
				}
				for i, p := range got {
					h := p.hdr
					if h.SSRC != s.ssrc || h.PayloadType != uint8(s.pt) || h.SequenceNumber != tt.wantSeqs[i] ||
						h.Timestamp != in[i].ts || h.Marker != in[i].marker {
						t.Errorf("packet %d: ssrc %x pt %d seq %d ts %d marker %v; want %x %d %d %d %v", i,
							h.SSRC, h.PayloadType, h.SequenceNumber, h.Timestamp, h.Marker,
							s.ssrc, s.pt, tt.wantSeqs[i], in[i].ts, in[i].marker)
					}
					if h.Padding || len(h.CSRC) != 0 || h.Extension {
						t.Errorf("packet %d: padding %v, csrc %v, extension %v; want none", i, h.Padding, h.CSRC, h.Extension)
					}
					if !bytes.Equal(p.payload, in[i].payload) {
						t.Errorf("packet %d: payload differs from the publisher's", i)
					}
				}
				if n, _ := s.d.Stats(); n != uint64(len(got)) {
					t.Errorf("Stats packets = %d, want %d", n, len(got))
				}
				s.w.check(t)
			}
		})
	}
}

// TestDownTrackPauseResume checks that a paused DownTrack sends nothing and,
// once resumed, continues at the next keyframe with the next sequence number
// and a timestamp advanced by the time that passed.
func TestDownTrackPauseResume(t *testing.T) {
	tests := []struct {
		name  string
		codec webrtc.RTPCodecParameters
		steps string // see mediaSource.send; P pauses, R resumes
		// forwarded are the indices in the source's packets expected out.
		forwarded []int
		// rebased are the indices in forwarded whose timestamp follows the
		// wall clock rather than the publisher's timestamps.
		rebased []int
	}{
		{
			name: "video resumes at keyframe", codec: fixtureVP8,
			steps: "KddPdddRddKd", forwarded: []int{0, 1, 2, 8, 9}, rebased: []int{3},
		},
		{
			name: "video paused before first keyframe", codec: fixtureVP8,
			steps: "dPdKdRdKd", forwarded: []int{5, 6},
		},
		{
			name: "video resume with keyframe next", codec: fixtureH264,
			steps: "KdPddRKd", forwarded: []int{0, 1, 4, 5}, rebased: []int{2},
		},
		{
			name: "video paused twice", codec: fixtureVP8,
			steps: "KdPdRKdPddRdKd", forwarded: []int{0, 1, 3, 4, 8, 9}, rebased: []int{2, 4},
		},
		{
			name: "video pause and resume between two packets", codec: fixtureVP8,
			steps: "KdPRddKd", forwarded: []int{0, 1, 4, 5}, rebased: []int{2},
		},
		{
			name: "audio resumes at once", codec: fixtureOpus,
			steps: "ddPdddRdd", forwarded: []int{0, 1, 5, 6}, rebased: []int{2},
		},
		{
			name: "audio pause across loss", codec: fixtureOpus,
			steps: "ddPdxdRxdd", forwarded: []int{0, 1, 6, 7}, rebased: []int{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, clock, _ := newFixtureUpTrack(tt.codec, 0)
			w := &recordingWriter{}
			d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(tt.codec, 100, 9, 0, w))
			src := newMediaSource(up, clock, 60000)
			driveDownTrack(src, d, tt.steps)
			got := w.packets()
			if len(got) != len(tt.forwarded) {
				t.Fatalf("%d packets forwarded, want %d", len(got), len(tt.forwarded))
			}
			rebased := map[int]bool{}
			for _, i := range tt.rebased {
				rebased[i] = true
			}
			for i := range got {
				in := src.sent[tt.forwarded[i]]
				if !samePayload(tt.codec, got[i].payload, in.payload) {
					t.Fatalf("packet %d is not source packet %d", i, tt.forwarded[i])
				}
				if i == 0 {
					continue
				}
				if pid, prevPid := vp8PictureID(tt.codec, got[i].payload), vp8PictureID(tt.codec, got[i-1].payload); tt.codec.MimeType == webrtc.MimeTypeVP8 && pid != prevPid+1 {
					t.Errorf("packet %d: VP8 picture id %d after %d, want no gap", i, pid, prevPid)
				}
				prev, prevIn := got[i-1].hdr, src.sent[tt.forwarded[i-1]]
				h := got[i].hdr
				if h.SequenceNumber != prev.SequenceNumber+1 {
					t.Errorf("packet %d: seq %d after %d, want no gap", i, h.SequenceNumber, prev.SequenceNumber)
				}
				wantTS := prev.Timestamp + (in.ts - prevIn.ts)
				if rebased[i] {
					wantTS = prev.Timestamp + uint32((in.arrival-prevIn.arrival)*int64(tt.codec.ClockRate)/1e9)
				}
				if h.Timestamp != wantTS {
					t.Errorf("packet %d: ts %d, want %d (previous %d)", i, h.Timestamp, wantTS, prev.Timestamp)
				}
			}
			if d.Paused() {
				t.Error("Paused() = true after resume")
			}
			w.check(t)
		})
	}
}

// TestDownTrackNACK checks retransmissions from the publisher's cache: the
// packet sent again is the one originally sent under that sequence number,
// header and payload; numbers never sent, or gone from the cache, send
// nothing.
func TestDownTrackNACK(t *testing.T) {
	many := "K" + string(bytes.Repeat([]byte("d"), 40))
	tests := []struct {
		name    string
		cache   int
		steps   string
		unbind  bool
		nacks   []rtcp.NackPair
		wantRtx []uint16
	}{
		{name: "forwarded packet", steps: "Kdddd", nacks: []rtcp.NackPair{{PacketID: 1002}}, wantRtx: []uint16{1002}},
		{name: "keyframe", steps: "Kdddd", nacks: []rtcp.NackPair{{PacketID: 1000}}, wantRtx: []uint16{1000}},
		{
			name: "bitmask", steps: "Kdddddd", nacks: []rtcp.NackPair{{PacketID: 1001, LostPackets: 0b1010}},
			wantRtx: []uint16{1001, 1003, 1005},
		},
		{
			name: "several pairs, a repeat within a round trip sent once", steps: "Kdddd",
			nacks:   []rtcp.NackPair{{PacketID: 1004}, {PacketID: 1001}, {PacketID: 1001}},
			wantRtx: []uint16{1004, 1001},
		},
		{name: "after dropped padding", steps: "Kdppdd", nacks: []rtcp.NackPair{{PacketID: 1002, LostPackets: 1}}, wantRtx: []uint16{1002, 1003}},
		{name: "lost before the SFU", steps: "Kdxd", nacks: []rtcp.NackPair{{PacketID: 1002}}},
		{name: "not sent yet", steps: "Kdd", nacks: []rtcp.NackPair{{PacketID: 1003}, {PacketID: 999}, {PacketID: 33000}}},
		{name: "gone from the cache", cache: 16, steps: many, nacks: []rtcp.NackPair{{PacketID: 1000}, {PacketID: 1040}}, wantRtx: []uint16{1040}},
		{
			name: "across a pause", steps: "KddPdddRdKd",
			nacks: []rtcp.NackPair{{PacketID: 1001, LostPackets: 0b111}}, wantRtx: []uint16{1001, 1002, 1003, 1004},
		},
		{name: "unbound", steps: "Kdd", unbind: true, nacks: []rtcp.NackPair{{PacketID: 1001}}},
		{name: "nothing forwarded", steps: "ddd", nacks: []rtcp.NackPair{{PacketID: 1001}}},
		{name: "wraps", steps: "Kddd", nacks: []rtcp.NackPair{{PacketID: 65535, LostPackets: 0xffff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, clock, _ := newFixtureUpTrack(fixtureVP8, tt.cache)
			w := &recordingWriter{}
			d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
			src := newMediaSource(up, clock, 1000)
			driveDownTrack(src, d, tt.steps)
			sent := w.packets()
			if tt.unbind {
				if err := d.Unbind(nil); err != nil {
					t.Fatal(err)
				}
			}
			d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: tt.nacks}})
			got := w.packets()[len(sent):]
			if len(got) != len(tt.wantRtx) {
				t.Fatalf("%d packets retransmitted, want %d (%v)", len(got), len(tt.wantRtx), tt.wantRtx)
			}
			for i, rtx := range got {
				if rtx.hdr.SequenceNumber != tt.wantRtx[i] {
					t.Fatalf("retransmission %d: seq %d, want %d", i, rtx.hdr.SequenceNumber, tt.wantRtx[i])
				}
				orig := findSent(sent, tt.wantRtx[i])
				if orig == nil {
					t.Fatalf("seq %d retransmitted but never sent", tt.wantRtx[i])
				}
				oh, rh := orig.hdr, rtx.hdr
				if rh.SSRC != oh.SSRC || rh.PayloadType != oh.PayloadType || rh.Timestamp != oh.Timestamp || rh.Marker != oh.Marker {
					t.Errorf("seq %d: retransmitted ssrc %x pt %d ts %d marker %v; sent as %x %d %d %v", rh.SequenceNumber,
						rh.SSRC, rh.PayloadType, rh.Timestamp, rh.Marker, oh.SSRC, oh.PayloadType, oh.Timestamp, oh.Marker)
				}
				if !bytes.Equal(rtx.payload, orig.payload) {
					t.Errorf("seq %d: retransmitted payload differs", rh.SequenceNumber)
				}
			}
			w.check(t)
		})
	}
}

// findSent returns the first packet sent with sequence number seq.
func findSent(sent []sentPacket, seq uint16) *sentPacket {
	for i := range sent {
		if sent[i].hdr.SequenceNumber == seq {
			return &sent[i]
		}
	}
	return nil
}

// TestDownTrackKeyframeRequests checks that PLI and FIR from the subscriber
// become PLIs to the publisher, at most one per 300 ms.
func TestDownTrackKeyframeRequests(t *testing.T) {
	up, clock, rec := newFixtureUpTrack(fixtureVP8, 0)
	d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, &recordingWriter{}))
	src := newMediaSource(up, clock, 1)
	src.send("K")
	pli := &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 9}
	fir := &rtcp.FullIntraRequest{SenderSSRC: 1, MediaSSRC: 9, FIR: []rtcp.FIREntry{{SSRC: 9, SequenceNumber: 1}}}
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 9}}}
	steps := []struct {
		after    time.Duration
		pkts     []rtcp.Packet
		wantPLIs int // sent to the publisher so far, Bind's included
	}{
		{0, nil, 1},
		{400 * time.Millisecond, []rtcp.Packet{pli}, 2},
		{0, []rtcp.Packet{fir}, 2},
		{100 * time.Millisecond, []rtcp.Packet{pli, pli}, 2},
		{200 * time.Millisecond, []rtcp.Packet{fir}, 3},
		{300 * time.Millisecond, []rtcp.Packet{rr}, 3},
		{0, []rtcp.Packet{rr, pli}, 4},
		{299 * time.Millisecond, []rtcp.Packet{pli}, 4},
		{time.Millisecond, []rtcp.Packet{fir}, 5},
		{time.Second, []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 9}, &rtcp.SliceLossIndication{MediaSSRC: 9}}, 5},
	}
	for i, s := range steps {
		clock.advance(s.after)
		d.handleRTCP(s.pkts)
		if got := rec.pliCount(); got != s.wantPLIs {
			t.Fatalf("step %d: %d PLIs sent to the publisher, want %d", i, got, s.wantPLIs)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ssrc := range rec.plis {
		if ssrc != fixturePubSSRC {
			t.Errorf("PLI for SSRC %x, want the publisher's %x", ssrc, fixturePubSSRC)
		}
	}

	t.Run("audio", func(t *testing.T) {
		up, clock, rec := newFixtureUpTrack(fixtureOpus, 0)
		d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureOpus, 111, 9, 0, &recordingWriter{}))
		clock.advance(time.Second)
		d.handleRTCP([]rtcp.Packet{pli, fir})
		if n := rec.pliCount(); n != 0 {
			t.Fatalf("%d PLIs sent for an audio track", n)
		}
	})
}

// TestDownTrackAudioLevel checks that the publisher's RFC 6464 level is sent
// under the extension id the subscriber negotiated, and nothing else is.
func TestDownTrackAudioLevel(t *testing.T) {
	tests := []struct {
		name      string
		subExtID  int // 0: the subscriber did not negotiate the extension
		level     int // level byte the publisher sends; < 0: none
		wantLevel int // < 0: no extension expected
	}{
		{"level under subscriber id", 7, 0x80 | 42, 42},
		{"no voice flag", 7, 42, 42},
		{"silence", 7, 127, 127},
		{"loudest", 7, 0x80, 0},
		{"same id as publisher", fixtureLevelExtID, 0x80 | 10, 10},
		{"id of publisher's transport-cc", fixtureTWCCExtID, 0x80 | 10, 10},
		{"largest one-byte id", 14, 0x80 | 10, 10},
		{"packet without level", 7, -1, -1},
		{"subscriber without extension", 0, 0x80 | 42, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var levels []uint8
			up, clock, _ := newFixtureUpTrack(fixtureOpus, 0)
			up.p.OnAudioLevel = func(l uint8) { levels = append(levels, l) }
			w := &recordingWriter{}
			newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureOpus, 111, 9, tt.subExtID, w))
			src := newMediaSource(up, clock, 1)
			src.level = tt.level
			src.send("ddd")
			got := w.packets()
			if len(got) != 3 {
				t.Fatalf("%d packets forwarded, want 3", len(got))
			}
			for i, p := range got {
				h := p.hdr
				if tt.wantLevel < 0 {
					if h.Extension || len(h.Extensions) != 0 {
						t.Errorf("packet %d: extensions %v, want none", i, h.GetExtensionIDs())
					}
					continue
				}
				if ids := h.GetExtensionIDs(); len(ids) != 1 || ids[0] != uint8(tt.subExtID) {
					t.Errorf("packet %d: extension ids %v, want only %d", i, ids, tt.subExtID)
				}
				if h.ExtensionProfile != rtp.ExtensionProfileOneByte {
					t.Errorf("packet %d: extension profile %#x, want one-byte", i, h.ExtensionProfile)
				}
				ext := h.GetExtension(uint8(tt.subExtID))
				if level, _, ok := ParseAudioLevel(ext); !ok || int(level) != tt.wantLevel {
					t.Errorf("packet %d: audio level %x, want %d", i, ext, tt.wantLevel)
				}
			}
			if tt.level >= 0 && (len(levels) != 3 || int(levels[0]) != tt.level&0x7f) {
				t.Errorf("OnAudioLevel got %v, want 3 times %d", levels, tt.level&0x7f)
			}
			if tt.level < 0 && len(levels) != 0 {
				t.Errorf("OnAudioLevel got %v for packets without a level", levels)
			}
			w.check(t)
		})
	}
}

// samePayload compares payloads apart from the VP8 payload descriptor,
// whose picture ids the DownTrack rewrites.
func samePayload(codec webrtc.RTPCodecParameters, a, b []byte) bool {
	if codec.MimeType != webrtc.MimeTypeVP8 {
		return bytes.Equal(a, b)
	}
	var da, db simulcast.VP8Descriptor
	if simulcast.ParseVP8(a, &da) != nil || simulcast.ParseVP8(b, &db) != nil {
		return false
	}
	return bytes.Equal(a[da.Size:], b[db.Size:])
}

// vp8PictureID is the picture id of a VP8 payload (0 for other codecs).
func vp8PictureID(codec webrtc.RTPCodecParameters, payload []byte) uint16 {
	var d simulcast.VP8Descriptor
	if codec.MimeType != webrtc.MimeTypeVP8 || simulcast.ParseVP8(payload, &d) != nil {
		return 0
	}
	return d.PictureID
}

// TestDownTrackRetransmitLimit checks that a packet asked for again and
// again is retransmitted at most maxRetransmits times, and not twice
// within minRetransmitGap: a receiver behind a congested link must not
// get a retransmission storm.
func TestDownTrackRetransmitLimit(t *testing.T) {
	up, clock, _ := newFixtureUpTrack(fixtureVP8, 0)
	w := &recordingWriter{}
	d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	driveDownTrack(newMediaSource(up, clock, 1000), d, "Kdd")
	before := len(w.packets())
	nack := []rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 1001}}}}
	for range maxRetransmits + 2 {
		d.handleRTCP(nack)
		d.handleRTCP(nack) // at once again: within the gap
		time.Sleep(minRetransmitGap + 10*time.Millisecond)
	}
	if got := len(w.packets()) - before; got != maxRetransmits {
		t.Errorf("%d retransmissions of one packet, want %d", got, maxRetransmits)
	}
}

// TestDownTrackRetransmitGiveUp checks that a video packet still NACKed
// after its last retransmission makes the DownTrack ask the publisher for
// a keyframe (the subscriber cannot decode past it), unless a keyframe was
// forwarded after it.
func TestDownTrackRetransmitGiveUp(t *testing.T) {
	tests := []struct {
		name         string
		steps        string
		nacked       uint16
		justSwitched bool // the stream's start is its last layer switch
		padding      bool // a padding packet follows the media: nacked is it
		wantKey      bool
	}{
		{"lost after the last keyframe", "Kdd", 1001, false, false, true},
		{"lost before a later keyframe", "KdKd", 1001, false, false, false},
		{"right after a layer switch", "Kdd", 1001, true, false, false},
		{"probe padding: the decoder never needs it", "Kdd", 1003, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, clock, _ := newFixtureUpTrack(fixtureVP8, 0)
			w := &recordingWriter{}
			d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
			driveDownTrack(newMediaSource(up, clock, 1000), d, tt.steps)
			if tt.padding && d.WritePadding(1, 100) == 0 {
				t.Fatal("no padding written")
			}
			clock.advance(keyframeRequestInterval) // past the start's request
			if !tt.justSwitched {
				d.switchedAt.Store(time.Now().Add(-recoverAfterSwitch).UnixNano())
			}
			up.pliPending.Store(0)
			nack := []rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: tt.nacked}}}}
			for i := range maxRetransmits + 1 {
				if i == maxRetransmits && up.pliPending.Load() != 0 {
					t.Fatal("a keyframe asked for while retransmissions were left")
				}
				d.handleRTCP(nack)
				time.Sleep(minRetransmitGap + 10*time.Millisecond)
			}
			if got := up.pliPending.Load() != 0; got != tt.wantKey {
				t.Errorf("keyframe asked for: %v, want %v", got, tt.wantKey)
			}
		})
	}
}
