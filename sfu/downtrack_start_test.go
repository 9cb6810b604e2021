package sfu

import (
	"sync/atomic"
	"testing"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// srtpGate is a TrackLocalWriter that behaves like pion's before the
// subscriber's DTLS-SRTP handshake ends: a write returns 0 bytes and no
// error, and the packet is gone.
type srtpGate struct {
	recordingWriter
	up      atomic.Bool
	dropped atomic.Int64
}

func (g *srtpGate) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if !g.up.Load() {
		g.dropped.Add(1)
		return 0, nil
	}
	return g.recordingWriter.WriteRTP(h, payload)
}

// TestDownTrackStartsWhenTransportUp checks a subscriber joining while the
// publisher sends: the DownTrack is bound before the subscriber's
// handshake ends, and what it wrote then would be lost without an error.
// The stream must start at a keyframe the subscriber receives, with a
// keyframe request sent once the transport is up (a request made before
// would have been answered into the void, and would hold a new one back
// for the track's rate limit), and its sequence numbers must run on from
// the first packet received without a hole.
func TestDownTrackStartsWhenTransportUp(t *testing.T) {
	tests := []struct {
		name         string
		before       string // publisher steps while the handshake runs
		after        string // steps once it is up
		wantPLIs     int    // keyframe requests to the publisher in all
		wantPLIAfter bool   // one of them after the transport came up
	}{
		{name: "keyframe during the handshake", before: "Kdd", after: "dKdd", wantPLIs: 1, wantPLIAfter: true},
		{name: "deltas during the handshake", before: "ddd", after: "dKdd", wantPLIs: 1, wantPLIAfter: true},
		{name: "nothing during the handshake", before: "", after: "Kdd", wantPLIs: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, clock, rec := newFixtureUpTrack(fixtureVP8, 0)
			gate := &srtpGate{}
			d := NewDownTrack(DownTrackParams{
				Track: up, StreamID: "PA_pub|" + string(up.ID()), Subscriber: livekit.ParticipantID("PA_sub"),
				Logger: discardLogger, transportUp: gate.up.Load,
			})
			if _, err := d.Bind(subscriberContext(fixtureVP8, 100, 9, 0, gate)); err != nil {
				t.Fatalf("Bind: %v", err)
			}
			up.AddSink(d)
			src := newMediaSource(up, clock, 1000)
			src.send(tt.before)
			plisBefore := rec.pliCount()
			gate.up.Store(true)
			src.send(tt.after)

			if gate.dropped.Load() != 0 {
				t.Errorf("%d packets written before the transport was up (pion drops them silently)", gate.dropped.Load())
			}
			sent := gate.packets()
			if len(sent) == 0 {
				t.Fatal("nothing forwarded after the transport came up")
			}
			if !simulcast.IsKeyframe(simulcast.CodecVP8, sent[0].payload) {
				t.Errorf("the subscriber's first packet (seq %d) is not a keyframe: it cannot decode until the next one", sent[0].hdr.SequenceNumber)
			}
			for i := 1; i < len(sent); i++ {
				if sent[i].hdr.SequenceNumber != sent[i-1].hdr.SequenceNumber+1 {
					t.Errorf("sequence jumps from %d to %d", sent[i-1].hdr.SequenceNumber, sent[i].hdr.SequenceNumber)
				}
			}
			plis := rec.pliCount()
			if plis < tt.wantPLIs {
				t.Errorf("%d keyframe requests sent to the publisher, want at least %d", plis, tt.wantPLIs)
			}
			if tt.wantPLIAfter && plis <= plisBefore {
				t.Errorf("no keyframe request after the transport came up (%d before it)", plisBefore)
			}
			if d.kind != webrtc.RTPCodecTypeVideo {
				t.Fatal("fixture is not video")
			}
			gate.check(t)
		})
	}
}

// TestDownTrackRequestsOnNewTarget checks that a new target or maximum
// that resolves to another layer than the one forwarded asks for that
// layer's keyframe at once: the selector would ask only at the forwarded
// layer's next packet, up to a frame later, and the switch waits for it.
func TestDownTrackRequestsOnNewTarget(t *testing.T) {
	top := simulcast.Layer{Spatial: 2, Temporal: simulcast.AllTemporal}
	mid := simulcast.Layer{Spatial: 1, Temporal: simulcast.AllTemporal}
	tests := []struct {
		name      string
		change    func(d *DownTrack)
		wantLayer int8 // keyframe asked for; -1: none
	}{
		{name: "target up", change: func(d *DownTrack) { d.SetTarget(top) }, wantLayer: 2},
		{name: "target down", change: func(d *DownTrack) { d.SetTarget(simulcast.Layer{Spatial: 0, Temporal: 3}) }, wantLayer: 0},
		{name: "same layer, other temporal", change: func(d *DownTrack) { d.SetTarget(simulcast.Layer{Spatial: 1, Temporal: 1}) }, wantLayer: -1},
		{name: "target paused", change: func(d *DownTrack) { d.SetTarget(simulcast.NoLayer) }, wantLayer: -1},
		{name: "maximum down", change: func(d *DownTrack) { d.SetMaxLayer(simulcast.Layer{Spatial: 0, Temporal: 3}) }, wantLayer: 0},
		{name: "maximum up, target not", change: func(d *DownTrack) { d.SetMaxLayer(mid); d.SetMaxLayer(top) }, wantLayer: -1},
		{name: "muted", change: func(d *DownTrack) { d.SetPaused(true); d.SetTarget(top) }, wantLayer: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSimulcastFixture()
			rec := &rtcpRecorder{up: f.up}
			f.up.p.WriteRTCP = rec.WriteRTCP
			d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, &recordingWriter{}))
			d.SetTarget(mid)
			f.send(0, vp8Frame{pid: 1}) // every layer flows
			f.send(2, vp8Frame{pid: 1})
			f.send(1, vp8Frame{key: true, pid: 1})
			if d.CurrentLayer() != 1 {
				t.Fatalf("forwarding layer %d, want 1", d.CurrentLayer())
			}
			f.clock.advance(keyframeRequestInterval) // past the track's keyframe request limit
			before := rec.pliCount()
			rec.mu.Lock()
			rec.plis = rec.plis[:0]
			rec.mu.Unlock()
			tt.change(d)
			n := rec.pliCount()
			rec.mu.Lock()
			plis := append([]uint32(nil), rec.plis...)
			rec.mu.Unlock()
			switch {
			case tt.wantLayer < 0 && n != 0:
				t.Errorf("%d keyframe requests (SSRCs %x), want none", n, plis)
			case tt.wantLayer >= 0 && (n != 1 || plis[0] != fixturePubSSRC+uint32(tt.wantLayer)):
				t.Errorf("keyframe requests for SSRCs %x, want one for layer %d (%x); %d before", plis, tt.wantLayer, fixturePubSSRC+uint32(tt.wantLayer), before)
			}
		})
	}
}
