package simulcast

import (
	"sync"
	"sync/atomic"
	"testing"
)

const (
	ms         = int64(1e6)
	videoClock = 90000
	audioClock = 48000
)

// mungeStep is one call in a munger test: a restart (SwitchLayer) if pause is set, otherwise
// Munge with the input fields and check the outputs (outSeq/outTS only when
// ok is expected).
type mungeStep struct {
	pause   bool
	layer   int // with pause: SwitchLayer(layer-1) when > 0, else SwitchLayer(0) (a pause of layer 0)
	seq     uint16
	ts      uint32
	at      int64 // arrival, ms
	clock   uint32
	pad     bool
	wantSeq uint16
	wantTS  uint32
	wantOK  bool
}

// unmungeCheck is one UnmungeSeq call made after all steps.
type unmungeCheck struct {
	out       uint16
	wantIn    uint16
	wantTO    uint32 // timestamp offset
	wantOK    bool
	wantLayer uint8
}

// fwd is a packet expected to be forwarded unchanged.
func fwd(seq uint16, ts uint32) mungeStep {
	return mungeStep{seq: seq, ts: ts, wantSeq: seq, wantTS: ts, wantOK: true}
}

// to is a packet expected to be forwarded as outSeq/outTS.
func to(seq uint16, ts uint32, outSeq uint16, outTS uint32) mungeStep {
	return mungeStep{seq: seq, ts: ts, wantSeq: outSeq, wantTS: outTS, wantOK: true}
}

// pad is an in-order or late padding-only packet, always dropped.
func pad(seq uint16, ts uint32) mungeStep { return mungeStep{seq: seq, ts: ts, pad: true} }

// drop is a media packet expected to be dropped.
func drop(seq uint16, ts uint32) mungeStep { return mungeStep{seq: seq, ts: ts} }

// at sets the arrival time (ms) and clock rate of a step.
func at(s mungeStep, arrivalMS int64, clock uint32) mungeStep {
	s.at, s.clock = arrivalMS, clock
	return s
}

var pauseStep = mungeStep{pause: true}

// switchTo is a SwitchLayer(layer) call.
func switchTo(layer int) mungeStep { return mungeStep{pause: true, layer: layer + 1} }

// u32 wraps v modulo 2^32, like RTP timestamp arithmetic.
func u32(v int64) uint32 { return uint32(v) }

// mungerTests are the steps and NACK mappings of TestMunger.
var mungerTests = []struct {
	name    string
	steps   []mungeStep
	unmunge []unmungeCheck
}{
	{
		name:    "pass-through",
		steps:   []mungeStep{fwd(100, 1000), fwd(101, 4000), fwd(102, 7000)},
		unmunge: []unmungeCheck{{100, 100, 0, true, 0}, {102, 102, 0, true, 0}, {103, 0, 0, false, 0}, {99, 0, 0, false, 0}},
	},
	{
		name:    "loss gap preserved",
		steps:   []mungeStep{fwd(100, 1000), fwd(101, 1000), fwd(104, 4000), fwd(102, 1000)},
		unmunge: []unmungeCheck{{103, 103, 0, true, 0}},
	},
	{
		name:  "reordering",
		steps: []mungeStep{fwd(100, 1000), fwd(102, 1000), fwd(101, 1000), fwd(103, 4000), fwd(103, 4000)},
	},
	{
		name:    "seq wrap",
		steps:   []mungeStep{fwd(65534, 1), fwd(65535, 2), fwd(1, 4), fwd(0, 3), fwd(2, 5)},
		unmunge: []unmungeCheck{{65534, 65534, 0, true, 0}, {0, 0, 0, true, 0}, {2, 2, 0, true, 0}, {3, 0, 0, false, 0}},
	},
	{
		name: "padding drop across seq wrap",
		steps: []mungeStep{
			fwd(65534, 10), pad(65535, 10), to(0, 20, 65535, 20), to(1, 30, 0, 30),
		},
		unmunge: []unmungeCheck{{65534, 65534, 0, true, 0}, {65535, 0, 0, true, 0}, {0, 1, 0, true, 0}},
	},
	{
		name: "ts wrap",
		steps: []mungeStep{
			fwd(10, 4294964296), fwd(11, 4294967295), fwd(12, 2999), fwd(13, 5999),
		},
	},
	{
		name: "padding dropped without gap, NACK maps across it",
		steps: []mungeStep{
			fwd(10, 100), fwd(11, 100), pad(12, 100), to(13, 200, 12, 200), to(14, 300, 13, 300),
			drop(12, 100), // the dropped padding's seq belongs to no range
		},
		unmunge: []unmungeCheck{
			{10, 10, 0, true, 0}, {11, 11, 0, true, 0}, {12, 13, 0, true, 0}, {13, 14, 0, true, 0}, {14, 0, 0, false, 0},
		},
	},
	{
		name: "padding burst uses one range",
		steps: []mungeStep{
			fwd(10, 100), pad(11, 100), pad(12, 100), pad(13, 100), to(14, 200, 11, 200),
			pad(15, 200), pad(16, 200), to(17, 300, 12, 300),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true, 0}, {11, 14, 0, true, 0}, {12, 17, 0, true, 0}},
	},
	{
		name: "padding after loss keeps the loss gap, late packet fills it",
		steps: []mungeStep{
			fwd(10, 100), pad(12, 100), to(13, 200, 12, 200), fwd(11, 100), to(14, 300, 13, 300),
		},
		unmunge: []unmungeCheck{{11, 11, 0, true, 0}, {12, 13, 0, true, 0}},
	},
	{
		name: "late packet from before a padding drop",
		steps: []mungeStep{
			fwd(10, 100), fwd(11, 100), fwd(13, 200), pad(14, 200), to(15, 300, 14, 300),
			fwd(12, 200), pad(14, 200), to(15, 300, 14, 300),
		},
	},
	{
		name: "late padding dropped",
		steps: []mungeStep{
			fwd(10, 100), fwd(12, 200), pad(11, 100), fwd(13, 300),
		},
		unmunge: []unmungeCheck{{11, 11, 0, true, 0}},
	},
	{
		name:    "first packets padding",
		steps:   []mungeStep{pad(5, 1), pad(6, 1), fwd(7, 1), fwd(8, 2)},
		unmunge: []unmungeCheck{{6, 0, 0, false, 0}, {7, 7, 0, true, 0}},
	},
	{
		name:    "pause before first packet is ignored",
		steps:   []mungeStep{pauseStep, fwd(7, 1), fwd(8, 2)},
		unmunge: []unmungeCheck{{7, 7, 0, true, 0}},
	},
	{
		name: "pause/resume continues seq and ts by elapsed time",
		steps: []mungeStep{
			at(fwd(10, 1000), 0, videoClock), at(fwd(11, 3970), 33, videoClock), pauseStep,
			pad(480, 50000),
			at(to(500, 777777, 12, 3970+90000), 1033, videoClock),
			at(to(501, 780747, 13, 96940), 1066, videoClock),
			drop(499, 774807), // arrived while paused: never forwarded
			fwd(11, 3970),     // late duplicate from before the pause
		},
		unmunge: []unmungeCheck{
			{10, 10, 0, true, 0}, {11, 11, 0, true, 0},
			{12, 500, 777777 - 93970, true, 0}, {13, 501, 777777 - 93970, true, 0}, {14, 0, 0, false, 0},
		},
	},
	{
		name: "resume: audio clock, ts wrap, seq wrap",
		steps: []mungeStep{
			at(fwd(65535, 4294967000), 0, audioClock), pauseStep,
			at(to(300, 5, 0, u32(4294967000+960)), 20, audioClock),
			at(to(301, 965, 1, u32(4294967000+1920)), 40, audioClock),
		},
		unmunge: []unmungeCheck{{65535, 65535, 0, true, 0}, {0, 300, u32(5 - (4294967000 + 960)), true, 0}},
	},
	{
		name: "resume with no elapsed time advances ts by one tick",
		steps: []mungeStep{
			at(fwd(10, 1000), 50, videoClock), pauseStep,
			at(to(20, 9000, 11, 1001), 50, videoClock), pauseStep,
			at(to(10, 5, 12, 1002), 40, videoClock),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true, 0}, {11, 20, 9000 - 1001, true, 0}, {12, 10, u32(5 - 1002), true, 0}},
	},
	{
		name: "resume right after padding reuses the empty range",
		steps: []mungeStep{
			at(fwd(10, 1000), 0, videoClock), at(pad(11, 1000), 10, videoClock), pauseStep,
			at(to(50, 1000, 11, 1000+900), 10, videoClock),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true, 0}, {11, 50, u32(1000 - 1900), true, 0}},
	},
	{
		// Layer 0 (seq 100.., ts 1000..) then layer 2 (seq 5000.., ts
		// 777000..) 100 ms later: output continues at the next number, the
		// timestamp advanced by the 100 ms elapsed.
		name: "switch up to another layer",
		steps: []mungeStep{
			at(fwd(100, 1000), 0, videoClock), at(fwd(101, 4000), 33, videoClock),
			switchTo(2),
			at(to(5000, 777000, 102, 4000+9000), 133, videoClock),
			at(to(5001, 780000, 103, 4000+9000+3000), 166, videoClock),
		},
		unmunge: []unmungeCheck{
			{out: 101, wantIn: 101, wantOK: true},
			{out: 102, wantIn: 5000, wantTO: 777000 - 13000, wantOK: true, wantLayer: 2},
			{out: 104, wantOK: false},
		},
	},
	{
		name: "switch down, then back up",
		steps: []mungeStep{
			switchTo(2),
			at(fwd(500, 90000), 0, videoClock),
			switchTo(0),
			at(to(7, 50, 501, 90000+900), 10, videoClock),
			at(to(8, 3050, 502, 90000+900+3000), 43, videoClock),
			switchTo(1),
			at(to(65000, 1, 503, 90000+900+3000+1800), 63, videoClock),
		},
		unmunge: []unmungeCheck{
			{out: 500, wantIn: 500, wantOK: true, wantLayer: 2},
			{out: 502, wantIn: 8, wantTO: u32(50 - 90900), wantOK: true},
			{out: 503, wantIn: 65000, wantTO: u32(1 - 95700), wantOK: true, wantLayer: 1},
		},
	},
	{
		// A loss just before the switch stays a gap that maps to the old
		// layer; a late packet of the old layer after the switch is not
		// sent (the caller filters other layers) and a loss after the
		// switch maps to the new layer.
		name: "loss and reordering around a switch",
		steps: []mungeStep{
			at(fwd(10, 100), 0, videoClock), at(fwd(12, 100), 1, videoClock),
			switchTo(1),
			at(to(300, 9000, 13, 100+810), 10, videoClock),
			at(to(302, 9000, 15, 910), 11, videoClock),
			at(to(301, 9000, 14, 910), 12, videoClock),
		},
		unmunge: []unmungeCheck{
			{out: 11, wantIn: 11, wantOK: true},
			{out: 14, wantIn: 301, wantTO: 8090, wantOK: true, wantLayer: 1},
			{out: 15, wantIn: 302, wantTO: 8090, wantOK: true, wantLayer: 1},
		},
	},
	{
		name: "sequence and timestamp wrap across a switch",
		steps: []mungeStep{
			at(fwd(65534, 4294967000), 0, videoClock), at(fwd(65535, 4294967000), 1, videoClock),
			at(fwd(0, 1704), 34, videoClock),
			switchTo(1),
			at(to(65535, 4294960000, 1, 1704+900), 44, videoClock),
			at(to(0, 4294963000, 2, 1704+900+3000), 77, videoClock),
		},
		unmunge: []unmungeCheck{
			{out: 65535, wantIn: 65535, wantOK: true},
			{out: 1, wantIn: 65535, wantTO: u32(4294960000 - 2604), wantOK: true, wantLayer: 1},
			{out: 2, wantIn: 0, wantTO: u32(4294960000 - 2604), wantOK: true, wantLayer: 1},
		},
	},
	{
		// Padding and dropped packets (an upper temporal layer) of the new
		// layer leave no gap.
		name: "drops after a switch leave no gap",
		steps: []mungeStep{
			at(fwd(1, 0), 0, videoClock),
			switchTo(2),
			at(to(900, 50000, 2, 90), 1, videoClock),
			pad(901, 50000), pad(902, 50000),
			at(to(903, 53000, 3, 3090), 34, videoClock),
		},
		unmunge: []unmungeCheck{{out: 3, wantIn: 903, wantTO: 49910, wantOK: true, wantLayer: 2}},
	},
}

// rememberedRanges fills every remembered range with a padding drop: the
// oldest range is then forgotten, the others still map.
func rememberedRanges() (steps []mungeStep, unmunge []unmungeCheck) {
	steps = append(steps, fwd(10, 1))
	for i := 0; i < mungerRanges; i++ {
		steps = append(steps, pad(uint16(11+2*i), 1), to(uint16(12+2*i), 1, uint16(11+i), 1))
	}
	steps = append(steps, drop(10, 1), to(12, 1, 11, 1))
	unmunge = []unmungeCheck{{10, 0, 0, false, 0}, {11, 12, 0, true, 0}, {10 + mungerRanges, 10 + 2*mungerRanges, 0, true, 0}}
	return steps, unmunge
}

func TestMunger(t *testing.T) {
	steps, unmunge := rememberedRanges()
	cases := append(mungerTests, struct {
		name    string
		steps   []mungeStep
		unmunge []unmungeCheck
	}{"only the last ranges are remembered", steps, unmunge})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			m := &Munger{}
			for i, s := range tt.steps {
				if s.pause && s.layer > 0 {
					m.SwitchLayer(uint8(s.layer - 1))
					continue
				}
				if s.pause {
					m.SwitchLayer(0)
					continue
				}
				seq, ts, ok := m.Munge(s.seq, s.ts, s.at*ms, s.clock, s.pad)
				if ok != s.wantOK || (ok && (seq != s.wantSeq || ts != s.wantTS)) {
					t.Fatalf("step %d Munge(%d, %d): got (%d, %d, %v), want (%d, %d, %v)",
						i, s.seq, s.ts, seq, ts, ok, s.wantSeq, s.wantTS, s.wantOK)
				}
			}
			for _, u := range tt.unmunge {
				got, ok := m.UnmungeSeq(u.out)
				if ok != u.wantOK || (ok && (got.Seq != u.wantIn || got.TSOffset != u.wantTO || got.Layer != u.wantLayer)) {
					t.Errorf("UnmungeSeq(%d) = (%+v, %v), want (layer %d, %d, %d, %v)",
						u.out, got, ok, u.wantLayer, u.wantIn, u.wantTO, u.wantOK)
				}
			}
		})
	}
}

func TestElapsedTicks(t *testing.T) {
	tests := []struct {
		elapsed int64
		rate    uint32
		want    uint32
	}{
		{0, videoClock, 1}, {-5, videoClock, 1}, {1000 * ms, 0, 1}, {1, videoClock, 1},
		{1000 * ms, videoClock, 90000}, {20 * ms, audioClock, 960}, {1500 * ms, videoClock, 135000},
		{48 * 3600 * 1000 * ms, videoClock, u32(48 * 3600 * 90000)},
	}
	for _, tt := range tests {
		if got := elapsedTicks(tt.elapsed, tt.rate); got != tt.want {
			t.Errorf("elapsedTicks(%d, %d) = %d, want %d", tt.elapsed, tt.rate, got, tt.want)
		}
	}
}

// TestMungerConcurrentUnmunge runs UnmungeSeq against Munge (with padding
// drops and pauses changing the ranges) under -race, and checks that every
// mapping returned is consistent with what Munge produced.
func TestMungerConcurrentUnmunge(t *testing.T) {
	m := &Munger{}
	var sent [1 << 16]atomic.Uint32 // out seq -> in seq + 1 (0: never sent)
	var newestOut atomic.Uint32
	var done atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := r; !done.Load(); i++ {
				out := uint16(newestOut.Load()) - uint16(i%200)
				// Compare only when the writer did not reuse this output
				// number (after a full lap) while UnmungeSeq ran.
				before := sent[out].Load()
				got, ok := m.UnmungeSeq(out)
				if want := sent[out].Load(); ok && want != 0 && want == before && uint16(want-1) != got.Seq {
					t.Errorf("UnmungeSeq(%d) = %d, munged from %d", out, got.Seq, want-1)
					return
				}
			}
		}(r)
	}
	var seq uint16
	for i := 0; i < 100000; i++ {
		seq++
		switch {
		case i%1000 == 999:
			m.SwitchLayer(0)
			seq += 50
		case i%97 == 0:
			m.Munge(seq, uint32(i)*3000, int64(i)*33*ms, videoClock, true)
			continue
		}
		if out, _, ok := m.Munge(seq, uint32(i)*3000, int64(i)*33*ms, videoClock, false); ok {
			sent[out].Store(uint32(seq) + 1)
			newestOut.Store(uint32(out))
		}
	}
	done.Store(true)
	wg.Wait()
}

func BenchmarkMungerMunge(b *testing.B) {
	m := &Munger{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, ok := m.Munge(uint16(i), uint32(i)*3000, int64(i)*33*ms, videoClock, false); !ok {
			b.Fatal("dropped")
		}
	}
}

func BenchmarkMungerUnmungeSeq(b *testing.B) {
	m := &Munger{}
	for i := 0; i < 1000; i++ {
		m.Munge(uint16(i), uint32(i)*3000, int64(i)*33*ms, videoClock, i%100 == 50)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := m.UnmungeSeq(uint16(980 - i%100)); !ok {
			b.Fatal("unmapped")
		}
	}
}

// TestMungerAlignedSwitch checks switches whose timestamp offset comes from
// sender reports: the output keeps the capture timeline whatever the
// arrival times say, unless the alignment is implausible.
func TestMungerAlignedSwitch(t *testing.T) {
	tests := []struct {
		name    string
		delta   uint32 // new layer's timestamps minus the old layer's
		newTS   uint32 // first packet of the new layer
		atMS    int64  // its arrival
		wantTS  uint32
		comment string
	}{
		{"same capture clock, late arrival", 0, 9000, 90, 9000, "arrival alone would say 8160"},
		{"other timestamp base", 1_000_000, 1_009_000, 75, 9000, ""},
		{"base below, wrapping", u32(-500), u32(9000 - 500), 60, 9000, ""},
		{"same instant as the last frame", 0, 6000, 70, 6001, "never repeats or goes back"},
		{"implausible alignment", 45_000_000, 9000, 100, 6000 + 3060, "off by minutes: arrival time instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Munger{}
			// Layer 0: frames every 33 ms at 3000 ticks, 0..6000, output unchanged.
			for i := 0; i < 3; i++ {
				if _, _, ok := m.Munge(uint16(10+i), uint32(3000*i), int64(i)*33*ms, videoClock, false); !ok {
					t.Fatal("dropped")
				}
			}
			m.SwitchLayerAligned(2, tt.delta)
			seq, ts, ok := m.Munge(500, tt.newTS, tt.atMS*ms, videoClock, false)
			if !ok || seq != 13 || ts != tt.wantTS {
				t.Fatalf("first packet of layer 2: seq %d ts %d ok %v, want 13 %d (%s)", seq, ts, ok, tt.wantTS, tt.comment)
			}
			if l, started := m.Layer(); l != 2 || !started {
				t.Errorf("Layer() = %d, %v", l, started)
			}
			got, ok := m.UnmungeSeq(13)
			if !ok || got.Layer != 2 || got.Seq != 500 || tt.newTS-got.TSOffset != tt.wantTS {
				t.Errorf("UnmungeSeq(13) = %+v, %v", got, ok)
			}
		})
	}
}

func TestTimestampDelta(t *testing.T) {
	sec := uint64(1) << 32
	tests := []struct {
		from, to SenderReport
		want     uint32
	}{
		{SenderReport{NTP: 100 * sec, RTP: 1000}, SenderReport{NTP: 100 * sec, RTP: 5000}, 4000},
		// to's report is 0.5 s later: 45000 of its 47000 ticks are time, 2000 base.
		{SenderReport{NTP: 100 * sec, RTP: 1000}, SenderReport{NTP: 100*sec + sec/2, RTP: 48000}, 2000},
		// to's report is earlier, and its base below: wraps.
		{SenderReport{NTP: 100 * sec, RTP: 90000}, SenderReport{NTP: 99 * sec, RTP: 0}, u32(-90000 + 90000)},
		{SenderReport{NTP: 100 * sec, RTP: 90000}, SenderReport{NTP: 99 * sec, RTP: 10}, 10},
	}
	for _, tt := range tests {
		if got := TimestampDelta(tt.from, tt.to, videoClock); got != tt.want {
			t.Errorf("TimestampDelta(%+v, %+v) = %d, want %d", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestMungerInsertPadding checks made-up padding packets: each takes the
// next output number, later packets move up, a late packet keeps its own
// number, a NACK for the padding maps to padding, and a run of padding
// does not use up remembered ranges.
func TestMungerInsertPadding(t *testing.T) {
	m := &Munger{}
	if _, _, ok := m.InsertPadding(); ok {
		t.Fatal("padding before the first packet")
	}
	munge := func(seq uint16, ts uint32) uint16 {
		t.Helper()
		out, _, ok := m.Munge(seq, ts, 0, videoClock, false)
		if !ok {
			t.Fatalf("seq %d dropped", seq)
		}
		return out
	}
	munge(100, 1000)
	munge(102, 4000) // 101 lost
	for i := 0; i < 3*mungerRanges; i++ {
		out, ts, ok := m.InsertPadding()
		if !ok || out != uint16(103+i) || ts != 4000 {
			t.Fatalf("padding %d: %d %d %v", i, out, ts, ok)
		}
	}
	if got := munge(103, 7000); got != 103+3*mungerRanges {
		t.Fatalf("next packet: %d, want %d", got, 103+3*mungerRanges)
	}
	if got := munge(101, 1000); got != 101 {
		t.Errorf("late packet 101 sent as %d, want 101", got)
	}
	for _, out := range []uint16{103, 103 + mungerRanges, 102 + 3*mungerRanges} {
		if u, ok := m.UnmungeSeq(out); !ok || !u.Padding || u.PaddingTS != 4000 {
			t.Errorf("NACK for padding %d maps to %+v %v, want padding at ts 4000", out, u, ok)
		}
	}
	if u, ok := m.UnmungeSeq(103 + 3*mungerRanges); !ok || u.Seq != 103 {
		t.Errorf("NACK after the padding: %+v %v, want input 103", u, ok)
	}
	if u, ok := m.UnmungeSeq(102); !ok || u.Seq != 102 {
		t.Errorf("NACK before the padding: %+v %v, want input 102", u, ok)
	}
}

// TestMungerPaddingSlots checks that a NACK for a made-up padding packet
// (InsertPadding) maps to that padding, with the timestamp it was sent
// with, so that it can be sent again: a receiver that lost it on the way
// otherwise keeps a hole in the sequence for good. Numbers around it still
// map to their input packets, lost ones included.
func TestMungerPaddingSlots(t *testing.T) {
	type op struct {
		seq    uint16 // Munge this input (ts below); 0 with insert or layer
		ts     uint32
		insert bool  // InsertPadding
		layer  uint8 // SwitchLayer(layer-1) when > 0
		pad    bool  // seq is a padding-only input packet
	}
	type check struct {
		out     uint16
		ok      bool
		padding bool
		ts      uint32 // padding's timestamp
		in      uint16 // input packet otherwise
		layer   uint8
	}
	tests := []struct {
		name   string
		ops    []op
		checks []check
	}{
		{
			name: "padding between packets",
			ops:  []op{{seq: 100, ts: 1000}, {seq: 101, ts: 4000}, {insert: true}, {insert: true}, {seq: 102, ts: 7000}},
			checks: []check{
				{out: 101, ok: true, in: 101},
				{out: 102, ok: true, padding: true, ts: 4000},
				{out: 103, ok: true, padding: true, ts: 4000},
				{out: 104, ok: true, in: 102},
				{out: 105},
			},
		},
		{
			name: "padding after a dropped input padding",
			ops:  []op{{seq: 100, ts: 1000}, {seq: 101, pad: true}, {insert: true}, {seq: 102, ts: 4000}},
			checks: []check{
				{out: 101, ok: true, padding: true, ts: 1000},
				{out: 102, ok: true, in: 102},
			},
		},
		{
			name: "padding before a layer switch",
			ops:  []op{{seq: 100, ts: 1000}, {insert: true}, {layer: 2}, {seq: 500, ts: 90000}, {seq: 501, ts: 93000}},
			checks: []check{
				{out: 100, ok: true, in: 100},
				{out: 101, ok: true, padding: true, ts: 1000},
				{out: 102, ok: true, in: 500, layer: 1},
				{out: 103, ok: true, in: 501, layer: 1},
			},
		},
		{
			name: "padding while a packet is missing",
			ops:  []op{{seq: 100, ts: 1000}, {insert: true}, {seq: 102, ts: 7000}},
			checks: []check{
				{out: 101, ok: true, padding: true, ts: 1000},
				{out: 102, ok: true, in: 101}, // lost before the SFU: the cache decides
				{out: 103, ok: true, in: 102},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Munger{}
			for i, o := range tt.ops {
				switch {
				case o.insert:
					if _, _, ok := m.InsertPadding(); !ok {
						t.Fatalf("op %d: InsertPadding refused", i)
					}
				case o.layer > 0:
					m.SwitchLayer(o.layer - 1)
				default:
					m.Munge(o.seq, o.ts, int64(i)*ms, videoClock, o.pad)
				}
			}
			for _, c := range tt.checks {
				got, ok := m.UnmungeSeq(c.out)
				want := Unmunged{Layer: c.layer, Seq: c.in, Padding: c.padding, PaddingTS: c.ts}
				if c.padding {
					want.Layer, want.Seq = 0, 0
				}
				if ok != c.ok || (ok && (got.Padding != want.Padding || got.PaddingTS != want.PaddingTS ||
					(!want.Padding && (got.Seq != want.Seq || got.Layer != want.Layer)))) {
					t.Errorf("UnmungeSeq(%d) = (%+v, %v), want (%+v, %v)", c.out, got, ok, want, c.ok)
				}
			}
		})
	}
}
