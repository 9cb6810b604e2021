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

// mungeStep is one call in a munger test: Pause if pause is set, otherwise
// Munge with the input fields and check the outputs (outSeq/outTS only when
// ok is expected).
type mungeStep struct {
	pause   bool
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
	out    uint16
	wantIn uint16
	wantTO uint32 // timestamp offset
	wantOK bool
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
		unmunge: []unmungeCheck{{100, 100, 0, true}, {102, 102, 0, true}, {103, 0, 0, false}, {99, 0, 0, false}},
	},
	{
		name:    "loss gap preserved",
		steps:   []mungeStep{fwd(100, 1000), fwd(101, 1000), fwd(104, 4000), fwd(102, 1000)},
		unmunge: []unmungeCheck{{103, 103, 0, true}},
	},
	{
		name:  "reordering",
		steps: []mungeStep{fwd(100, 1000), fwd(102, 1000), fwd(101, 1000), fwd(103, 4000), fwd(103, 4000)},
	},
	{
		name:    "seq wrap",
		steps:   []mungeStep{fwd(65534, 1), fwd(65535, 2), fwd(1, 4), fwd(0, 3), fwd(2, 5)},
		unmunge: []unmungeCheck{{65534, 65534, 0, true}, {0, 0, 0, true}, {2, 2, 0, true}, {3, 0, 0, false}},
	},
	{
		name: "padding drop across seq wrap",
		steps: []mungeStep{
			fwd(65534, 10), pad(65535, 10), to(0, 20, 65535, 20), to(1, 30, 0, 30),
		},
		unmunge: []unmungeCheck{{65534, 65534, 0, true}, {65535, 0, 0, true}, {0, 1, 0, true}},
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
			{10, 10, 0, true}, {11, 11, 0, true}, {12, 13, 0, true}, {13, 14, 0, true}, {14, 0, 0, false},
		},
	},
	{
		name: "padding burst uses one range",
		steps: []mungeStep{
			fwd(10, 100), pad(11, 100), pad(12, 100), pad(13, 100), to(14, 200, 11, 200),
			pad(15, 200), pad(16, 200), to(17, 300, 12, 300),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true}, {11, 14, 0, true}, {12, 17, 0, true}},
	},
	{
		name: "padding after loss keeps the loss gap, late packet fills it",
		steps: []mungeStep{
			fwd(10, 100), pad(12, 100), to(13, 200, 12, 200), fwd(11, 100), to(14, 300, 13, 300),
		},
		unmunge: []unmungeCheck{{11, 11, 0, true}, {12, 13, 0, true}},
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
		unmunge: []unmungeCheck{{11, 11, 0, true}},
	},
	{
		name:    "first packets padding",
		steps:   []mungeStep{pad(5, 1), pad(6, 1), fwd(7, 1), fwd(8, 2)},
		unmunge: []unmungeCheck{{6, 0, 0, false}, {7, 7, 0, true}},
	},
	{
		name:    "pause before first packet is ignored",
		steps:   []mungeStep{pauseStep, fwd(7, 1), fwd(8, 2)},
		unmunge: []unmungeCheck{{7, 7, 0, true}},
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
			{10, 10, 0, true}, {11, 11, 0, true},
			{12, 500, 777777 - 93970, true}, {13, 501, 777777 - 93970, true}, {14, 0, 0, false},
		},
	},
	{
		name: "resume: audio clock, ts wrap, seq wrap",
		steps: []mungeStep{
			at(fwd(65535, 4294967000), 0, audioClock), pauseStep,
			at(to(300, 5, 0, u32(4294967000+960)), 20, audioClock),
			at(to(301, 965, 1, u32(4294967000+1920)), 40, audioClock),
		},
		unmunge: []unmungeCheck{{65535, 65535, 0, true}, {0, 300, u32(5 - (4294967000 + 960)), true}},
	},
	{
		name: "resume with no elapsed time advances ts by one tick",
		steps: []mungeStep{
			at(fwd(10, 1000), 50, videoClock), pauseStep,
			at(to(20, 9000, 11, 1001), 50, videoClock), pauseStep,
			at(to(10, 5, 12, 1002), 40, videoClock),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true}, {11, 20, 9000 - 1001, true}, {12, 10, u32(5 - 1002), true}},
	},
	{
		name: "resume right after padding reuses the empty range",
		steps: []mungeStep{
			at(fwd(10, 1000), 0, videoClock), at(pad(11, 1000), 10, videoClock), pauseStep,
			at(to(50, 1000, 11, 1000+900), 10, videoClock),
		},
		unmunge: []unmungeCheck{{10, 10, 0, true}, {11, 50, u32(1000 - 1900), true}},
	},
	{
		name: "only the last ranges are remembered",
		steps: []mungeStep{
			fwd(10, 1), pad(11, 1), to(12, 1, 11, 1), pad(13, 1), to(14, 1, 12, 1),
			pad(15, 1), to(16, 1, 13, 1), pad(17, 1), to(18, 1, 14, 1),
			pad(19, 1), to(20, 1, 15, 1), pad(21, 1), to(22, 1, 16, 1),
			pad(23, 1), to(24, 1, 17, 1), pad(25, 1), to(26, 1, 18, 1),
			drop(10, 1), to(12, 1, 11, 1),
		},
		unmunge: []unmungeCheck{{10, 0, 0, false}, {11, 12, 0, true}, {18, 26, 0, true}},
	},
}

func TestMunger(t *testing.T) {
	for _, tt := range mungerTests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMunger()
			for i, s := range tt.steps {
				if s.pause {
					m.Pause()
					continue
				}
				seq, ts, ok := m.Munge(s.seq, s.ts, s.at*ms, s.clock, s.pad)
				if ok != s.wantOK || (ok && (seq != s.wantSeq || ts != s.wantTS)) {
					t.Fatalf("step %d Munge(%d, %d): got (%d, %d, %v), want (%d, %d, %v)",
						i, s.seq, s.ts, seq, ts, ok, s.wantSeq, s.wantTS, s.wantOK)
				}
			}
			for _, u := range tt.unmunge {
				in, to, ok := m.UnmungeSeq(u.out)
				if ok != u.wantOK || (ok && (in != u.wantIn || to != u.wantTO)) {
					t.Errorf("UnmungeSeq(%d) = (%d, %d, %v), want (%d, %d, %v)",
						u.out, in, to, ok, u.wantIn, u.wantTO, u.wantOK)
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
	m := NewMunger()
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
				in, _, ok := m.UnmungeSeq(out)
				if want := sent[out].Load(); ok && want != 0 && want == before && uint16(want-1) != in {
					t.Errorf("UnmungeSeq(%d) = %d, munged from %d", out, in, want-1)
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
			m.Pause()
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
	m := NewMunger()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, ok := m.Munge(uint16(i), uint32(i)*3000, int64(i)*33*ms, videoClock, false); !ok {
			b.Fatal("dropped")
		}
	}
}

func BenchmarkMungerUnmungeSeq(b *testing.B) {
	m := NewMunger()
	for i := 0; i < 1000; i++ {
		m.Munge(uint16(i), uint32(i)*3000, int64(i)*33*ms, videoClock, i%100 == 50)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, ok := m.UnmungeSeq(uint16(980 - i%100)); !ok {
			b.Fatal("unmapped")
		}
	}
}
