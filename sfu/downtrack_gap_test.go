package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/fanout-sfu/fanout/simulcast"
)

// TestDownTrackNACKPadding checks that probe padding the subscriber lost
// on the way comes back when NACKed, with its sequence number and
// timestamp: otherwise the receiver keeps a hole in the sequence for good.
// Each step string is run in order: K a keyframe, d a delta frame, p one
// padding packet (WritePadding), P the allocator pauses the video, and the
// NACK goes for the packets named by nack (indexes into what was sent).
func TestDownTrackNACKPadding(t *testing.T) {
	tests := []struct {
		name    string
		steps   string
		nack    []int // indexes of sent packets NACKed
		wantRtx []int // indexes of the sent packets expected back, in order
	}{
		{name: "padding between frames", steps: "Kdpppd", nack: []int{3}, wantRtx: []int{3}},
		{name: "a run of padding", steps: "Kdpppd", nack: []int{2, 3, 4}, wantRtx: []int{2, 3, 4}},
		{name: "padding and media", steps: "Kdpppd", nack: []int{1, 4, 5}, wantRtx: []int{1, 4, 5}},
		{name: "padding of a paused stream", steps: "KdPpp", nack: []int{3}, wantRtx: []int{3}},
		{name: "padding asked for twice at once", steps: "Kdpd", nack: []int{2, 2}, wantRtx: []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSimulcastFixture()
			w := &recordingWriter{}
			d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
			pid := uint16(1)
			for _, s := range tt.steps {
				switch s {
				case 'K', 'd':
					f.send(2, vp8Frame{key: s == 'K', pid: pid})
					pid++
					f.tick()
				case 'p':
					if d.WritePadding(1, maxPaddingBytes) == 0 {
						t.Fatal("padding refused")
					}
				case 'P':
					d.SetTarget(simulcast.NoLayer)
				}
			}
			sent := w.packets()
			var nacks []rtcp.NackPair
			for _, i := range tt.nack {
				nacks = append(nacks, rtcp.NackPair{PacketID: sent[i].hdr.SequenceNumber})
			}
			f.clock.advance(10 * time.Millisecond)
			d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: nacks}})
			got := w.packets()[len(sent):]
			if len(got) != len(tt.wantRtx) {
				t.Fatalf("%d packets sent again, want %d", len(got), len(tt.wantRtx))
			}
			for k, i := range tt.wantRtx {
				o, r := sent[i], got[k]
				if r.hdr.SequenceNumber != o.hdr.SequenceNumber || r.hdr.Timestamp != o.hdr.Timestamp ||
					r.hdr.SSRC != o.hdr.SSRC || r.hdr.PayloadType != o.hdr.PayloadType || r.hdr.Padding != o.hdr.Padding {
					t.Errorf("sent again as seq %d ts %d ssrc %x pt %d padding %v; first sent as %d %d %x %d %v",
						r.hdr.SequenceNumber, r.hdr.Timestamp, r.hdr.SSRC, r.hdr.PayloadType, r.hdr.Padding,
						o.hdr.SequenceNumber, o.hdr.Timestamp, o.hdr.SSRC, o.hdr.PayloadType, o.hdr.Padding)
				}
				if len(r.payload) != len(o.payload) {
					t.Errorf("seq %d sent again with %d payload bytes, first %d", r.hdr.SequenceNumber, len(r.payload), len(o.payload))
				}
			}
			w.check(t)
		})
	}
}

// TestDownTrackNACKLateDropped checks the number of a packet that arrived
// late (after the next one was forwarded, so the subscriber saw a hole
// there) and was then dropped on purpose, being of a temporal layer above
// the subscriber's: a NACK for it must bring a padding packet with that
// number and no media, where it used to bring nothing and the hole stayed.
// A late packet that is forwarded comes back as itself.
func TestDownTrackNACKLateDropped(t *testing.T) {
	tests := []struct {
		name        string
		lateTID     uint8
		wantPadding bool
	}{
		{name: "late upper temporal layer", lateTID: 2, wantPadding: true},
		{name: "late base temporal layer", lateTID: 0, wantPadding: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSimulcastFixture()
			w := &recordingWriter{}
			d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
			d.SetTarget(simulcast.Layer{Spatial: 0, Temporal: 0})
			f.send(0, vp8Frame{key: true, pid: 1, tl0: 1})
			f.tick()
			f.send(0, vp8Frame{pid: 2, tl0: 2})
			f.tick()
			late := f.seq[0]
			f.seq[0]++
			f.send(0, vp8Frame{pid: 4, tl0: 3}) // overtakes the late packet
			f.tick()
			f.seq[0] = late
			f.send(0, vp8Frame{pid: 3, tl0: 2, tid: tt.lateTID})
			f.seq[0] = late + 2
			f.send(0, vp8Frame{pid: 5, tl0: 4})
			sent := w.packets()
			hole := sent[1].hdr.SequenceNumber + 1
			if sent[2].hdr.SequenceNumber != hole+1 {
				t.Fatalf("packet after the late one sent as %d, want %d", sent[2].hdr.SequenceNumber, hole+1)
			}
			f.clock.advance(10 * time.Millisecond)
			d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: hole}}}})
			got := w.packets()[len(sent):]
			if len(got) != 1 || got[0].hdr.SequenceNumber != hole {
				t.Fatalf("NACK for %d: %d packets sent, want %d once", hole, len(got), hole)
			}
			if isPad := got[0].hdr.Padding && len(got[0].payload) == 0; isPad != tt.wantPadding {
				t.Errorf("NACK for %d answered with padding %v (payload %d bytes), want padding %v", hole, got[0].hdr.Padding, len(got[0].payload), tt.wantPadding)
			}
			if got[0].hdr.SSRC != sent[0].hdr.SSRC {
				t.Errorf("sent on ssrc %x, want %x", got[0].hdr.SSRC, sent[0].hdr.SSRC)
			}
			w.check(t)
		})
	}
}
