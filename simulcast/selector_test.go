package simulcast

import "testing"

// selStep is one packet given to a Selector and what must happen to it.
type selStep struct {
	layer    int8
	key      bool
	tid      int8 // -1: no temporal id
	sync     bool
	start    bool
	target   Layer
	avail    LayerMask
	want     Action
	wantKey  int8 // keyframe request expected (-1 none)
	wantCurr int8
}

func pkt(layer int8, key bool, target int8, avail LayerMask, want Action, wantKey, cur int8) selStep {
	return selStep{layer: layer, key: key, tid: -1, target: Layer{target, AllTemporal}, avail: avail, want: want, wantKey: wantKey, wantCurr: cur}
}

const all3 LayerMask = 0b111

func TestSelector(t *testing.T) {
	tests := []struct {
		name  string
		steps []selStep
	}{
		{"first keyframe of a layer up to the target starts the stream", []selStep{
			pkt(2, false, 1, all3, Drop, -1, -1),
			pkt(1, false, 1, all3, Drop, 1, -1), // wanted layer without keyframe: ask
			pkt(2, true, 1, all3, Drop, -1, -1), // above the target: never
			pkt(0, true, 1, all3, SwitchForward, -1, 0),
			pkt(0, false, 1, all3, Forward, 1, 0), // still below the target: keep asking
			pkt(1, true, 1, all3, SwitchForward, -1, 1),
			pkt(0, true, 1, all3, Drop, -1, 1),
			pkt(1, false, 1, all3, Forward, -1, 1),
		}},
		{"switch up waits for the keyframe, forwarding the current layer", []selStep{
			pkt(0, true, 0, all3, SwitchForward, -1, 0),
			pkt(0, false, 2, all3, Forward, 2, 0),
			pkt(2, false, 2, all3, Drop, 2, 0),
			pkt(1, true, 2, all3, SwitchForward, -1, 1), // opportunistic: closer to the target
			pkt(0, true, 2, all3, Drop, -1, 1),
			pkt(2, true, 2, all3, SwitchForward, -1, 2),
			pkt(1, false, 2, all3, Drop, -1, 2),
		}},
		{"switch down", []selStep{
			pkt(2, true, 2, all3, SwitchForward, -1, 2),
			pkt(2, false, 0, all3, Forward, 0, 2),
			pkt(1, true, 0, all3, SwitchForward, -1, 1),
			pkt(2, true, 0, all3, Drop, -1, 1),
			pkt(0, true, 0, all3, SwitchForward, -1, 0),
		}},
		{"a layer the publisher stopped falls back to the best available", []selStep{
			pkt(2, true, 2, all3, SwitchForward, -1, 2),
			pkt(1, false, 2, 0b011, Drop, 1, 2),
			pkt(1, true, 2, 0b011, SwitchForward, -1, 1),
			pkt(2, true, 2, all3, SwitchForward, -1, 2), // back
		}},
		{"only a higher layer available", []selStep{
			pkt(2, true, 0, 0b100, SwitchForward, -1, 2),
			pkt(0, true, 0, all3, SwitchForward, -1, 0),
		}},
		{"paused target forwards nothing, resumes at a keyframe", []selStep{
			pkt(1, true, 1, all3, SwitchForward, -1, 1),
			pkt(1, false, -1, all3, Drop, -1, -1),
			pkt(1, false, 1, all3, Drop, 1, -1),
			pkt(1, true, 1, all3, SwitchForward, -1, 1),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSelSteps(t, NewSelector(), tt.steps) })
	}
}

func runSelSteps(t *testing.T, s *Selector, steps []selStep) {
	t.Helper()
	for i, st := range steps {
		p := PacketInfo{Layer: st.layer, Keyframe: st.key, FrameStart: st.start || st.key, TID: st.tid, LayerSync: st.sync}
		d := s.Select(p, st.target, st.avail)
		if d.Action != st.want || d.KeyframeFor != st.wantKey || s.Current() != st.wantCurr {
			t.Fatalf("step %d %+v target %+v: got action %d keyframe-for %d current %d, want %d %d %d",
				i, p, st.target, d.Action, d.KeyframeFor, s.Current(), st.want, st.wantKey, st.wantCurr)
		}
	}
}

func TestSelectorTemporal(t *testing.T) {
	tl := func(tid int8, start, sync bool, target int8, want Action) selStep {
		return selStep{layer: 0, tid: tid, start: start, sync: sync, target: Layer{0, target}, avail: 1, want: want, wantKey: -1, wantCurr: 0}
	}
	key := selStep{layer: 0, key: true, tid: 0, target: Layer{0, AllTemporal}, avail: 1, want: SwitchForward, wantKey: -1, wantCurr: 0}
	steps := []selStep{
		key,
		tl(2, true, false, AllTemporal, Forward),
		tl(2, false, false, AllTemporal, Forward),
		tl(1, true, false, 0, DropInStream),  // down at a frame start
		tl(1, false, false, 0, DropInStream), // the rest of that frame too
		tl(0, true, false, 0, Forward),
		tl(2, true, false, 2, DropInStream), // up only at a sync frame
		tl(1, true, true, 2, Forward),       // sync to TL1
		tl(2, true, false, 2, DropInStream), // TL2 still needs its own sync
		tl(2, true, true, 2, Forward),
		tl(2, false, false, 2, Forward),
	}
	runSelSteps(t, NewSelector(), steps)
}

func TestResolve(t *testing.T) {
	tests := []struct {
		target int8
		avail  LayerMask
		want   int8
	}{
		{2, all3, 2}, {1, all3, 1}, {2, 0b011, 1}, {0, 0b110, 1}, {1, 0b100, 2},
		{-1, all3, -1}, {2, 0, -1}, {5, all3, 2},
	}
	for _, tt := range tests {
		if got := Resolve(tt.target, tt.avail); got != tt.want {
			t.Errorf("Resolve(%d, %03b) = %d, want %d", tt.target, tt.avail, got, tt.want)
		}
	}
}

func TestLayerForRIDAndSize(t *testing.T) {
	for rid, want := range map[string]int8{"q": 0, "h": 1, "f": 2, "LOW": 0, "mid": 1, "high": 2, "0": 0, "2": 2} {
		if got, ok := LayerForRID(rid); !ok || got != want {
			t.Errorf("LayerForRID(%q) = %d, %v; want %d", rid, got, ok, want)
		}
	}
	if _, ok := LayerForRID("x"); ok {
		t.Error("LayerForRID(x) ok")
	}
	layers := []Dims{{320, 180}, {640, 360}, {1280, 720}}
	sizes := []struct {
		w, h uint32
		want int8
	}{{100, 100, 0}, {320, 180, 0}, {321, 180, 1}, {360, 640, 1}, {1280, 720, 2}, {4000, 3000, 2}}
	for _, s := range sizes {
		if got := LayerForSize(layers, s.w, s.h); got != s.want {
			t.Errorf("LayerForSize(%dx%d) = %d, want %d", s.w, s.h, got, s.want)
		}
	}
	if got := LayerForSize([]Dims{{}, {640, 360}, {}}, 100, 100); got != 1 {
		t.Errorf("LayerForSize with one described layer = %d, want 1", got)
	}
	if got := LayerForSize(nil, 100, 100); got != -1 {
		t.Errorf("LayerForSize(nil) = %d, want -1", got)
	}
}

// TestSelectorDrain covers a switch down for lack of bandwidth: the
// current layer stops at its next frame start (the frame under way is
// finished), the lower layer's keyframe switches, and draining gives up
// after drainMaxFrames frames or when the wanted layer is no longer lower.
func TestSelectorDrain(t *testing.T) {
	low := Layer{0, AllTemporal}
	start := func(s *Selector, layer int8, key bool, target Layer) Decision {
		return s.Select(PacketInfo{Layer: layer, Keyframe: key, FrameStart: true, TID: -1}, target, all3)
	}
	mid := func(s *Selector, layer int8, target Layer) Decision {
		return s.Select(PacketInfo{Layer: layer, TID: -1}, target, all3)
	}
	s := NewSelector()
	top := Layer{2, AllTemporal}
	if d := start(s, 2, true, top); d.Action != SwitchForward {
		t.Fatalf("start: %v", d.Action)
	}
	s.Drain()
	if d := mid(s, 2, low); d.Action != Forward {
		t.Fatalf("the frame under way: %v, want it finished", d.Action)
	}
	if d := start(s, 2, false, low); d.Action != DropInStream || d.KeyframeFor != 0 {
		t.Fatalf("the next frame: %+v, want dropped in stream and a keyframe asked of layer 0", d)
	}
	if d := mid(s, 2, low); d.Action != DropInStream {
		t.Fatalf("the rest of that frame: %v", d.Action)
	}
	if d := start(s, 0, true, low); d.Action != SwitchForward || s.Current() != 0 {
		t.Fatalf("the lower keyframe: %v (current %d)", d.Action, s.Current())
	}
	if d := start(s, 0, false, low); d.Action != Forward {
		t.Fatalf("after the switch: %v", d.Action)
	}

	// A publisher slow to send the keyframe: the current layer comes back.
	s = NewSelector()
	start(s, 2, true, top)
	s.Drain()
	for i := range drainMaxFrames {
		if d := start(s, 2, false, low); d.Action != DropInStream {
			t.Fatalf("frame %d while draining: %v", i, d.Action)
		}
	}
	if d := start(s, 2, false, low); d.Action != Forward {
		t.Fatalf("after %d frames: %v, want the current layer back", drainMaxFrames, d.Action)
	}

	// The target goes back up: draining ends.
	s = NewSelector()
	start(s, 2, true, top)
	s.Drain()
	start(s, 2, false, low)
	if d := start(s, 2, false, top); d.Action != Forward {
		t.Fatalf("target back up: %v", d.Action)
	}
	// Drain before any layer is forwarded does nothing.
	s = NewSelector()
	s.Drain()
	if d := start(s, 0, true, low); d.Action != SwitchForward {
		t.Fatalf("drain before the start: %v", d.Action)
	}
}
