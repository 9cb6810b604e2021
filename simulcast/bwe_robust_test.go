package simulcast

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// bweChecker feeds an estimator and checks after every call that the
// estimate is within bounds and the state is finite.
type bweChecker struct {
	t   *testing.T
	g   *GCC
	cfg GCCConfig
}

func newBWEChecker(t *testing.T, cfg GCCConfig) *bweChecker {
	return &bweChecker{t: t, g: NewGCC(cfg), cfg: cfg.withDefaults()}
}

func (c *bweChecker) feedback(now int64, rs []PacketResult) {
	c.t.Helper()
	c.g.OnFeedback(now, rs)
	c.check(now)
}

func (c *bweChecker) check(now int64) {
	c.t.Helper()
	e := c.g.Estimate(now)
	if e < c.cfg.Min || e > c.cfg.Max {
		c.t.Fatalf("estimate %d outside [%d, %d]", e, c.cfg.Min, c.cfg.Max)
	}
	s := c.g.State(now)
	for _, v := range []float64{s.Trend, s.Threshold, s.LossRatio} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			c.t.Fatalf("state not finite: %+v", s)
		}
	}
	if s.LossRatio < 0 || s.LossRatio > 1 || s.Estimate != e {
		c.t.Fatalf("state %+v", s)
	}
}

// bweSteady returns n packets of size bytes sent gap apart from send0,
// numbered from seq, each arriving 30 ms later on a receiver clock offset
// by arrOff, plus grow more for each packet (a growing queue).
func bweSteady(buf []PacketResult, seq uint16, send0, arrOff int64, n int, gap int64, size int, grow int64) []PacketResult {
	buf = buf[:0]
	for i := range n {
		s := send0 + int64(i)*gap
		buf = append(buf, PacketResult{Seq: seq + uint16(i), SendTime: s, Arrival: s + arrOff + 30*bweMS + int64(i)*grow, Size: size, Received: true})
	}
	return buf
}

// runSteady feeds d of 1 Mbit/s traffic (1250 B every 10 ms) in 50 ms
// feedbacks from now, with the receiver clock offset by arrOff, and
// returns the time after it. With grow, the queue grows that much per
// packet.
func (c *bweChecker) runSteady(now, arrOff int64, d time.Duration, seq uint16, grow int64) int64 {
	buf := make([]PacketResult, 0, 5)
	for end := now + int64(d); now < end; now += 50 * bweMS {
		buf = bweSteady(buf, seq, now, arrOff, 5, 10*bweMS, 1250, grow)
		seq += 5
		arrOff += 5 * grow
		c.feedback(now+50*bweMS, buf)
	}
	return now
}

// bweT0 is the sender clock at the start of the robustness cases.
const bweT0 = int64(1_700_000_000) * 1e9

// bweRobustCases are malformed, extreme and pathological inputs.
var bweRobustCases = []struct {
	name string
	run  func(c *bweChecker)
}{
	{"empty feedback", func(c *bweChecker) {
		for i := range int64(100) {
			c.feedback(bweT0+i*50*bweMS, nil)
			c.feedback(bweT0+i*50*bweMS, []PacketResult{})
		}
		if e := c.g.Estimate(bweT0); e != c.cfg.Initial {
			c.t.Fatalf("empty feedback moved the estimate to %d", e)
		}
	}},
	{"all packets lost", func(c *bweChecker) {
		rs := make([]PacketResult, 20)
		for i := range int64(200) {
			for k := range rs {
				rs[k] = PacketResult{Seq: uint16(int(i)*20 + k), SendTime: bweT0 + i*50*bweMS + int64(k)*2*bweMS, Size: 1200}
			}
			c.feedback(bweT0+i*50*bweMS, rs)
		}
		if e := c.g.Estimate(bweT0 + 10e9); e != c.cfg.Min {
			c.t.Fatalf("estimate %d after 10 s of total loss, want the minimum", e)
		}
	}},
	{"arrival times going backwards", func(c *bweChecker) {
		rs := make([]PacketResult, 10)
		for i := range int64(200) {
			for k := range rs {
				n := i*10 + int64(k)
				rs[k] = PacketResult{Seq: uint16(n), SendTime: bweT0 + n*5*bweMS, Arrival: 1e12 - n*bweMS, Size: 1200, Received: true}
			}
			c.feedback(bweT0+i*50*bweMS, rs)
		}
	}},
	{"the receiver clock jumps back an hour mid-stream", func(c *bweChecker) {
		now := c.runSteady(bweT0, 0, 5*time.Second, 0, 0)
		now = c.runSteady(now, -3600e9, 10*time.Second, 500, 0)
		s := c.g.State(now)
		if s.Signal != DelayNormal || s.Estimate < c.cfg.Initial {
			c.t.Fatalf("after the jump: %+v", s)
		}
		// The delay detector still works: a growing queue is seen.
		now = c.runSteady(now, -3600e9, time.Second, 1000, 2*bweMS)
		if s2 := c.g.State(now); s2.Estimate >= s.Estimate {
			c.t.Fatalf("a growing queue after the jump went unnoticed: %+v", s2)
		}
	}},
	{"huge gaps in time", func(c *bweChecker) {
		now := c.runSteady(bweT0, 0, 2*time.Second, 0, 0)
		now = c.runSteady(now+3600e9, 0, 2*time.Second, 0, 0)
		now = c.runSteady(now-7200e9, 5e9, 2*time.Second, 0, 0) // the sender clock goes back
		if s := c.g.State(now); s.Signal != DelayNormal || s.Estimate < c.cfg.Initial {
			c.t.Fatalf("after the gaps: %+v", s)
		}
	}},
	{"zero, negative and huge sizes, duplicates, send order broken", func(c *bweChecker) {
		rs := []PacketResult{
			{Seq: 1, SendTime: bweT0, Arrival: 5, Size: 0, Received: true},
			{Seq: 1, SendTime: bweT0, Arrival: 5, Size: 0, Received: true},
			{Seq: 2, SendTime: bweT0 - 1e9, Arrival: 6, Size: -100, Received: true, Probe: true},
			{Seq: 3, SendTime: bweT0 + 1e6, Arrival: 7, Size: math.MaxInt32, Received: true},
			{Seq: 4, SendTime: bweT0 + 2e6, Arrival: 7, Size: 1200, Probe: true},
		}
		for i := range int64(100) {
			c.feedback(bweT0+i*bweMS, rs)
		}
	}},
	{"extreme timestamps", func(c *bweChecker) {
		ext := []int64{math.MinInt64, math.MaxInt64, 0, -1, 1}
		var rs []PacketResult
		for i, s := range ext {
			for j, a := range ext {
				rs = append(rs, PacketResult{Seq: uint16(i*5 + j), SendTime: s, Arrival: a, Size: 1200, Received: j%2 == 0, Probe: i%2 == 1})
			}
		}
		for _, now := range ext {
			c.feedback(now, rs)
			c.g.OnREMB(now, 1)
			c.g.OnRTT(now, time.Duration(now))
			c.check(now)
		}
	}},
	{"REMB of zero and of the maximum", func(c *bweChecker) {
		c.g.OnREMB(bweT0, 0)
		if e := c.g.Estimate(bweT0); e != c.cfg.Min {
			c.t.Fatalf("REMB 0: estimate %d", e)
		}
		c.g.OnREMB(bweT0, math.MaxUint64)
		if e := c.g.Estimate(bweT0); e != c.cfg.Initial {
			c.t.Fatalf("huge REMB: estimate %d", e)
		}
	}},
}

// TestGCCRobustness: malformed, extreme and pathological feedback never
// panics and keeps the estimate within [Min, Max].
func TestGCCRobustness(t *testing.T) {
	for _, tt := range bweRobustCases {
		t.Run(tt.name, func(t *testing.T) { tt.run(newBWEChecker(t, GCCConfig{})) })
	}
}

// TestGCCSequenceWrap: the estimator does not care where sequence numbers
// start or that they wrap.
func TestGCCSequenceWrap(t *testing.T) {
	var est [2]uint64
	for i, seq := range []uint16{0, 65500} {
		c := newBWEChecker(t, GCCConfig{})
		now := c.runSteady(1e9, 0, 10*time.Second, seq, 0)
		est[i] = c.g.Estimate(now)
	}
	if est[0] != est[1] {
		t.Fatalf("estimates %d and %d differ with wrapping sequence numbers", est[0], est[1])
	}
}

// bweBatch fills rs with a feedback of len(rs) packets of ~20 Mbit/s
// traffic, batch number i.
func bweBatch(rs []PacketResult, i int64) {
	n := int64(len(rs))
	for k := range rs {
		s := (i*n + int64(k)) * 480 * 1000 // 1200 B every 480 us
		rs[k] = PacketResult{Seq: uint16(i*n) + uint16(k), SendTime: s, Arrival: s + 20e6, Size: 1200, Received: k%50 != 7, Probe: i%40 == 0}
	}
}

// TestGCCOnFeedbackAllocs: OnFeedback does not allocate.
func TestGCCOnFeedbackAllocs(t *testing.T) {
	g := NewGCC(GCCConfig{})
	rs := make([]PacketResult, 100)
	var i int64
	allocs := testing.AllocsPerRun(1000, func() {
		bweBatch(rs, i)
		g.OnFeedback(rs[len(rs)-1].SendTime+50e6, rs)
		_ = g.Estimate(rs[len(rs)-1].SendTime + 50e6)
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per OnFeedback", allocs)
	}
}

func BenchmarkGCCOnFeedback(b *testing.B) {
	for _, n := range []int{10, 100, 500} {
		b.Run(fmt.Sprintf("%d packets", n), func(b *testing.B) {
			g := NewGCC(GCCConfig{})
			rs := make([]PacketResult, n)
			b.ReportAllocs()
			var i int64
			for b.Loop() {
				bweBatch(rs, i)
				g.OnFeedback(rs[n-1].SendTime+50e6, rs)
				i++
			}
		})
	}
}
