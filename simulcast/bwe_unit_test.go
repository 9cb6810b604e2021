package simulcast

import (
	"math"
	"strings"
	"testing"
	"time"
)

const bweMS = int64(time.Millisecond)

func bweNear(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Abs(want) }

func TestGCCConfigDefaults(t *testing.T) {
	tests := []struct {
		in, want GCCConfig
	}{
		{GCCConfig{}, GCCConfig{Initial: 2.5e6, Min: 30e3, Max: 20e6}},
		{GCCConfig{Initial: 10}, GCCConfig{Initial: 30e3, Min: 30e3, Max: 20e6}},
		{GCCConfig{Initial: 50e6}, GCCConfig{Initial: 20e6, Min: 30e3, Max: 20e6}},
		{GCCConfig{Min: 5e6, Max: 1e6}, GCCConfig{Initial: 5e6, Min: 5e6, Max: 5e6}},
		{GCCConfig{Initial: 300e3, Min: 100e3, Max: 2e6}, GCCConfig{Initial: 300e3, Min: 100e3, Max: 2e6}},
	}
	for _, tt := range tests {
		if got := tt.in.withDefaults(); got != tt.want {
			t.Errorf("%+v: got %+v, want %+v", tt.in, got, tt.want)
		}
		if got := NewGCC(tt.in).Estimate(0); got != tt.want.Initial {
			t.Errorf("%+v: initial estimate %d, want %d", tt.in, got, tt.want.Initial)
		}
	}
}

func TestDelaySignalString(t *testing.T) {
	for s, want := range map[DelaySignal]string{DelayNormal: "normal", DelayOverusing: "overusing", DelayUnderusing: "underusing", 9: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", s, got, want)
		}
	}
}

// arrStep is one packet given to an interArrival (times in bweMS) and what it
// must produce.
type arrStep struct {
	send, arr   int64
	st          groupStatus
	dSend, dArr float64 // deltas when st == groupDelta
}

func TestInterArrival(t *testing.T) {
	p := func(send, arr int64) arrStep { return arrStep{send: send, arr: arr} }
	delta := func(send, arr int64, ds, da float64) arrStep {
		return arrStep{send: send, arr: arr, st: groupDelta, dSend: ds, dArr: da}
	}
	tests := []struct {
		name  string
		steps []arrStep
	}{
		{"packets within 5 bweMS form a group", []arrStep{
			p(0, 100), p(3, 103), p(5, 106), // group A: last send 5, last arrival 106
			p(20, 121),             // completes A (nothing before it)
			delta(40, 150, 15, 15), // completes B: vs A
			delta(60, 175, 20, 29), // completes C
		}},
		{"an arrival burst joins the group", []arrStep{
			p(0, 100), p(10, 101), // arrived 1 bweMS apart though sent 10 bweMS apart
			p(30, 130),
			delta(50, 150, 20, 29), // B (30, 130) vs A (10, 101)
		}},
		{"a group arriving before the previous one is skipped", []arrStep{
			p(0, 100), p(20, 130),
			delta(40, 125, 20, 30), // B vs A
			p(60, 160),             // C arrived at 125, before B: skipped
			delta(80, 180, 40, 30), // D vs B
		}},
		{"an arrival clock jump restarts", []arrStep{
			p(0, 100), p(20, 120),
			delta(40, 140, 20, 20),
			delta(60, 5140, 20, 20),
			{send: 80, arr: 5160, st: groupReset}, // D arrived 5 s late
			p(100, 5180),                          // completes E, nothing before it
			delta(120, 5200, 20, 20),
		}},
		{"a packet sent before the group is ignored", []arrStep{
			p(100, 100), p(50, 300), p(120, 120),
			delta(140, 140, 20, 20),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a interArrival
			for i, s := range tt.steps {
				d, st := a.add(s.send*bweMS, s.arr*bweMS)
				if st != s.st {
					t.Fatalf("step %d: status %d, want %d", i, st, s.st)
				}
				if st == groupDelta && (d.send != s.dSend || d.arrival != s.dArr) {
					t.Fatalf("step %d: deltas %+v, want send %v arrival %v", i, d, s.dSend, s.dArr)
				}
			}
		})
	}
}

func TestTrendline(t *testing.T) {
	tests := []struct {
		name   string
		growth float64 // bweMS of delay gained per 20 bweMS group
		want   float64 // slope
	}{
		{"stable delay", 0, 0},
		{"growing queue", 2, 0.1},
		{"draining queue", -2, -0.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr trendline
			var slope float64
			for i := range 200 {
				s, ok := tr.update(groupDeltas{send: 20, arrival: 20 + tt.growth, at: int64(i) * 20 * bweMS})
				if ok != (i+1 >= trendMinPoints) {
					t.Fatalf("delta %d: fit %v", i, ok)
				}
				slope = s
			}
			if math.Abs(slope-tt.want) > 1e-6 {
				t.Fatalf("slope %v, want %v", slope, tt.want)
			}
			if m := tr.modified(slope); math.Abs(m-trendMaxDeltas*trendGain*tt.want) > 1e-4 {
				t.Fatalf("modified trend %v", m)
			}
		})
	}
}

func TestOveruseDetector(t *testing.T) {
	tests := []struct {
		name string
		m    []float64
		want DelaySignal
	}{
		{"flat", []float64{0, 1, -1, 0}, DelayNormal},
		{"one sample above is not enough", []float64{20}, DelayNormal},
		{"above for two deltas and rising", []float64{20, 21}, DelayOverusing},
		{"above but falling", []float64{20, 19}, DelayNormal},
		{"stays overusing while above", []float64{20, 21, 19, 18}, DelayOverusing},
		{"back under the threshold", []float64{20, 21, 5}, DelayNormal},
		{"draining", []float64{-20}, DelayUnderusing},
		{"not a number", []float64{20, 21, math.NaN()}, DelayOverusing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o overuseDetector
			o.reset()
			for i, m := range tt.m {
				o.detect(m, groupDeltas{send: 20, arrival: 20, at: int64(i) * 20 * bweMS})
			}
			if o.signal != tt.want {
				t.Fatalf("signal %v, want %v", o.signal, tt.want)
			}
		})
	}
}

func TestOveruseThresholdAdapts(t *testing.T) {
	tests := []struct {
		name   string
		m      float64
		lo, hi float64
	}{
		{"down to the floor on a quiet path", 0, thresholdMin, thresholdMin},
		{"up to a path's steady jitter", 25, 24, 25},
		{"outliers are ignored", 500, thresholdInit, thresholdInit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o overuseDetector
			o.reset()
			for i := range 500 {
				o.adapt(tt.m, int64(i)*20*bweMS)
			}
			if o.threshold < tt.lo || o.threshold > tt.hi {
				t.Fatalf("threshold %v, want %v..%v", o.threshold, tt.lo, tt.hi)
			}
		})
	}
}

// rcOp is one rate controller update: at (bweMS), the signal, the acked
// bitrate (0: not measured) and the rate expected after it.
type rcOp struct {
	at    int64
	sig   DelaySignal
	acked float64
	want  float64
}

func TestRateControl(t *testing.T) {
	const rtt = 50 * time.Millisecond
	tests := []struct {
		name    string
		startup bool
		ops     []rcOp
	}{
		{"overuse decreases to 0.85 x acked", true, []rcOp{{0, DelayOverusing, 800e3, 680e3}}},
		{"overuse without an acked rate: 0.9 x rate", true, []rcOp{{0, DelayOverusing, 0, 900e3}}},
		{"overuse never raises", true, []rcOp{{0, DelayOverusing, 2e6, 1e6}}},
		{"one decrease per response time", true, []rcOp{
			{0, DelayOverusing, 800e3, 680e3},
			{100, DelayOverusing, 600e3, 680e3}, // within RTT + 100 bweMS
			{150, DelayOverusing, 600e3, 510e3},
		}},
		{"far above the acked rate decreases at once", true, []rcOp{
			{0, DelayOverusing, 800e3, 680e3},
			{50, DelayOverusing, 300e3, 255e3},
		}},
		{"start-up grows 50 % per second", true, []rcOp{{0, DelayNormal, 0, 1e6}, {1000, DelayNormal, 0, 1.5e6}}},
		{"increase capped at 1.5 x acked + 10 kbit/s", true, []rcOp{{0, DelayNormal, 0, 1e6}, {1000, DelayNormal, 800e3, 1.21e6}}},
		{"the cap never lowers", true, []rcOp{{0, DelayNormal, 0, 1e6}, {1000, DelayNormal, 100e3, 1e6}}},
		{"multiplicative 8 % per second far from congestion", false, []rcOp{{0, DelayNormal, 0, 1e6}, {1000, DelayNormal, 0, 1.08e6}}},
		{"a feedback gap counts as one second at most", false, []rcOp{{0, DelayNormal, 0, 1e6}, {60_000, DelayNormal, 0, 1.08e6}}},
		{"additive near the last congestion", true, []rcOp{
			{0, DelayOverusing, 1e6, 850e3},
			{1000, DelayNormal, 1e6, 850e3 + 9600/0.15},
		}},
		{"multiplicative again once acked exceeds the old capacity", true, []rcOp{
			{0, DelayOverusing, 1e6, 850e3},
			{1000, DelayNormal, 1.2e6, 850e3 * 1.08},
		}},
		{"underuse holds", true, []rcOp{{0, DelayNormal, 0, 1e6}, {1000, DelayUnderusing, 0, 1e6}, {2000, DelayUnderusing, 0, 1e6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r rateControl
			r.init(1e6)
			r.startup = tt.startup
			for i, op := range tt.ops {
				r.update(op.at*bweMS, op.sig, op.acked, op.acked > 0, 0, rtt)
				if !bweNear(r.rate, op.want, 1e-9) {
					t.Fatalf("op %d: rate %.1f, want %.1f", i, r.rate, op.want)
				}
			}
		})
	}
}

// TestRateControlDelivered covers decreases from what the bottleneck
// delivered: 0.9 of it, none while the rate is already under it (a
// backlog draining), and a further one when it delivers less.
func TestRateControlDelivered(t *testing.T) {
	const rtt = 50 * time.Millisecond
	var r rateControl
	r.init(2.5e6)
	steps := []struct {
		at        int64
		delivered float64
		want      float64
	}{
		{0, 700e3, 630e3},
		{500, 700e3, 630e3}, // under what is delivered: the queue drains
		{1000, 500e3, 450e3},
	}
	for i, st := range steps {
		r.update(st.at*bweMS, DelayOverusing, st.delivered, true, st.delivered, rtt)
		if !bweNear(r.rate, st.want, 1e-9) {
			t.Fatalf("step %d: rate %.0f, want %.0f", i, r.rate, st.want)
		}
	}
}

// TestGCCDeliveredPeak covers the congestion episode: once the sender has
// cut its rate, the receiver gets less than the link carries, and the
// estimate stays at what the link delivered while it was full.
func TestGCCDeliveredPeak(t *testing.T) {
	g := NewGCC(GCCConfig{})
	// 1 s at 700 kbit/s: 1000 B every ~11.4 ms.
	var rs []PacketResult
	for i := range 88 {
		at := int64(i) * 11_428_571
		rs = append(rs, PacketResult{Seq: uint16(i), SendTime: at, Arrival: at, Size: 1000, Received: true})
	}
	g.acked = ackedRate{}
	for i := range rs {
		g.acked.add(rs[i].Arrival, rs[i].Size)
	}
	peak := g.deliveredRate(1e9, DelayOverusing)
	if peak < 650e3 || peak > 750e3 {
		t.Fatalf("delivered %.0f while full, want about 700k", peak)
	}
	// Then 300 ms at 200 kbit/s: still overusing, the peak stands.
	for i := range 8 {
		at := int64(1e9) + int64(i)*40e6
		g.acked.add(at, 1000)
	}
	if got := g.deliveredRate(13e8, DelayOverusing); got != peak {
		t.Fatalf("delivered %.0f after the sender's cut, want the episode's %.0f", got, peak)
	}
	if got := g.deliveredRate(13e8+episodeSpan+1, DelayOverusing); got >= peak {
		t.Fatalf("delivered %.0f after the episode, want less than %.0f", got, peak)
	}
}

func TestRateControlRaise(t *testing.T) {
	var r rateControl
	r.init(1e6)
	r.update(0, DelayOverusing, 1e6, true, 0, 0)
	if !r.capacity.known {
		t.Fatal("no capacity estimate after congestion")
	}
	r.raise(500e3)
	if r.rate != 850e3 {
		t.Fatalf("a lower probe changed the rate to %v", r.rate)
	}
	r.raise(2e6)
	if r.rate != 2e6 || r.capacity.known {
		t.Fatalf("rate %v, capacity known %v after a 2 Mbit/s probe", r.rate, r.capacity.known)
	}
	r.clamp(30e3, 1.5e6)
	if r.rate != 1.5e6 {
		t.Fatalf("clamped to %v", r.rate)
	}
}

// TestRateControlProbeCongestion checks that a probe cluster's own
// congestion, measured while its padding is in the acked window, cannot
// start a new, lower link capacity nor clear the known one, while the
// media's own congestion and a probe's result still do.
func TestRateControlProbeCongestion(t *testing.T) {
	const rtt = 50 * time.Millisecond
	tests := []struct {
		name        string
		probed      bool
		overuse     bool
		rate        float64 // delivered at the overuse, or acked when normal
		wantKnown   bool
		wantAtLeast float64 // capacity mean
		wantAtMost  float64
	}{
		{"media congestion far under: a new capacity", false, true, 440e3, true, 440e3, 440e3},
		{"probe congestion far under: the low end at most", true, true, 440e3, true, 600e3, 700e3},
		{"media acked far over: forgotten", false, false, 900e3, false, 0, 0},
		{"probe padding acked far over: kept", true, false, 900e3, true, 700e3, 700e3},
	}
	for _, tt := range tests {
		var r rateControl
		r.init(2e6)
		r.update(0, DelayOverusing, 700e3, true, 700e3, rtt)
		r.ackedProbed = tt.probed
		sig := DelayNormal
		if tt.overuse {
			sig = DelayOverusing
		}
		r.update(int64(time.Second), sig, tt.rate, true, tt.rate, rtt)
		if r.capacity.known != tt.wantKnown {
			t.Fatalf("%s: capacity known %v, want %v", tt.name, r.capacity.known, tt.wantKnown)
		}
		if tt.wantKnown && (r.capacity.mean < tt.wantAtLeast || r.capacity.mean > tt.wantAtMost) {
			t.Errorf("%s: capacity %.0f, want %.0f-%.0f", tt.name, r.capacity.mean, tt.wantAtLeast, tt.wantAtMost)
		}
	}
}

// lossWin is one loss window: packets of 1000 bytes sent 5 ms apart (the
// first ones lost), and the cap expected after it.
type lossWin struct {
	packets, lost int
	want          float64 // expected cap, 0: none
}

func TestLossControl(t *testing.T) {
	// 100 packets of 1000 bytes 5 ms apart are sent at 1.616 Mbit/s.
	const sent = 8000 * 100 / (0.005 * 99)
	tests := []struct {
		name                string
		current, delayBased float64
		wins                []lossWin
	}{
		{"random loss under 5 % does not cap", 1e6, 1e6, []lossWin{{100, 2, 0}, {100, 4, 0}}},
		{"5-10 % holds at the current estimate", 1e6, 1e6, []lossWin{{100, 7, 1e6}, {100, 9, 1e6}}},
		{"a hold-only cap goes with the loss", 1e6, 1e6, []lossWin{{100, 7, 1e6}, {100, 1, 0}}},
		{"over 10 % caps at the send rate x (1 - loss/2)", 2e6, 2e6, []lossWin{{100, 20, sent * 0.9}}},
		// The base is the highest estimate over this window and the one
		// before: a cut shows in the base one window later.
		{"a sender over the estimate: the estimate x (1 - loss/2)", 1e6, 1e6, []lossWin{{100, 20, 0.9e6}, {100, 20, 0.9e6}, {100, 20, 0.81e6}}},
		{"heavy loss keeps cutting, from the cap", 2e6, 2e6, []lossWin{{100, 20, sent * 0.9}, {100, 15, sent * 0.9}, {100, 15, sent * 0.9 * 0.925}}},
		{"a cap grows 8 % per second once loss stops, then goes", 1.2e6, 1.2e6, []lossWin{
			{100, 50, 0.9e6},
			{100, 0, 0.9e6 * 1.08},
			{100, 0, 0.9e6 * 1.08 * 1.08},
			{100, 0, 0.9e6 * 1.08 * 1.08 * 1.08},
			{100, 0, 0}, // 1.22 Mbit/s: grown past the delay-based estimate
		}},
		{"too few packets decide nothing", 1e6, 1e6, []lossWin{{59, 30, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l lossControl
			l.update(0, tt.current, tt.delayBased, 0) // opens the first window
			for i, w := range tt.wins {
				start := int64(i) * 1000 * bweMS // windows a second apart
				for k := range w.packets {
					l.add(&PacketResult{SendTime: start + int64(k)*5*bweMS, Size: 1000, Received: k >= w.lost})
				}
				cur := tt.current
				if l.bound > 0 {
					cur = min(cur, l.bound) // the sender follows the cap
				}
				l.update(start+1000*bweMS, cur, tt.delayBased, 0)
				if !bweNear(l.bound, w.want, 1e-9) {
					t.Fatalf("window %d: cap %.0f, want %.0f (ratio %.3f)", i, l.bound, w.want, l.ratio)
				}
			}
		})
	}
}

// probePkt is a probe packet: send and arrival time (bweMS), received.
type probePkt struct {
	send, arr int64
	lost      bool
}

// bucketCluster is n probe packets 5 bweMS apart whose first pass arrive
// at the same pace and the rest 10 bweMS apart.
func bucketCluster(n, pass int) []probePkt {
	ps := make([]probePkt, n)
	arr := int64(1000)
	for i := range ps {
		if i > 0 {
			arr += 5
			if i >= pass {
				arr += 5
			}
		}
		ps[i] = probePkt{send: int64(i) * 5, arr: arr}
	}
	return ps
}

func TestProbeMeter(t *testing.T) {
	cluster := func(n int, sendGap, arrGap int64, lost int) []probePkt {
		ps := make([]probePkt, n)
		for i := range ps {
			ps[i] = probePkt{send: int64(i) * sendGap, arr: 1000 + int64(i)*arrGap, lost: i >= n-lost}
		}
		return ps
	}
	const sent = 9 * 8000 / 0.045 // 10 x 1000 B, 5 bweMS apart: 1.6 Mbit/s
	tests := []struct {
		name string
		pkts []probePkt
		want float64
	}{
		{"path keeps up", cluster(10, 5, 5, 0), sent},
		{"arrivals compressed: the send rate", cluster(10, 5, 4, 0), sent},
		{"path at half the rate: saturated", cluster(10, 5, 10, 0), 0.9 * sent / 2},
		{"too few packets", cluster(4, 5, 5, 0), 0},
		// A token bucket passes the first 150 ms at the sender's pace, then
		// serves at half of it: the tail tells.
		{"bucket, then half the rate", bucketCluster(60, 30), 0.9 * sent / 2},
		{"bucket larger than the cluster: the send rate", bucketCluster(60, 60), sent},
		{"too many lost", cluster(10, 5, 5, 3), 0},
		{"all arrived at once", cluster(10, 5, 0, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p probeMeter
			for _, k := range tt.pkts {
				p.add(&PacketResult{SendTime: k.send * bweMS, Arrival: k.arr * bweMS, Size: 1000, Received: !k.lost, Probe: true})
			}
			if got, _ := p.take(); got != 0 {
				t.Fatalf("result %v before the cluster ended", got)
			}
			p.update()
			p.add(&PacketResult{SendTime: 900 * bweMS, Arrival: 2500 * bweMS, Size: 1000, Received: true})
			got, full := p.take()
			saturated := strings.Contains(tt.name, "half the rate")
			if saturated {
				got, full = full, got // a full path's rate is never a raise
			}
			if !bweNear(got, tt.want, 1e-9) {
				t.Fatalf("result %.0f, want %.0f", got, tt.want)
			}
			if full != 0 {
				t.Fatalf("filled the path: %v, other result %.0f", saturated, full)
			}
			if got, _ := p.take(); got != 0 {
				t.Fatalf("result %v taken twice", got)
			}
		})
	}
}

// TestProbeMeterMixedSizes checks that a tail mixing media packets of
// 1,200 bytes with small padding, arriving exactly as it was sent, is not
// taken for a full path whatever sizes its ends have: counting a whole
// first packet out on the receive side and a whole last one on the send
// side read 0.89 x the send rate here, and stopped clusters on open links.
func TestProbeMeterMixedSizes(t *testing.T) {
	tests := []struct {
		name        string
		n           int
		mediaEvery  int
		first, last int // sizes of the first and last packets
	}{
		{"media first, padding last", 18, 4, 1200, 250},
		{"padding first, media last", 18, 4, 250, 1200},
		{"media at both ends", 17, 4, 1200, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p probeMeter
			for i := range tt.n {
				size := 250
				switch {
				case i == 0:
					size = tt.first
				case i == tt.n-1:
					size = tt.last
				case i%tt.mediaEvery == 0:
					size = 1200
				}
				p.add(&PacketResult{SendTime: int64(i) * 5 * bweMS, Arrival: (1000 + int64(i)*5) * bweMS, Size: size, Received: true, Probe: true})
			}
			p.update()
			if p.saturated {
				t.Fatalf("an open path read as full: %+v", p.verdict)
			}
		})
	}
}

func TestAckedRate(t *testing.T) {
	tests := []struct {
		name string
		feed func(a *ackedRate)
		want float64 // 0: not measured
	}{
		{"steady 800 kbit/s", func(a *ackedRate) {
			for i := range int64(100) {
				a.add(5e9+i*10*bweMS, 1000)
			}
		}, 800e3},
		{"under 200 bweMS is not a measurement", func(a *ackedRate) {
			for i := range int64(15) {
				a.add(i*10*bweMS, 1000)
			}
		}, 0},
		{"silence restarts", func(a *ackedRate) {
			for i := range int64(100) {
				a.add(i*10*bweMS, 1000)
			}
			a.add(3e9, 1000)
		}, 0},
		{"an arrival clock jumping back restarts", func(a *ackedRate) {
			for i := range int64(100) {
				a.add(3600e9+i*10*bweMS, 1000)
			}
			a.add(0, 1000)
		}, 0},
		{"slightly late arrivals still count", func(a *ackedRate) {
			for i := range int64(100) {
				a.add(i*10*bweMS, 1000)
			}
			a.add(900*bweMS, 4000)
		}, 864e3},
		{"negative clock", func(a *ackedRate) {
			for i := range int64(100) {
				a.add(-5e9+i*10*bweMS+3, 1000)
			}
		}, 800e3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a ackedRate
			tt.feed(&a)
			got, ok := a.rate()
			if ok != (tt.want > 0) || !bweNear(got, tt.want, 0.03) {
				t.Fatalf("rate %.0f (%v), want %.0f", got, ok, tt.want)
			}
		})
	}
}

// TestGCCRestore checks that Restore only raises the estimate, up to the
// configured maximum, and lifts a loss-based cap with it.
func TestGCCRestore(t *testing.T) {
	g := NewGCC(GCCConfig{Initial: 1_000_000, Max: 3_000_000})
	g.rate.rate, g.loss.bound = 500_000, 400_000
	g.Restore(900_000)
	if got := g.Estimate(0); got != 900_000 {
		t.Errorf("restored to %d, want 900000", got)
	}
	g.Restore(600_000)
	if got := g.Estimate(0); got != 900_000 {
		t.Errorf("a lower restore changed the estimate to %d", got)
	}
	g.Restore(10_000_000)
	if got := g.Estimate(0); got != 3_000_000 {
		t.Errorf("restored beyond the maximum: %d", got)
	}
}

// TestBusyMeter covers the bottleneck's rate from queued packets: a link
// that passes the first packets at the sender's pace (a token bucket) and
// then serves at 300 kbit/s measures 300 kbit/s; packets that do not queue
// measure nothing.
func TestBusyMeter(t *testing.T) {
	const size = 1200
	serve := int64(size * 8 * 1e9 / 300e3) // ns per packet at 300 kbit/s
	var b busyMeter
	send, arr, queued := int64(0), int64(5e9), int64(0)
	for i := range 100 {
		if i < 20 {
			arr = 5e9 + send // the bucket: no queueing
		} else {
			arr = max(arr+serve, 5e9+send)
		}
		b.add(&PacketResult{SendTime: send, Arrival: arr, Size: size, Received: true})
		queued = arr - 5e9 - send
		send += 6e6 // 1.6 Mbit/s
	}
	if r := b.rate(); r < 290e3 || r > 310e3 {
		t.Fatalf("busy rate %.0f, want 300k", r)
	}
	if q := b.queueDelay(); q != queued || q < 1e9 {
		t.Fatalf("queue delay %d ns, want the newest packet's %d", q, queued)
	}
	var idle busyMeter
	for i := range 100 {
		at := int64(i) * 6e6
		idle.add(&PacketResult{SendTime: at, Arrival: 5e9 + at + int64(i%3)*1e6, Size: size, Received: true})
	}
	if r, q := idle.rate(), idle.queueDelay(); r != 0 || q > 2e6 {
		t.Fatalf("busy rate %.0f, queue delay %d ns without a queue, want 0 and <= 2 ms of jitter", r, q)
	}
	// A queue that emptied and formed again: the packet that found it
	// empty ends the run, so the idle time before it does not count as
	// serialization (a rate over both runs read a 700 kbit/s link as
	// 607 kbit/s).
	var forming busyMeter
	forming.add(&PacketResult{SendTime: 0, Arrival: 5e9, Size: size, Received: true}) // the base delay
	arr = 5e9 + 1e9 + 20e6
	for i := range 12 {
		send := int64(1e9) + int64(i)*1e6
		switch {
		case i == 4: // sent after a pause: the queue is empty
			send = arr - 5e9 + 50e6
			arr = 5e9 + send
		case i > 4:
			send = arr - 5e9 - 15e6 // 15 ms in the queue
			arr += serve
		default:
			arr += serve
		}
		forming.add(&PacketResult{SendTime: send, Arrival: arr, Size: size, Received: true})
	}
	if r := forming.rate(); r < 290e3 || r > 310e3 {
		t.Fatalf("busy rate %.0f across a queue that emptied, want 300k", r)
	}
}
