package sfu

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
)

// TestSinkOfAnotherPackageKeepsLayersEncoded: an egress attached through
// Room.PublishedTrack to a simulcast track that no WebRTC subscriber
// watches keeps its layers encoded; the publisher is told to stop them only
// once the egress is gone.
func TestSinkOfAnotherPackageKeepsLayersEncoded(t *testing.T) {
	old := dynacastDownDelay
	dynacastDownDelay = 30 * time.Millisecond
	t.Cleanup(func() { dynacastDownDelay = old })
	r := newTestRoom(t)
	p, sig := r.join(t, "broadcaster")
	p.Start()
	reader := newGateReader()
	t.Cleanup(func() { close(reader.pkts) })
	info := &livekit.TrackInfo{Type: livekit.TrackType_VIDEO, Simulcast: true, Layers: []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_LOW}, {Quality: livekit.VideoQuality_MEDIUM}, {Quality: livekit.VideoQuality_HIGH},
	}}
	track := publishTest(p, webrtc.RTPCodecTypeVideo, reader, info)
	shared, ok := r.PublishedTrack(track.up.ID())
	if !ok {
		t.Fatal("published track not found")
	}
	sink := &recordingSink{id: "EG|test|video"}
	shared.AddSink(sink)
	time.Sleep(5 * dynacastDownDelay)
	if n := sig.n("quality"); n != 0 {
		t.Fatalf("the publisher was told to change its layers %d times while an egress muxes the top one", n)
	}
	shared.RemoveSink(sink.SinkID())
	deadline := time.Now().Add(2 * time.Second)
	for sig.n("quality") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sig.n("quality") == 0 {
		t.Fatal("layers nobody wants any more were not turned off once the egress left")
	}
}
