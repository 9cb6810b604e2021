package sfu

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/fanout-sfu/fanout/simulcast"
)

// vp8Frame describes one VP8 packet (a whole frame) of a test stream.
type vp8Frame struct {
	key  bool
	pid  uint16 // 15-bit picture id
	tl0  uint8
	tid  uint8
	sync bool // Y bit
}

// vp8Payload builds a VP8 payload with a full descriptor (picture id,
// TL0PICIDX, TID/Y) and a body tagged with tag.
func vp8Payload(f vp8Frame, tag byte) []byte {
	p := bytes.Repeat([]byte{tag}, 60)
	p[0], p[1] = 0x90, 0xe0 // X, S; I, L, T
	putVP8Fields(p, f.pid, f.tl0, f.tid, f.sync, f.key)
	return p
}

// simulcastFixture is a three-layer VP8 UpTrack driven by hand.
type simulcastFixture struct {
	up    *UpTrack
	clock *nanoClock
	seq   [simulcast.MaxSpatial]uint16
	ts    uint32
}

func newSimulcastFixture() *simulcastFixture {
	up, clock, _ := newFixtureUpTrack(fixtureVP8, 0)
	for l := int8(1); l < simulcast.MaxSpatial; l++ {
		up.layers[l].Store(up.newLayer(l, nil, fixturePubSSRC+uint32(l)))
	}
	return &simulcastFixture{up: up, clock: clock, seq: [simulcast.MaxSpatial]uint16{100, 20000, 65530}, ts: 5000}
}

// send publishes one frame on a layer and returns the raw packet.
func (f *simulcastFixture) send(layer int8, fr vp8Frame) []byte {
	raw := pubPacket{seq: f.seq[layer], ts: f.ts + uint32(layer)*1000000, marker: true, payload: vp8Payload(fr, byte(layer)<<4|byte(fr.pid&0xf)), level: -1}.marshal(96)
	f.seq[layer]++
	fw := &forwarder{up: f.up, layer: layer}
	fw.forward(raw)
	return raw
}

// tick advances the clock and the timestamp by one frame.
func (f *simulcastFixture) tick() {
	f.clock.advance(33 * time.Millisecond)
	f.ts += 3000
}

// TestDownTrackSimulcastSwitchAndNACK switches a subscriber from LOW to
// HIGH and checks continuity, then NACKs packets from both sides of the
// switch: each comes back from the right layer's cache with the sequence
// number and VP8 descriptor it was first sent with.
func TestDownTrackSimulcastSwitchAndNACK(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	d.SetMaxLayer(simulcast.Layer{Spatial: 0, Temporal: simulcast.AllTemporal})
	pid := [3]uint16{10, 3000, 32760}
	frame := func(l int8, key bool) vp8Frame { pid[l]++; return vp8Frame{key: key, pid: pid[l]} }
	for i := 0; i < 6; i++ {
		for l := int8(0); l < 3; l++ {
			f.send(l, frame(l, i == 0))
		}
		f.tick()
	}
	d.SetMaxLayer(simulcast.Layer{Spatial: 2, Temporal: simulcast.AllTemporal})
	f.send(0, frame(0, false)) // still LOW: HIGH has no keyframe yet
	f.send(2, frame(2, false))
	f.tick()
	f.send(2, frame(2, true)) // switch
	f.send(0, frame(0, false))
	for i := 0; i < 3; i++ {
		f.tick()
		f.send(2, frame(2, false))
	}
	sent := w.packets()
	if len(sent) != 11 || d.CurrentLayer() != 2 {
		t.Fatalf("%d packets sent, layer %d; want 11 (7 LOW, 4 HIGH), layer 2", len(sent), d.CurrentLayer())
	}
	for i := 1; i < len(sent); i++ {
		if sent[i].hdr.SequenceNumber != sent[i-1].hdr.SequenceNumber+1 || sent[i].hdr.SSRC != 9 {
			t.Errorf("packet %d: seq %d after %d, ssrc %d", i, sent[i].hdr.SequenceNumber, sent[i-1].hdr.SequenceNumber, sent[i].hdr.SSRC)
		}
		if a, b := vp8PictureID(fixtureVP8, sent[i].payload), vp8PictureID(fixtureVP8, sent[i-1].payload); a != b+1 {
			t.Errorf("packet %d: picture id %d after %d", i, a, b)
		}
		if sent[i].hdr.Timestamp == sent[i-1].hdr.Timestamp {
			t.Errorf("packet %d: timestamp did not advance", i)
		}
	}
	if got := sent[7].payload[len(sent[7].payload)-1] >> 4; got != 2 {
		t.Errorf("packet 7 comes from layer %d, want the HIGH keyframe", got)
	}
	first := sent[0].hdr.SequenceNumber
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: first + 5, LostPackets: 0b1111}}}})
	rtx := w.packets()[len(sent):]
	if len(rtx) != 5 {
		t.Fatalf("%d packets retransmitted, want 5 (seq %d..%d)", len(rtx), first+5, first+9)
	}
	for _, r := range rtx {
		orig := findSent(sent, r.hdr.SequenceNumber)
		if orig == nil || !bytes.Equal(orig.payload, r.payload) || orig.hdr.Timestamp != r.hdr.Timestamp {
			t.Errorf("retransmission of %d differs from what was sent", r.hdr.SequenceNumber)
		}
	}
}

// TestDownTrackTemporalLayers drops the upper temporal layers of an L1T3
// stream and takes them back at a layer-sync frame: sequence numbers and
// picture ids stay continuous, and TL0PICIDX is untouched.
func TestDownTrackTemporalLayers(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	pattern := []uint8{0, 2, 1, 2}
	var pid uint16 = 500
	var tl0 uint8 = 7
	sendGroup := func(key, sync bool) {
		for i, tid := range pattern {
			if tid == 0 && !(key && i == 0) {
				tl0++
			}
			pid++
			f.send(0, vp8Frame{key: key && i == 0, pid: pid, tl0: tl0, tid: tid, sync: sync && tid > 0})
			f.tick()
		}
	}
	sendGroup(true, false)
	d.SetTarget(simulcast.Layer{Spatial: 0, Temporal: 0})
	sendGroup(false, false)
	sendGroup(false, false)
	d.SetTarget(simulcast.Layer{Spatial: 0, Temporal: simulcast.AllTemporal})
	sendGroup(false, false) // no sync frame: stays at TL0
	sendGroup(false, true)
	sent := w.packets()
	// 4 of the first group, 1 per TL0-only group (3), then 4 from the sync group.
	if len(sent) != 4+3+4 {
		t.Fatalf("%d packets sent, want 11", len(sent))
	}
	var desc simulcast.VP8Descriptor
	for i := 1; i < len(sent); i++ {
		if sent[i].hdr.SequenceNumber != sent[i-1].hdr.SequenceNumber+1 {
			t.Errorf("packet %d: seq %d after %d", i, sent[i].hdr.SequenceNumber, sent[i-1].hdr.SequenceNumber)
		}
		if a, b := vp8PictureID(fixtureVP8, sent[i].payload), vp8PictureID(fixtureVP8, sent[i-1].payload); a != b+1 {
			t.Errorf("packet %d: picture id %d after %d", i, a, b)
		}
		if err := simulcast.ParseVP8(sent[i].payload, &desc); err != nil || (desc.TID == 0) != (i < 4 && pattern[i] == 0 || i >= 4 && i < 7 || i >= 7 && pattern[i-7] == 0) {
			t.Errorf("packet %d: tid %d (err %v)", i, desc.TID, err)
		}
	}
}

// layerSink records LayersChanged calls.
type layerSink struct{ masks []simulcast.LayerMask }

func (s *layerSink) SinkID() string                          { return "layers" }
func (s *layerSink) WriteRTP(*Packet)                        {}
func (s *layerSink) TrackClosed()                            {}
func (s *layerSink) LayersChanged(avail simulcast.LayerMask) { s.masks = append(s.masks, avail) }

// TestUpTrackLayerAvailability checks which layers count as sent: a layer
// joins the set with its first packet and leaves it after layerTimeout of
// silence while others still arrive; the last one leaves only after
// silenceTimeout, and none while the track is muted.
func TestUpTrackLayerAvailability(t *testing.T) {
	f := newSimulcastFixture()
	sink := &layerSink{}
	f.up.AddSink(sink)
	for l := int8(0); l < 3; l++ {
		f.send(l, vp8Frame{key: true, pid: 1})
	}
	if got := f.up.AvailableLayers(); got != 0b111 {
		t.Fatalf("after a packet on each layer: %03b", got)
	}
	for i := 0; i < 40; i++ { // 1.3 s of LOW and MEDIUM only
		f.tick()
		f.send(0, vp8Frame{pid: uint16(i + 2)})
		f.send(1, vp8Frame{pid: uint16(i + 2)})
	}
	if got := f.up.AvailableLayers(); got != 0b011 {
		t.Fatalf("HIGH silent for 1.3 s: %03b, want 011", got)
	}
	f.clock.advance(2 * time.Second)
	f.up.ExpireLayers()
	if got := f.up.AvailableLayers(); got != 0b001 {
		t.Fatalf("all silent for 2 s: %03b, want the last layer kept (001)", got)
	}
	f.up.SetMuted(true)
	f.clock.advance(5 * time.Second)
	f.up.ExpireLayers()
	if got := f.up.AvailableLayers(); got != 0b001 {
		t.Fatalf("muted: %03b, want 001", got)
	}
	f.up.SetMuted(false)
	f.clock.advance(layerCheckInterval)
	f.up.ExpireLayers()
	if got := f.up.AvailableLayers(); got != 0 {
		t.Fatalf("all silent for 7 s: %03b, want none", got)
	}
	want := []simulcast.LayerMask{0b001, 0b011, 0b111, 0b011, 0b001, 0}
	if len(sink.masks) != len(want) {
		t.Fatalf("LayersChanged %v, want %v", sink.masks, want)
	}
	for i := range want {
		if sink.masks[i] != want[i] {
			t.Fatalf("LayersChanged %v, want %v", sink.masks, want)
		}
	}
}

// TestDownTrackIgnoresRetransmittedKeyframes replays what Chrome's RTX
// bandwidth probes do: an old keyframe packet of the layer a subscriber is
// about to switch to arrives again. It must not start the switch (the
// stream would jump back in time and lose the packets in between), and a
// duplicate of a forwarded packet is not sent twice.
func TestDownTrackIgnoresRetransmittedKeyframes(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	var oldLowKey []byte
	pid := [3]uint16{}
	for i := 0; i < 5; i++ {
		for l := int8(0); l < 3; l++ {
			pid[l]++
			raw := f.send(l, vp8Frame{key: i == 0, pid: pid[l]})
			if l == 0 && i == 0 {
				oldLowKey = raw
				f.seq[0]++ // the next LOW packet is lost on the way
			}
		}
		f.tick()
	}
	lostLow := pubPacket{seq: f.seq[0] - 5, ts: 5000, marker: true, payload: vp8Payload(vp8Frame{key: true, pid: 1}, 0x01), level: -1}.marshal(96)
	if d.CurrentLayer() != 2 {
		t.Fatalf("forwarding layer %d, want 2", d.CurrentLayer())
	}
	d.SetMaxLayer(simulcast.Layer{Spatial: 0, Temporal: simulcast.AllTemporal})
	before := len(w.packets())
	(&forwarder{up: f.up, layer: 0}).forward(oldLowKey) // RTX probe: an old keyframe again
	(&forwarder{up: f.up, layer: 0}).forward(lostLow)   // a late retransmission of a lost keyframe packet
	lastHigh := pubPacket{seq: f.seq[2] - 1, ts: f.ts - 3000 + 2000000, marker: true, payload: vp8Payload(vp8Frame{pid: pid[2]}, 0x20), level: -1}.marshal(96)
	(&forwarder{up: f.up, layer: 2}).forward(lastHigh) // a duplicate of a forwarded packet
	if d.CurrentLayer() != 2 || len(w.packets()) != before {
		t.Fatalf("after an old keyframe and a duplicate: layer %d, %d packets sent (want layer 2, none)", d.CurrentLayer(), len(w.packets())-before)
	}
	pid[0]++
	f.send(0, vp8Frame{key: true, pid: pid[0]})
	sent := w.packets()
	if d.CurrentLayer() != 0 || len(sent) != before+1 || sent[before].hdr.SequenceNumber != sent[before-1].hdr.SequenceNumber+1 {
		t.Fatalf("a fresh LOW keyframe: layer %d, %d packets sent, want layer 0 continuing the sequence", d.CurrentLayer(), len(sent)-before)
	}
}

// TestUpTrackLayerBitrates measures layers sending at known rates: one
// packet per 33 ms tick on LOW and three on HIGH, HIGH's with temporal ids
// 0, 1, 2 in turn; rates are cumulative over temporal layers.
func TestUpTrackLayerBitrates(t *testing.T) {
	f := newSimulcastFixture()
	f.up.UpdateBitrates()
	var size int
	for i := 0; i < 300; i++ { // 10 s
		f.tick()
		size = len(f.send(0, vp8Frame{key: i == 0, pid: uint16(i)}))
		for k := uint8(0); k < 3; k++ {
			f.send(2, vp8Frame{key: i == 0 && k == 0, pid: uint16(3*i) + uint16(k), tid: k})
		}
		if i%9 == 8 {
			f.up.UpdateBitrates()
		}
	}
	perTick := float64(size*8) / 0.033 // bits/s of one packet per tick
	rates := f.up.LayerBitrates()
	near := func(got uint64, want float64) bool { return float64(got) > 0.9*want && float64(got) < 1.1*want }
	if !near(rates[0][0], perTick) || rates[0][3] != rates[0][0] {
		t.Errorf("LOW: %v, want about %.0f at every temporal level", rates[0], perTick)
	}
	for tid := 0; tid < 3; tid++ {
		if !near(rates[2][tid], perTick*float64(tid+1)) {
			t.Errorf("HIGH up to TL%d: %d, want about %.0f", tid, rates[2][tid], perTick*float64(tid+1))
		}
	}
	if rates[1] != [4]uint64{} {
		t.Errorf("MEDIUM (never sent): %v", rates[1])
	}
}

// TestDownTrackWritePadding checks probe padding: nothing before the first
// keyframe; then padding-only packets that continue the sequence with the
// last timestamp; media after them continues the sequence; a NACK for a
// padding packet sends nothing, one for media still works.
func TestDownTrackWritePadding(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	if n := d.WritePadding(3, maxPaddingBytes); n != 0 {
		t.Fatalf("padding before any keyframe: %d bytes", n)
	}
	f.send(2, vp8Frame{key: true, pid: 1})
	f.tick()
	f.send(2, vp8Frame{pid: 2})
	if n := d.WritePadding(3, maxPaddingBytes); n != 3*(12+maxPaddingBytes) {
		t.Fatalf("padding: %d bytes, want %d", n, 3*(12+maxPaddingBytes))
	}
	f.tick()
	f.send(2, vp8Frame{pid: 3})
	sent := w.packets()
	if len(sent) != 6 {
		t.Fatalf("%d packets, want 2 media, 3 padding, 1 media", len(sent))
	}
	for i := 1; i < len(sent); i++ {
		if sent[i].hdr.SequenceNumber != sent[i-1].hdr.SequenceNumber+1 {
			t.Errorf("packet %d: seq %d after %d", i, sent[i].hdr.SequenceNumber, sent[i-1].hdr.SequenceNumber)
		}
	}
	for _, p := range sent[2:5] {
		if !p.hdr.Padding || len(p.payload) != 0 || p.hdr.Timestamp != sent[1].hdr.Timestamp || p.hdr.SSRC != 9 {
			t.Errorf("padding packet %+v, payload %d bytes", p.hdr, len(p.payload))
		}
	}
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: sent[3].hdr.SequenceNumber}}}})
	if got := w.packets(); len(got) != 7 || !got[6].hdr.Padding || got[6].hdr.SequenceNumber != sent[3].hdr.SequenceNumber {
		t.Errorf("a NACK for padding: %d packets sent again, want that padding once", len(got)-6)
	}
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: sent[5].hdr.SequenceNumber}}}})
	if got := w.packets(); len(got) != 8 || !bytes.Equal(got[7].payload, sent[5].payload) {
		t.Errorf("a NACK for media after the padding: %d packets", len(got)-7)
	}
}

// TestDownTrackPaddingWhilePaused checks that padding still goes out when
// the allocator paused the video (probing is how it comes back), with the
// sequence continuing across it and the resume at the next keyframe, and
// that none goes out while the subscriber disabled the track.
func TestDownTrackPaddingWhilePaused(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	f.send(2, vp8Frame{key: true, pid: 1})
	d.SetTarget(simulcast.NoLayer)
	f.tick()
	f.send(2, vp8Frame{pid: 2}) // paused: not forwarded
	if n := d.WritePadding(2, 50); n != 2*(12+50) {
		t.Fatalf("padding while paused by the allocator: %d bytes", n)
	}
	d.SetTarget(simulcast.Layer{Spatial: 2, Temporal: simulcast.AllTemporal})
	f.tick()
	f.send(2, vp8Frame{key: true, pid: 3})
	sent := w.packets()
	if len(sent) != 4 {
		t.Fatalf("%d packets, want media, 2 padding, media", len(sent))
	}
	for i := 1; i < len(sent); i++ {
		if sent[i].hdr.SequenceNumber != sent[i-1].hdr.SequenceNumber+1 {
			t.Errorf("packet %d: seq %d after %d", i, sent[i].hdr.SequenceNumber, sent[i-1].hdr.SequenceNumber)
		}
	}
	d.SetPaused(true)
	if n := d.WritePadding(2, 50); n != 0 {
		t.Errorf("padding while disabled: %d bytes", n)
	}
}

// TestDownTrackStampsTransportCC checks that every packet a DownTrack sends
// (media, padding, retransmission) carries the connection's next
// transport-wide sequence number, recorded with its size on the wire.
func TestDownTrackStampsTransportCC(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	rec := newTWCCRecorder(nil, nil)
	rec.seq.Store(65534) // wraps
	d.p.twcc = rec
	f.send(2, vp8Frame{key: true, pid: 1})
	f.tick()
	f.send(2, vp8Frame{pid: 2})
	d.WritePadding(2, 100)
	first := w.packets()[0].hdr.SequenceNumber
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: first}}}})
	sent := w.packets()
	if len(sent) != 5 {
		t.Fatalf("%d packets, want 2 media, 2 padding, 1 retransmission", len(sent))
	}
	for i, p := range sent {
		ext := p.hdr.GetExtension(4) // the fixture's transport-cc id
		if len(ext) != 2 {
			t.Fatalf("packet %d: no transport-cc extension (%v)", i, p.hdr.GetExtensionIDs())
		}
		seq := uint16(ext[0])<<8 | uint16(ext[1])
		if want := uint16(65534 + i); seq != want {
			t.Errorf("packet %d: transport-wide seq %d, want %d", i, seq, want)
		}
		r := rec.history[seq%sendHistorySize]
		size := p.hdr.MarshalSize() + len(p.payload) + int(p.hdr.PaddingSize)
		if !r.valid || r.seq != seq || int(r.size) != size || r.probe != (len(p.payload) == 0) {
			t.Errorf("packet %d: recorded %+v, want seq %d size %d", i, r, seq, size)
		}
	}
}

// TestDownTrackTemporalSwitchDecodable runs Chrome's L1T3 simulcast
// through a DownTrack while the target's temporal layer goes down and up
// (slowly, in quick succession, and around spatial switches), each change
// made at every position in the eight-frame temporal pattern and between
// packets of a frame: a libwebrtc receiver (vp8Receiver) must decode every
// frame forwarded, with the references it was encoded with, and end up
// with every temporal layer the final target asks for.
func TestDownTrackTemporalSwitchDecodable(t *testing.T) {
	tests := []struct {
		name    string
		start   simulcast.Layer
		changes []l1t3Event // ticks and targets; before is set by the test
		end     simulcast.Layer
	}{
		{"down to TL0, up to TL1, up to all", layer(2, 3),
			[]l1t3Event{{tick: 16, target: layer(2, 0)}, {tick: 32, target: layer(2, 1)}, {tick: 44, target: layer(2, 3)}}, layer(2, 3)},
		{"up to TL1 then all at once", layer(2, 0),
			[]l1t3Event{{tick: 24, target: layer(2, 1)}, {tick: 25, target: layer(2, 3)}}, layer(2, 3)},
		{"down and up within frames", layer(2, 3),
			[]l1t3Event{{tick: 16, target: layer(2, 0)}, {tick: 17, target: layer(2, 3)}, {tick: 18, target: layer(2, 1)}, {tick: 19, target: layer(2, 3)}, {tick: 20, target: layer(2, 0)}, {tick: 22, target: layer(2, 2)}}, layer(2, 2)},
		{"spatial switch up at TL0, then temporal up", layer(1, 3),
			[]l1t3Event{{tick: 16, target: layer(2, 0)}, {tick: 24, target: layer(2, 1)}, {tick: 27, target: layer(2, 3)}}, layer(2, 3)},
		{"temporal up while a spatial switch waits for its keyframe", layer(1, 0),
			[]l1t3Event{{tick: 16, target: layer(2, 0)}, {tick: 17, target: layer(2, 1)}, {tick: 18, target: layer(2, 3)}}, layer(2, 3)},
		{"spatial switch down and temporal changes", layer(2, 3),
			[]l1t3Event{{tick: 16, target: layer(1, 1)}, {tick: 18, target: layer(0, 0)}, {tick: 30, target: layer(1, 3)}}, layer(1, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for shift := range len(l1t3Pattern) {
				for _, before := range []int{0, 1, 3, 4, 6, 9} {
					events := make([]l1t3Event, len(tt.changes))
					for i, e := range tt.changes {
						events[i] = l1t3Event{tick: e.tick + shift, before: before, target: e.target}
					}
					res := runL1T3(t, tt.start, events, 72)
					if len(res.problems) > 0 {
						t.Fatalf("changes %d frames later, before packet %d of their tick:\n%s", shift, before, summary(res.problems))
					}
					if msg := endsAt(res.decoded, tt.end, 72-16); msg != "" {
						t.Fatalf("changes %d frames later, before packet %d of their tick: %s", shift, before, msg)
					}
				}
			}
		})
	}
}

// TestDownTrackPaddingBetweenFrames asks for probe padding before every
// packet of a tick, among the packets of keyframes and TL0 frames too:
// the padding must go out between frames only (a libwebrtc receiver cannot
// assemble a frame with padding among its packets, and after a lost TL0
// frame it decodes nothing until the next keyframe), and all of it.
func TestDownTrackPaddingBetweenFrames(t *testing.T) {
	tests := []struct {
		name    string
		target  simulcast.Layer
		tick    int // 0: keyframes, a multiple of 8: TL0 frames
		packets int // in the tick
		count   int
	}{
		{"during keyframes", layer(2, 3), 0, 2 + 4 + 8, 3},
		{"during TL0 frames", layer(2, 3), 8, 1 + 3 + 5, 3},
		{"during TL0 frames of a TL0-only stream", layer(2, 0), 16, 1 + 3 + 5, 20},
		{"during TL0 frames of the middle layer", layer(1, 3), 24, 1 + 3 + 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for before := range tt.packets + 1 {
				res := runL1T3(t, tt.target, []l1t3Event{{tick: tt.tick, before: before, padding: tt.count}}, 40)
				if len(res.problems) > 0 {
					t.Fatalf("padding asked before packet %d of tick %d:\n%s", before, tt.tick, summary(res.problems))
				}
				want := tt.count * (12 + 100)
				if tt.tick == 0 && before == 0 {
					want = 0 // nothing forwarded yet
				}
				if res.padBytes != want {
					t.Errorf("padding asked before packet %d: %d bytes sent, want %d", before, res.padBytes, want)
				}
				if msg := endsAt(res.decoded, tt.target, 40-16); msg != "" {
					t.Fatalf("padding asked before packet %d: %s", before, msg)
				}
			}
		})
	}
}

// openFrame returns a DownTrack forwarding HIGH, and its writer, after the
// first packet of a frame was forwarded and before the rest arrived.
func openFrame(t *testing.T) (*recordingWriter, *DownTrack) {
	t.Helper()
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	f.send(2, vp8Frame{key: true, pid: 1})
	f.tick()
	raw := pubPacket{seq: f.seq[2], ts: f.ts + 2000000, payload: vp8Payload(vp8Frame{pid: 2}, 0x22), level: -1}.marshal(96)
	f.seq[2]++
	(&forwarder{up: f.up, layer: 2}).forward(raw)
	if len(w.packets()) != 2 {
		t.Fatalf("%d packets forwarded, want the keyframe and a frame's first packet", len(w.packets()))
	}
	return w, d
}

// TestDownTrackPaddingWaitEnds checks how long padding waits for a frame
// that does not end: until forwarding stops (a pause), or until
// maxPaddingWait passed, when it gives up and sends nothing.
func TestDownTrackPaddingWaitEnds(t *testing.T) {
	t.Run("paused", func(t *testing.T) {
		w, d := openFrame(t)
		got := make(chan int)
		go func() { got <- d.WritePadding(2, 50) }()
		waitPaddingBlockedOrDone(t, d, make(chan struct{}))
		d.SetTarget(simulcast.NoLayer)
		if n := <-got; n != 2*(12+50) || len(w.packets()) != 4 {
			t.Fatalf("padding once paused: %d bytes, %d packets in all; want %d bytes, 4 packets", n, len(w.packets()), 2*(12+50))
		}
	})
	t.Run("never ends", func(t *testing.T) {
		w, d := openFrame(t)
		start := time.Now()
		if n := d.WritePadding(2, 50); n != 0 || len(w.packets()) != 2 {
			t.Fatalf("padding during a frame that never ends: %d bytes, %d packets in all", n, len(w.packets()))
		}
		if waited := time.Since(start); waited < maxPaddingWait {
			t.Fatalf("gave up after %v, want %v", waited, maxPaddingWait)
		}
	})
}

// TestDownTrackLateRestOfFrame reorders packets around a temporal layer
// change: the last packet of a TL1 frame arrives after the next frame
// started, which took the target down to TL0. It is still sent, in the
// slot left for it and with its frame's picture id: without it the
// subscriber could not assemble the frame, nor get it by NACK.
func TestDownTrackLateRestOfFrame(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	fw := &forwarder{up: f.up, layer: 2}
	send := func(seq uint16, fr vp8Frame, start, marker bool) {
		p := vp8Payload(fr, 0x20|byte(seq&0xf))
		if !start {
			p[0] &^= 0x10
		}
		fw.forward(pubPacket{seq: seq, ts: f.ts + 2000000, marker: marker, payload: p, level: -1}.marshal(96))
		f.tick()
	}
	send(10, vp8Frame{key: true, pid: 1, tl0: 1}, true, true)
	send(11, vp8Frame{pid: 2, tl0: 1, tid: 1, sync: true}, true, false)
	d.SetTarget(simulcast.Layer{Spatial: 2, Temporal: 0})
	send(13, vp8Frame{pid: 3, tl0: 2}, true, true)                      // overtakes the end of frame 2
	send(12, vp8Frame{pid: 2, tl0: 1, tid: 1, sync: true}, false, true) // late end of frame 2
	send(14, vp8Frame{pid: 4, tl0: 2, tid: 2}, true, true)              // dropped
	send(15, vp8Frame{pid: 5, tl0: 3}, true, true)
	var got []string
	for _, p := range w.packets() {
		got = append(got, fmt.Sprintf("%d/%d", p.hdr.SequenceNumber, vp8PictureID(fixtureVP8, p.payload)))
	}
	// Output sequence numbers start at the first input's; the dropped
	// frame is squeezed out.
	want := []string{"10/1", "11/2", "13/3", "12/2", "14/4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent (seq/picture id) %v, want %v", got, want)
	}
}

// putVP8Fields writes a VP8 payload descriptor's 15-bit PictureID,
// TL0PICIDX, TID and Y bit (p[2:6], after X and I/L/T/K bytes) and the
// frame tag's inter-frame bit (p[6]).
func putVP8Fields(p []byte, pid uint16, tl0, tid uint8, sync, key bool) {
	p[2], p[3] = 0x80|byte(pid>>8)&0x7f, byte(pid)
	p[4] = tl0
	p[5] = tid << 6
	if sync {
		p[5] |= 0x20
	}
	p[6] = 0x01 // inter frame
	if key {
		p[6] = 0x00
	}
}

// TestDownTrackHoldsSwitchKeyframe checks that a switch down asks for the
// new layer's keyframe only once the hold the allocator set has passed
// (the path's queue has had time to empty), and that a switch up drops a
// pending hold.
func TestDownTrackHoldsSwitchKeyframe(t *testing.T) {
	tests := []struct {
		name    string
		hold    time.Duration
		raise   bool // a switch back up before the hold passes
		natural bool // the publisher sends a layer-1 keyframe under the hold
		askedAt int  // frames sent after the switch down before the layer-1 keyframe was asked for, -1 never
	}{
		{"no hold: at once", 0, false, false, 0},
		// The frames at 0, 33 and 66 ms are under the hold: the one at 99 ms asks.
		{"held for 99 ms", 3 * 33 * time.Millisecond, false, false, 4},
		{"a raise ends the hold", time.Second, true, false, -1},
		// Switched on the publisher's own keyframe: nothing is asked for,
		// and no hold is left to delay the next switch's request.
		{"a switch ends the hold", time.Second, false, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSimulcastFixture()
			w := &recordingWriter{}
			d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
			pid := [3]uint16{10, 3000, 32760}
			frame := func(l int8, key bool) vp8Frame { pid[l]++; return vp8Frame{key: key, pid: pid[l]} }
			for i := range 3 {
				for l := int8(0); l < 3; l++ {
					f.send(l, frame(l, i == 0))
				}
				f.tick()
			}
			if d.CurrentLayer() != 2 {
				t.Fatalf("forwarding layer %d, want 2", d.CurrentLayer())
			}
			f.clock.advance(keyframeRequestInterval) // past the start's requests
			f.up.pliPending.Store(0)
			if tt.hold > 0 {
				d.holdSwitchKeyframe(f.clock.now() + int64(tt.hold))
			}
			d.SetTarget(simulcast.Layer{Spatial: 1, Temporal: simulcast.AllTemporal})
			if tt.raise {
				d.SetTarget(simulcast.Layer{Spatial: 2, Temporal: simulcast.AllTemporal})
			}
			if tt.natural {
				f.send(1, frame(1, true))
				if d.CurrentLayer() != 1 || d.keyHold.Load() != 0 {
					t.Fatalf("after layer 1's keyframe: layer %d, hold %d; want 1 and none", d.CurrentLayer(), d.keyHold.Load())
				}
			}
			asked := -1
			for i := 0; i < 6 && asked < 0; i++ {
				if f.up.pliPending.Load()&(1<<1) != 0 {
					asked = i
					break
				}
				for l := int8(0); l < 3; l++ {
					f.send(l, frame(l, false))
				}
				f.tick()
			}
			if asked != tt.askedAt {
				t.Errorf("layer 1's keyframe asked for %d frames after the switch down, want %d", asked, tt.askedAt)
			}
		})
	}
}
