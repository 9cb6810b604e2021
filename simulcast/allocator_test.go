package simulcast

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// allocCamRates are the layers of a simulcast camera: 150k, 500k, 1.5M.
var allocCamRates = []uint64{150_000, 500_000, 1_500_000}

// allocTemporalShare is the cumulative share (percent) of each temporal
// layer in a spatial layer's bitrate.
var allocTemporalShare = [AllTemporal + 1]uint64{50, 70, 85, 100}

// allocL is a layer.
func allocL(s, t int8) Layer { return Layer{Spatial: s, Temporal: t} }

// allocAudio is the target of a forwarded audio track.
var allocAudio = Layer{}

// allocCam is a new camera measured per spatial layer only (the whole
// stream: column AllTemporal); rates default to allocCamRates.
func allocCam(id string, rates ...uint64) AllocTrack {
	if rates == nil {
		rates = allocCamRates
	}
	t := AllocTrack{ID: id, Max: allocL(2, AllTemporal), Current: NoLayer}
	for s, r := range rates {
		t.Bitrates[s][AllTemporal] = r
	}
	return t
}

// allocCamT is a new camera with four temporal layers per spatial layer.
func allocCamT(id string, rates ...uint64) AllocTrack {
	if rates == nil {
		rates = allocCamRates
	}
	t := allocCam(id)
	for s, r := range rates {
		for l, p := range allocTemporalShare {
			t.Bitrates[s][l] = r * p / 100
		}
	}
	return t
}

// allocCamRaw is a new camera with the given bitrates.
func allocCamRaw(id string, rates allocRates) AllocTrack {
	t := allocCam(id)
	t.Bitrates = rates
	return t
}

// allocMic is a new audio track.
func allocMic(id string, rate uint64) AllocTrack {
	t := AllocTrack{ID: id, Audio: true, Max: allocL(0, 0), Current: NoLayer}
	t.Bitrates[0][0] = rate
	return t
}

// allocScreen makes t a screen share.
func allocScreen(t AllocTrack) AllocTrack { t.Screen = true; return t }

// allocAt makes t a track the SFU already forwards at l.
func allocAt(t AllocTrack, l Layer) AllocTrack { t.Current = l; return t }

// allocWith sets t's ceiling.
func allocWith(t AllocTrack, ceiling Layer) AllocTrack { t.Max = ceiling; return t }

// allocPrio sets t's priority.
func allocPrio(t AllocTrack, p int) AllocTrack { t.Priority = p; return t }

func TestAllocatorPicksLayers(t *testing.T) {
	tests := []struct {
		name      string
		est       uint64
		tracks    []AllocTrack
		want      []Layer
		used      uint64
		deficient bool
	}{
		{"audio is reserved before video", 510_000,
			[]AllocTrack{allocMic("m", 32_000), allocCam("a")},
			[]Layer{allocAudio, allocL(0, 3)}, 182_000, true},
		{"audio is never paused", 10_000,
			[]AllocTrack{allocMic("m", 32_000), allocCam("a")},
			[]Layer{allocAudio, NoLayer}, 32_000, true},
		{"below the lowest layer only audio flows", 130_000,
			[]AllocTrack{allocMic("m1", 32_000), allocCam("c"), allocScreen(allocCam("s")),
				allocMic("m2", 32_000), allocCamT("d")},
			[]Layer{allocAudio, NoLayer, NoLayer, allocAudio, NoLayer}, 64_000, true},
		{"screen share first, cameras share the rest", 1_200_000,
			[]AllocTrack{allocCam("b"), allocMic("m", 32_000), allocCam("a"), allocScreen(allocCam("s"))},
			[]Layer{allocL(0, 3), allocAudio, allocL(1, 3), allocL(1, 3)}, 1_182_000, true},
		{"higher priority before lower", 700_000,
			[]AllocTrack{allocCam("a"), allocPrio(allocCam("b"), 5)},
			[]Layer{allocL(0, 3), allocL(1, 3)}, 650_000, true},
		{"new tracks start at their best layer at once", 4_000_000,
			[]AllocTrack{allocMic("m", 32_000), allocCam("a"), allocCamT("b")},
			[]Layer{allocAudio, allocL(2, 3), allocL(2, 3)}, 3_032_000, false},
		{"spatial ceiling", 5_000_000,
			[]AllocTrack{allocWith(allocCam("a"), allocL(1, AllTemporal))},
			[]Layer{allocL(1, 3)}, 500_000, false},
		{"temporal ceiling", 5_000_000,
			[]AllocTrack{allocWith(allocCamT("a"), allocL(2, 1))},
			[]Layer{allocL(2, 1)}, 1_050_000, false},
		{"ceiling with all temporal layers as -1", 5_000_000,
			[]AllocTrack{allocWith(allocCamT("a"), allocL(0, -1))},
			[]Layer{allocL(0, 3)}, 150_000, false},
		{"unavailable layers are skipped", 1_000_000,
			[]AllocTrack{allocCam("a", 150_000, 0, 1_500_000)},
			[]Layer{allocL(0, 3)}, 150_000, true},
		{"only layers above the ceiling: the lowest of them", 5_000_000,
			[]AllocTrack{allocWith(allocCam("a", 0, 500_000, 1_500_000), allocL(0, AllTemporal))},
			[]Layer{allocL(1, 3)}, 500_000, false},
		{"disabled track gets nothing and uses nothing", 2_000_000,
			[]AllocTrack{allocMic("m", 32_000), allocWith(allocCam("a"), NoLayer), allocCam("b"),
				allocWith(allocMic("n", 40_000), NoLayer)},
			[]Layer{allocAudio, NoLayer, allocL(2, 3), NoLayer}, 1_532_000, false},
		{"nothing received yet", 2_000_000,
			[]AllocTrack{allocCam("a", 0, 0, 0)},
			[]Layer{NoLayer}, 0, false},
		{"screen share: resolution before frame rate", 300_000,
			[]AllocTrack{allocScreen(allocCamT("a"))},
			[]Layer{allocL(1, 0)}, 250_000, true},
		{"camera: half the frame rate at most, before resolution", 300_000,
			[]AllocTrack{allocCamT("a")},
			[]Layer{allocL(0, 3)}, 150_000, true},
		{"camera: half the frame rate of an upper layer", 450_000,
			[]AllocTrack{allocCamT("a")},
			[]Layer{allocL(1, 2)}, 425_000, true},
		{"camera: a quarter of the frame rate in the lowest layer", 80_000,
			[]AllocTrack{allocCamT("a")},
			[]Layer{allocL(0, 0)}, 75_000, true},
		{"a known track goes up one step at a time", 5_000_000,
			[]AllocTrack{allocAt(allocCamT("a"), allocL(1, 2))},
			[]Layer{allocL(1, 3)}, 500_000, true},
		{"a codec without temporal layers: equal columns are one step", 600_000,
			[]AllocTrack{allocCamRaw("a", allocRates{{150_000, 150_000, 150_000, 150_000}, {500_000, 500_000, 500_000, 500_000}})},
			[]Layer{allocL(1, 3)}, 500_000, false},
		{"a layer costing more than a better one is skipped", 320_000,
			[]AllocTrack{allocScreen(allocCamRaw("a", allocRates{{100_000, 150_000, 200_000, 300_000}, {250_000, 350_000, 425_000, 500_000}}))},
			[]Layer{allocL(1, 0)}, 250_000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewAllocator(AllocatorConfig{}).Allocate(0, tt.est, tt.tracks)
			if !slices.Equal(got.Targets, tt.want) || got.Used != tt.used || got.Deficient != tt.deficient {
				t.Errorf("got %v used %d deficient %v, want %v used %d deficient %v",
					got.Targets, got.Used, got.Deficient, tt.want, tt.used, tt.deficient)
			}
		})
	}
}

// allocStep is a run of Allocate calls of a scenario, every allocTick
// from at to until (or one call at at), all expecting want and probe. The
// SFU applies the targets (Current follows them).
type allocStep struct {
	at, until time.Duration
	est       uint64
	edit      func([]AllocTrack) []AllocTrack // optional, before the first call
	want      []Layer
	probe     uint64
}

// allocTick is the period of the calls in a run.
const allocTick = 250 * time.Millisecond

// allocSetMax changes the ceiling of track i.
func allocSetMax(i int, l Layer) func([]AllocTrack) []AllocTrack {
	return func(ts []AllocTrack) []AllocTrack { ts[i].Max = l; return ts }
}

// allocSetRate changes a measured bitrate of track i.
func allocSetRate(i int, s, l int8, v uint64) func([]AllocTrack) []AllocTrack {
	return func(ts []AllocTrack) []AllocTrack { ts[i].Bitrates[s][l] = v; return ts }
}

// allocAdd appends a track.
func allocAdd(t AllocTrack) func([]AllocTrack) []AllocTrack {
	return func(ts []AllocTrack) []AllocTrack { return append(ts, t) }
}

// allocKeep keeps the first n tracks.
func allocKeep(n int) func([]AllocTrack) []AllocTrack {
	return func(ts []AllocTrack) []AllocTrack { return ts[:n] }
}

// allocCall is one call of a scenario expecting the targets want.
func allocCall(at time.Duration, est uint64, want ...Layer) allocStep {
	return allocStep{at: at, est: est, want: want}
}

// to repeats the call every allocTick until until.
func (st allocStep) to(until time.Duration) allocStep { st.until = until; return st }

// probing expects Probe to be p.
func (st allocStep) probing(p uint64) allocStep { st.probe = p; return st }

// after edits the tracks before the call.
func (st allocStep) after(edit func([]AllocTrack) []AllocTrack) allocStep { st.edit = edit; return st }

// allocAV is a call of a scenario with one audio and one video track.
func allocAV(at time.Duration, est uint64, v Layer) allocStep {
	return allocCall(at, est, allocAudio, v)
}

const (
	allocMs = time.Millisecond
	allocS  = time.Second
)

// allocRaw judges the raw inputs: no window, so no noise margin.
var allocRaw = AllocatorConfig{Window: -1}

var allocScenarios = []struct {
	name   string
	cfg    AllocatorConfig
	tracks []AllocTrack
	steps  []allocStep
}{
	{"downgrade at once, as far as needed", allocRaw,
		[]AllocTrack{allocAt(allocScreen(allocCamT("a")), allocL(2, 3))},
		[]allocStep{
			allocCall(0, 3_000_000, allocL(2, 3)),
			allocCall(250*allocMs, 400_000, allocL(1, 1)),
			allocCall(500*allocMs, 200_000, allocL(0, 3)),
			allocCall(750*allocMs, 50_000, NoLayer),
		}},
	{"upgrade after the hold, one step per call", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocScreen(allocCamT("a")), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 3_000_000, allocL(2, 3)),
			allocAV(1*allocS, 600_000, allocL(1, 3)),
			allocAV(2*allocS, 3_000_000, allocL(1, 3)).to(5750 * allocMs), // hold: no probe either
			allocAV(6*allocS, 3_000_000, allocL(2, 0)),                    // 5 s after the downgrade
			allocAV(6250*allocMs, 3_000_000, allocL(2, 1)),
			allocAV(6500*allocMs, 3_000_000, allocL(2, 2)),
			allocAV(6750*allocMs, 3_000_000, allocL(2, 3)).to(8 * allocS),
		}},
	{"upgrade needs the headroom; the step is probed for", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(1, 3))},
		[]allocStep{
			// (32k + 1.5M) * 1.1 = 1.6852M
			allocAV(0, 1_600_000, allocL(1, 3)).to(1 * allocS).probing(1_685_200),
			allocAV(1250*allocMs, 1_685_000, allocL(1, 3)).probing(1_685_200),
			allocAV(1500*allocMs, 1_685_200, allocL(2, 3)),
			allocAV(1750*allocMs, 1_600_000, allocL(2, 3)), // fits without headroom: kept
			allocAV(1875*allocMs, 1_400_000, allocL(2, 3)), // within the keep tolerance: kept
			allocAV(2*allocS, 1_350_000, allocL(1, 3)),
		}},
	{"a failed layer needs the headroom once more, after twice the hold", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(1, 3))},
		[]allocStep{
			allocAV(0, 1_700_000, allocL(2, 3)),
			allocAV(1*allocS, 1_350_000, allocL(1, 3)), // within the trial
			// The failure doubled the hold: 10 s, not 5, without a probe.
			allocAV(6*allocS, 1_700_000, allocL(1, 3)).to(10900 * allocMs),
			// 1.532M * 1.1 * 1.1
			allocAV(11*allocS, 1_700_000, allocL(1, 3)).to(12 * allocS).probing(1_853_720),
			allocAV(12250*allocMs, 1_853_720, allocL(2, 3)),
		}},
	{"a step that waited long needs the headroom once more", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(1, 3))},
		[]allocStep{
			allocAV(0, 1_600_000, allocL(1, 3)).to(19750 * allocMs).probing(1_685_200),
			allocAV(20*allocS, 1_700_000, allocL(1, 3)).to(21 * allocS).probing(1_853_720),
			allocAV(21250*allocMs, 1_853_720, allocL(2, 3)),
		}},
	{"a paused track resumes after the hold, from the bottom", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 3_000_000, allocL(2, 3)),
			allocAV(1*allocS, 100_000, NoLayer),
			allocAV(2*allocS, 3_000_000, NoLayer).to(5750 * allocMs),
			allocAV(6*allocS, 3_000_000, allocL(0, 3)),
			allocAV(6250*allocMs, 3_000_000, allocL(1, 3)),
			allocAV(6500*allocMs, 3_000_000, allocL(2, 3)),
		}},
	{"a screen share's upgrade pushes cameras down; a drop takes cameras first", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(1, 3)), allocAt(allocCam("b"), allocL(1, 3)),
			allocAt(allocScreen(allocCam("s")), allocL(1, 3))},
		[]allocStep{
			allocCall(0, 2_200_000, allocAudio, allocL(0, 3), allocL(0, 3), allocL(2, 3)).to(4750 * allocMs),
			// After the cameras' hold: (1.832M + 350k) * 1.1
			allocCall(5*allocS, 2_200_000, allocAudio, allocL(0, 3), allocL(0, 3), allocL(2, 3)).probing(2_400_200),
			allocCall(6*allocS, 600_000, allocAudio, NoLayer, NoLayer, allocL(1, 3)),
		}},
	{"new tracks start at once, also when their layers arrive late", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 5_000_000, allocL(2, 3)),
			allocCall(10*allocS, 5_000_000, allocAudio, allocL(2, 3), allocL(2, 3)).after(allocAdd(allocCam("b"))),
			allocCall(10250*allocMs, 5_000_000, allocAudio, allocL(2, 3), allocL(2, 3), NoLayer).
				after(allocAdd(allocCam("c", 0, 0, 0))),
			allocCall(10500*allocMs, 5_000_000, allocAudio, allocL(2, 3), allocL(2, 3), allocL(0, 3)).
				after(allocSetRate(3, 0, 3, 150_000)),
			allocCall(10750*allocMs, 5_000_000, allocAudio, allocL(2, 3), allocL(2, 3), allocL(2, 3)).
				after(allocSetRate(3, 2, 3, 1_500_000)),
		}},
	{"a new track takes a fair share from its class", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 2_000_000, allocL(2, 3)),
			allocCall(1*allocS, 2_000_000, allocAudio, allocL(1, 3), allocL(1, 3)).after(allocAdd(allocCam("b"))),
		}},
	{"a vanished layer: down at once, back without hold", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 3_000_000, allocL(2, 3)),
			allocAV(1*allocS, 3_000_000, allocL(1, 3)).after(allocSetRate(1, 2, 3, 0)),
			allocAV(1250*allocMs, 3_000_000, allocL(2, 3)).after(allocSetRate(1, 2, 3, 1_500_000)),
		}},
	{"ceiling: down at once, up one step per call without hold", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocScreen(allocCamT("a")), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 5_000_000, allocL(2, 3)),
			allocAV(1*allocS, 5_000_000, allocL(0, 3)).after(allocSetMax(1, allocL(0, 3))),
			allocAV(1250*allocMs, 5_000_000, allocL(1, 0)).after(allocSetMax(1, allocL(2, 3))),
			allocAV(1500*allocMs, 5_000_000, allocL(1, 1)),
			allocAV(1750*allocMs, 5_000_000, NoLayer).after(allocSetMax(1, NoLayer)),
			allocAV(2*allocS, 5_000_000, allocL(2, 3)).after(allocSetMax(1, allocL(2, 3))), // re-enabled: new
		}},
	{"a removed track is forgotten: back, it starts at once", allocRaw,
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocCam("a"), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 3_000_000, allocL(2, 3)),
			allocAV(1*allocS, 100_000, NoLayer),
			allocCall(1250*allocMs, 3_000_000, allocAudio).after(allocKeep(1)),
			allocAV(1500*allocMs, 3_000_000, allocL(2, 3)).after(allocAdd(allocCam("a"))),
		}},
	{"a track the allocator has not seen continues from Current", allocRaw,
		[]AllocTrack{allocAt(allocScreen(allocCamT("a")), allocL(1, 3)), allocAt(allocScreen(allocCamT("b")), allocL(0, 5))},
		[]allocStep{
			// b's Current is no valid layer: the best step below it.
			allocCall(0, 5_000_000, allocL(2, 0), allocL(1, 0)),
		}},
	{"window: a drop trims below the estimate's lowest; the upgrade waits for the low", AllocatorConfig{},
		[]AllocTrack{allocMic("m", 32_000), allocAt(allocScreen(allocCamT("a")), allocL(2, 3))},
		[]allocStep{
			allocAV(0, 3_000_000, allocL(2, 3)).to(4750 * allocMs),
			// A drop trims to the lowest less a sixteenth (469k), not an
			// eighth: {1,3} and audio need 532k, {1,2} and audio 457k.
			allocAV(5*allocS, 500_000, allocL(1, 2)),
			allocAV(5250*allocMs, 3_000_000, allocL(1, 2)).to(9750 * allocMs), // hold
			// The window still holds the drop: probe (32k + 500k) * 1.1.
			allocAV(10*allocS, 3_000_000, allocL(1, 2)).to(11750 * allocMs).probing(585_200),
			allocAV(12*allocS, 3_000_000, allocL(1, 3)),
			allocAV(12250*allocMs, 3_000_000, allocL(2, 0)),
			allocAV(12500*allocMs, 3_000_000, allocL(2, 1)),
			allocAV(12750*allocMs, 3_000_000, allocL(2, 2)),
			allocAV(13*allocS, 3_000_000, allocL(2, 3)).to(14 * allocS),
		}},
	{"window: a layer's bitrate counts at its peak", AllocatorConfig{},
		[]AllocTrack{allocAt(allocCam("a"), allocL(1, 3))},
		[]allocStep{
			allocCall(0, 600_000, allocL(1, 3)).to(4750 * allocMs).probing(1_650_000),
			allocCall(5*allocS, 600_000, allocL(0, 3)).after(allocSetRate(0, 1, 3, 700_000)),
			allocCall(5250*allocMs, 600_000, allocL(0, 3)).to(9750 * allocMs).after(allocSetRate(0, 1, 3, 500_000)), // hold
			// Back to 500k, but 700k counts until the window forgets it.
			allocCall(10*allocS, 600_000, allocL(0, 3)).to(11750 * allocMs).probing(770_000),
			allocCall(12*allocS, 600_000, allocL(1, 3)),
			allocCall(12250*allocMs, 600_000, allocL(1, 3)).probing(1_650_000),
		}},
}

func TestAllocatorOverTime(t *testing.T) {
	for _, tt := range allocScenarios {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAllocator(tt.cfg)
			tracks := slices.Clone(tt.tracks)
			for i, st := range tt.steps {
				if st.edit != nil {
					tracks = st.edit(tracks)
				}
				for at := st.at; at <= max(st.at, st.until); at += allocTick {
					got := a.Allocate(int64(at), st.est, tracks)
					if !slices.Equal(got.Targets, st.want) || got.Probe != st.probe {
						t.Fatalf("step %d at %v (%d bit/s): got %v probe %d, want %v probe %d",
							i, at, st.est, got.Targets, got.Probe, st.want, st.probe)
					}
					for j := range tracks {
						tracks[j].Current = got.Targets[j]
					}
				}
			}
			if len(a.tracks) != len(tracks) {
				t.Errorf("remembers %d tracks, want %d", len(a.tracks), len(tracks))
			}
		})
	}
}

// allocNoisyRoom is a room as one subscriber sees it: two microphones, a
// screen share and three cameras (one of them with priority), all with
// temporal layers.
func allocNoisyRoom() []AllocTrack {
	return []AllocTrack{
		allocMic("m1", 32_000), allocMic("m2", 48_000),
		allocScreen(allocCamT("s", 300_000, 800_000, 2_000_000)),
		allocCamT("a"), allocPrio(allocCamT("b"), 1), allocCamT("c", 120_000, 400_000, 1_200_000),
	}
}

// TestAllocatorNoOscillation runs a room for 1000 calls on an estimate and
// layer bitrates that are all noisy (uniform ±10%, independent per call)
// and counts the target changes once settled (40 s).
func TestAllocatorNoOscillation(t *testing.T) {
	const calls = 1000
	for _, period := range []time.Duration{100 * allocMs, 250 * allocMs, time.Second} {
		for _, est := range []uint64{250_000, 600_000, 1_100_000, 1_700_000, 2_600_000, 3_300_000, 4_200_000, 6_000_000} {
			t.Run(fmt.Sprintf("%v/%dk", period, est/1000), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(est, uint64(period)))
				noise := func(v uint64) uint64 { return uint64(float64(v) * (0.9 + 0.2*rng.Float64())) }
				a := NewAllocator(AllocatorConfig{})
				base := allocNoisyRoom()
				tracks := slices.Clone(base)
				settle := int(40 * time.Second / period)
				changes, last := 0, -1
				for i := range calls {
					for j := range tracks {
						for s := range tracks[j].Bitrates {
							for l := range tracks[j].Bitrates[s] {
								tracks[j].Bitrates[s][l] = noise(base[j].Bitrates[s][l])
							}
						}
					}
					got := a.Allocate(int64(i)*int64(period), noise(est), tracks)
					for j := range tracks {
						if got.Targets[j] != tracks[j].Current {
							tracks[j].Current = got.Targets[j]
							last = i
							if i >= settle {
								changes++
							}
						}
					}
				}
				if changes != 0 {
					t.Errorf("%d target changes after call %d (last at %d)", changes, settle, last)
				}
				t.Logf("last change at call %d: %v", last, allocLayers(tracks))
			})
		}
	}
}

// allocLayers lists the forwarded layers.
func allocLayers(ts []AllocTrack) []Layer {
	out := make([]Layer, len(ts))
	for i := range ts {
		out[i] = ts[i].Current
	}
	return out
}

func TestAllocatorSteadyInputs(t *testing.T) {
	a := NewAllocator(AllocatorConfig{})
	tracks := allocNoisyRoom()
	var first Allocation
	for i := range 200 {
		got := a.Allocate(int64(i)*int64(100*allocMs), 2_000_000, tracks)
		for j := range tracks {
			tracks[j].Current = got.Targets[j]
		}
		switch {
		case i == 0:
			first = got
		case !slices.Equal(got.Targets, first.Targets) || got.Used != first.Used:
			t.Fatalf("call %d: %v (%d), first %v (%d)", i, got.Targets, got.Used, first.Targets, first.Used)
		}
	}
	if first.Used > 2_000_000 || !first.Deficient {
		t.Errorf("used %d of 2M, deficient %v", first.Used, first.Deficient)
	}
}

func TestAllocatorConfig(t *testing.T) {
	tests := []struct {
		cfg         AllocatorConfig
		hold        time.Duration
		headroom    uint64
		half, trial time.Duration
	}{
		{AllocatorConfig{}, DefaultUpgradeHold, 1100, DefaultAllocWindow / 2, DefaultUpgradeTrial},
		{AllocatorConfig{UpgradeHold: -1, UpgradeHeadroom: 0.5, Window: -1, UpgradeTrial: -1}, 0, 1000, 0, 0},
		{AllocatorConfig{UpgradeHeadroom: math.NaN()}, DefaultUpgradeHold, 1000, DefaultAllocWindow / 2, DefaultUpgradeTrial},
		{AllocatorConfig{UpgradeHold: time.Second, UpgradeHeadroom: 1.25, Window: time.Second, UpgradeTrial: time.Minute},
			time.Second, 1250, time.Second / 2, time.Minute},
	}
	for _, tt := range tests {
		a := NewAllocator(tt.cfg)
		if a.hold != int64(tt.hold) || a.headroom != tt.headroom || a.half != int64(tt.half) || a.trial != int64(tt.trial) {
			t.Errorf("%+v: hold %d headroom %d half %d trial %d", tt.cfg, a.hold, a.headroom, a.half, a.trial)
		}
	}
}

func TestAllocRange(t *testing.T) {
	type add struct {
		at     time.Duration
		v      uint64
		lo, hi uint64
	}
	const half = int64(2 * time.Second)
	var steps []add
	for i := range allocBucketSamples { // a half window of 16 values: 100, 110, 100, ...
		steps = append(steps, add{time.Duration(i) * allocTick, 100 + uint64(i%2)*10, 100, 100 + uint64(min(i, 1))*10})
	}
	steps = append(steps,
		add{4 * allocS, 200, 100, 200},            // a new half; the old one still counts
		add{4*allocS + allocTick, 50, 50, 200},    // 5 values: no new half yet
		add{6500 * allocMs, 70, 70, 70},           // a gap of more than half a window: afresh
		add{6 * allocS, 90, 90, 90},               // time went back: afresh
		add{6*allocS + 2*allocTick, 80, 80, 90},   // same half
		add{6*allocS + 4*allocTick, 85, 80, 90},   // still 3 values: same half
		add{6*allocS + 6*allocTick, 300, 80, 300}, // 4 values
	)
	var r allocRange
	for i, st := range steps {
		if lo, hi := r.add(int64(st.at), st.v, half); lo != st.lo || hi != st.hi {
			t.Fatalf("step %d (%v, %d): got %d..%d, want %d..%d", i, st.at, st.v, lo, hi, st.lo, st.hi)
		}
	}
}

func TestAllocScale(t *testing.T) {
	tests := []struct {
		x, num, den uint64
		up          bool
		want        uint64
	}{
		{1_532_000, 1100, 1000, true, 1_685_200},
		{1_000_001, 1100, 1000, true, 1_100_002},
		{1_000_001, 1100, 1000, false, 1_100_001},
		{2_000_000, 1000, 1100, false, 1_818_181},
		{1 << 62, 1100, 1000, false, 1<<62 + 1<<62/10},
		{1 << 63, 1100, 1000, false, 1<<63 + 1<<63/10},
		{^uint64(0), 1000, 1000, true, ^uint64(0)},
		{^uint64(0), 1001, 1000, false, ^uint64(0)},
	}
	for _, tt := range tests {
		if got := allocScale(tt.x, tt.num, tt.den, tt.up); got != tt.want {
			t.Errorf("allocScale(%d, %d, %d, %v) = %d, want %d", tt.x, tt.num, tt.den, tt.up, got, tt.want)
		}
	}
}

func BenchmarkAllocate(b *testing.B) {
	var tracks []AllocTrack
	for i := range 4 {
		tracks = append(tracks, allocMic(fmt.Sprintf("TR_mic%d", i), 40_000))
	}
	tracks = append(tracks, allocScreen(allocCamT("TR_screen", 300_000, 800_000, 2_000_000)))
	for i := range 15 {
		tracks = append(tracks, allocCamT(fmt.Sprintf("TR_cam%02d", i)))
	}
	for _, bc := range []struct {
		name string
		est  func(i int) uint64
	}{
		{"steady", func(int) uint64 { return 6_000_000 }},
		{"changing", func(i int) uint64 { return 3_000_000 + uint64(i%40)*200_000 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAllocator(AllocatorConfig{})
			ts := slices.Clone(tracks)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				got := a.Allocate(int64(i)*int64(250*allocMs), bc.est(i), ts)
				for j := range ts {
					ts[j].Current = got.Targets[j]
				}
				i++
			}
		})
	}
}

// TestAllocatorTrustEstimate checks that an estimate a probe confirmed is
// used at once: without TrustEstimate the upgrade waits for the lower
// values of the window to age out.
func TestAllocatorTrustEstimate(t *testing.T) {
	for _, trust := range []bool{false, true} {
		a := NewAllocator(AllocatorConfig{})
		tracks := []AllocTrack{allocCam("cam")}
		now := int64(0)
		for range 30 { // settled on MEDIUM at 1 Mbit/s
			now += int64(100 * time.Millisecond)
			a.Allocate(now, 1_000_000, tracks)
		}
		out := a.Allocate(now, 1_000_000, tracks)
		if out.Targets[0] != allocL(1, AllTemporal) || out.Probe == 0 {
			t.Fatalf("before the probe: %v, probe %d", out.Targets, out.Probe)
		}
		if trust {
			a.TrustEstimate()
		}
		now += int64(100 * time.Millisecond)
		out = a.Allocate(now, 2*out.Probe, tracks)
		if got, want := out.Targets[0] == allocL(2, AllTemporal), trust; got != want {
			t.Errorf("trust %v: after the probe %v", trust, out.Targets)
		}
	}
}

// TestAllocatorRefresh checks that a track whose ceiling the subscriber
// raised goes straight to the best layer that fits, not one step per call.
func TestAllocatorRefresh(t *testing.T) {
	for _, refresh := range []bool{false, true} {
		a := NewAllocator(AllocatorConfig{})
		low := allocWith(allocCamT("cam"), allocL(0, AllTemporal))
		now := int64(0)
		for range 5 {
			now += int64(100 * time.Millisecond)
			a.Allocate(now, 5_000_000, []AllocTrack{low})
		}
		if refresh {
			a.Refresh("cam")
		}
		now += int64(100 * time.Millisecond)
		out := a.Allocate(now, 5_000_000, []AllocTrack{allocCamT("cam")})
		if got, want := out.Targets[0] == allocL(2, AllTemporal), refresh; got != want {
			t.Errorf("refresh %v: after raising the ceiling %v", refresh, out.Targets)
		}
	}
}

// TestAllocatorProbeAll checks that a track two steps below its best
// reports, beside the next step's probe, the estimate its best step needs.
func TestAllocatorProbeAll(t *testing.T) {
	a := NewAllocator(AllocatorConfig{})
	tracks := []AllocTrack{allocCam("cam")}
	now := int64(0)
	var out Allocation
	for range 30 { // settled on LOW
		now += int64(100 * time.Millisecond)
		out = a.Allocate(now, allocCamRates[0]*3/2, tracks)
	}
	if out.Targets[0] != allocL(0, AllTemporal) || out.Probe == 0 {
		t.Fatalf("settled on %v, probe %d", out.Targets, out.Probe)
	}
	if want := a.needs(allocCamRates[2], 0); out.ProbeAll != want || out.ProbeAll <= out.Probe {
		t.Errorf("ProbeAll %d, want %d (above the next step's %d)", out.ProbeAll, want, out.Probe)
	}
}

// TestAllocateDoesNotAllocate checks that an allocation step, which runs
// every 100 ms and on every drop of the estimate for each subscriber
// connection, reuses its memory.
func TestAllocateDoesNotAllocate(t *testing.T) {
	a := NewAllocator(AllocatorConfig{})
	tracks := []AllocTrack{allocMic("TR_mic", 40_000), allocScreen(allocCamT("TR_screen", 300_000, 800_000, 2_000_000)), allocCamT("TR_cam")}
	i := 0
	step := func() {
		got := a.Allocate(int64(i)*int64(250*allocMs), 1_000_000+uint64(i%8)*400_000, tracks)
		for j := range tracks {
			tracks[j].Current = got.Targets[j]
		}
		i++
	}
	step() // the first call sizes the buffers
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("%.1f allocations per Allocate, want 0", n)
	}
}
