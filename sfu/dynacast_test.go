package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

// dynacastRecorder records the top layers a dynacast sends.
type dynacastRecorder struct {
	mu   sync.Mutex
	sent []int8
}

func (r *dynacastRecorder) send(top int8) {
	r.mu.Lock()
	r.sent = append(r.sent, top)
	r.mu.Unlock()
}

func (r *dynacastRecorder) all() []int8 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int8(nil), r.sent...)
}

func TestDynacast(t *testing.T) {
	old := dynacastDownDelay
	dynacastDownDelay = 30 * time.Millisecond
	t.Cleanup(func() { dynacastDownDelay = old })
	settle := func() { time.Sleep(3 * dynacastDownDelay) }

	rec := &dynacastRecorder{}
	d := newDynacast(rec.send)
	d.set("a", 0) // before the delay: nothing sent yet
	d.set("b", 0)
	settle()
	if got := rec.all(); len(got) != 1 || got[0] != 0 {
		t.Fatalf("two LOW subscribers: sent %v, want [0]", got)
	}
	d.set("b", 2) // up: at once
	if got := rec.all(); len(got) != 2 || got[1] != 2 {
		t.Fatalf("one asks HIGH: sent %v, want [0 2]", got)
	}
	d.set("b", 0) // down and back up within the delay: no churn
	d.set("b", 2)
	settle()
	if got := rec.all(); len(got) != 2 {
		t.Fatalf("flip within the delay: sent %v, want no more updates", got)
	}
	d.set("b", 1)
	settle()
	d.remove("a")
	d.remove("b")
	settle()
	if got := rec.all(); len(got) != 4 || got[2] != 1 || got[3] != -1 {
		t.Fatalf("down to MEDIUM, then nobody: sent %v, want [0 2 1 -1]", got)
	}
	d.close()
	d.set("c", 2)
	if got := rec.all(); len(got) != 4 {
		t.Fatalf("after close: sent %v", got)
	}
}

func TestQualityUpdate(t *testing.T) {
	msg := qualityUpdate("TR_x", "video/VP8", 1).GetSubscribedQualityUpdate()
	if len(msg.SubscribedCodecs) != 1 || msg.SubscribedCodecs[0].Codec != "vp8" || len(msg.SubscribedCodecs[0].Qualities) != 3 {
		t.Errorf("subscribed codecs %v, want vp8 with the three qualities", msg.SubscribedCodecs)
	}
	want := map[livekit.VideoQuality]bool{livekit.VideoQuality_LOW: true, livekit.VideoQuality_MEDIUM: true, livekit.VideoQuality_HIGH: false}
	if msg.TrackSid != "TR_x" || len(msg.SubscribedQualities) != 3 {
		t.Fatalf("update %v", msg)
	}
	for _, q := range msg.SubscribedQualities {
		if q.Enabled != want[q.Quality] {
			t.Errorf("%s enabled %v, want %v", q.Quality, q.Enabled, want[q.Quality])
		}
	}
}

func TestMaxLayerFor(t *testing.T) {
	layers := []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180},
		{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
		{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
	}
	tests := []struct {
		quality livekit.VideoQuality
		w, h    uint32
		want    int8
	}{
		{livekit.VideoQuality_LOW, 0, 0, 0},
		{livekit.VideoQuality_MEDIUM, 0, 0, 1},
		{livekit.VideoQuality_HIGH, 0, 0, 2},
		{livekit.VideoQuality_OFF, 0, 0, -1},
		{livekit.VideoQuality_LOW, 600, 340, 1}, // a size wins over the quality
		{livekit.VideoQuality_HIGH, 200, 100, 0},
		{livekit.VideoQuality_LOW, 1920, 1080, 2},
	}
	for _, tt := range tests {
		if got := maxLayerFor(layers, tt.quality, tt.w, tt.h); got != tt.want {
			t.Errorf("maxLayerFor(%s, %dx%d) = %d, want %d", tt.quality, tt.w, tt.h, got, tt.want)
		}
	}
	if got := maxLayerFor(nil, livekit.VideoQuality_LOW, 640, 360); got != 2 {
		t.Errorf("no layers announced, a size: %d, want 2", got)
	}
}
