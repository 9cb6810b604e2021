package sfu

import (
	"math"
	"testing"
	"time"
)

// TestProber checks a probe cluster's size and pacing, the backoff while
// clusters fail, and that a confirmed cluster allows the next one once the
// upgrade settled.
func TestProber(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	subs := []*subscription{{dt: d}}
	stop := make(chan struct{})
	var p prober
	never := func(int64) bool { return false }
	now := time.Now().UnixNano()
	if p.maybeProbe(now, 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Fatal("a cluster went out before the stream started")
	}
	f.send(2, vp8Frame{key: true, pid: 1})
	before := len(w.packets())

	start := time.Now()
	if !p.maybeProbe(now, 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Fatal("no cluster")
	}
	span := time.Since(start)
	sent := w.packets()[before:]
	bytes := 0
	for _, s := range sent {
		if !s.hdr.Padding || len(s.payload) != 0 {
			t.Fatalf("not a padding-only packet: %+v", s.hdr)
		}
		bytes += int(s.hdr.PaddingSize)
	}
	// 2 Mbit/s times the overshoot, less the media, over the planned span.
	test, known := probeTest(2_000_000, 1_000_000, 0, 0)
	plan := probePlan(test, 2_000_000, known, 0, 500_000)
	want, planned := plan.n*plan.size, plan.span
	// The ramp's mean rate, then the tail's, less the media.
	pad := ((plan.start+plan.top)/2-500_000)*plan.ramp.Seconds() + (plan.top-500_000)*probeTailTime.Seconds()
	if wantPad := int(pad / 8); want < wantPad*9/10 || want > wantPad*11/10 {
		t.Errorf("plan: %d bytes of padding, want about %d", want, wantPad)
	}
	if bytes < want*9/10 || bytes > want*11/10 || len(sent) < probeMinPackets {
		t.Errorf("cluster: %d packets, %d bytes of padding, want about %d", len(sent), bytes, want)
	}
	if span < planned-2*probeSlot {
		t.Errorf("cluster sent in %v: not paced over %v", span, planned)
	}

	end := time.Now().UnixNano()
	if p.maybeProbe(end, 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Error("a second cluster while the first one's result is pending")
	}
	// No result: failed after probeResultWait; the next cluster waits the
	// backoff, which doubles.
	late := end + int64(probeResultWait) + 1
	if p.shield(600_000) != 1_000_000 {
		t.Errorf("pending: allocating by %d, want the estimate from before the cluster", p.shield(600_000))
	}
	if got := p.result(late, 600_000, false); got != probeFailed {
		t.Errorf("result without the estimate rising: %v, want failed", got)
	}
	if p.reach != 0 {
		t.Errorf("reach after a failed cluster: %v, want the default", p.reach)
	}
	if p.shield(600_000) != 600_000 {
		t.Error("the shield outlived the cluster")
	}
	if !p.maybeProbe(end+int64(probeBackoffMin)+1, 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Fatal("no cluster after the first backoff")
	}
	if p.backoff != 2*probeBackoffMin {
		t.Errorf("backoff after a failure: %v", p.backoff)
	}
	end = time.Now().UnixNano()
	p.result(end+int64(probeResultWait)+1, 1_000_000, false)
	if p.maybeProbe(end+int64(2*probeBackoffMin)-int64(100*time.Millisecond), 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Error("a cluster before the doubled backoff passed")
	}
	later := end + int64(2*probeBackoffMin) + int64(time.Millisecond)
	if !p.maybeProbe(later, 2_000_000, 500_000, 1_000_000, 0, subs, never, stop) {
		t.Fatal("no cluster after the doubled backoff")
	}
	// Confirmed: the next step may be probed for at once.
	if got := p.result(later+int64(100*time.Millisecond), 2_100_000, false); got != probeConfirmed {
		t.Fatalf("an estimate at the target: %v, want confirmed", got)
	}
	if p.reach != 2*probeReach {
		t.Errorf("reach after a confirmed cluster: %v, want %v", p.reach, 2*probeReach)
	}
	if got := p.result(later+int64(200*time.Millisecond), 2_100_000, false); got != probePending {
		t.Errorf("a second result: %v", got)
	}
	p.upgraded(later + int64(100*time.Millisecond))
	if p.maybeProbe(later+int64(200*time.Millisecond), 3_000_000, 500_000, 2_100_000, 0, subs, never, stop) {
		t.Error("a cluster while the upgrade a confirmed one allowed settles")
	}
	if !p.maybeProbe(later+int64(100*time.Millisecond+probeSettle), 3_000_000, 500_000, 2_100_000, 0, subs, never, stop) {
		t.Error("no cluster once the upgrade settled")
	}
	close(stop)
	if p.maybeProbe(later+int64(10*time.Second), 3_000_000, 500_000, 2_100_000, 0, subs, never, stop) {
		t.Error("a whole cluster after stop")
	}
}

// TestProbePlan checks that a cluster is long enough for its excess over
// the rate it must tell apart to empty the largest bucket planned for,
// within the bounds, and that it tests at most probeReach times what the
// path is known to carry.
func TestProbePlan(t *testing.T) {
	tests := []struct {
		name                          string
		want, estimate, capacity, med uint64
		test                          uint64
	}{
		{"upgrade within reach", 1_800_000, 1_500_000, 0, 500_000, 1_800_000},
		{"far above the estimate: explore", 1_800_000, 600_000, 0, 500_000, 900_000},
		{"the capacity known caps the estimate", 1_800_000, 900_000, 700_000, 500_000, 1_050_000},
		{"never under the estimate", 1_800_000, 900_000, 300_000, 500_000, 990_000},
		{"low rates", 600_000, 500_000, 0, 200_000, 600_000},
		{"high rates", 10_000_000, 8_000_000, 0, 3_000_000, 10_000_000},
		{"a link capped at 300 kbit/s", 600_000, 260_000, 310_000, 190_000, 390_000},
	}
	for _, tt := range tests {
		test, known := probeTest(tt.want, tt.estimate, tt.capacity, 0)
		if test != tt.test {
			t.Errorf("%s: tests %d, want %d", tt.name, test, tt.test)
		}
		plan := probePlan(test, tt.want, known, tt.capacity, tt.med)
		n, size, span := plan.n, plan.size, plan.span
		overshoot, floor := probeConfirmOvershoot, float64(test)
		if test < tt.want {
			overshoot, floor = probeOvershoot, float64(min(known, test))
		}
		if plan.top < float64(test)*overshoot {
			t.Errorf("%s: tail paced at %.0f, under %v x the rate tested", tt.name, plan.top, overshoot)
		}
		if test < tt.want && plan.start > float64(known) {
			t.Errorf("%s: the ramp starts at %.0f, above the %d the path is known to carry", tt.name, plan.start, known)
		}
		// The excess over the link's real rate (the capacity known, as a
		// shaper counts it) empties the bucket by the end of the ramp.
		floor = max(floor, float64(tt.capacity)) * probeCountMargin
		var excess float64
		for at := time.Duration(0); at < plan.ramp; at += time.Millisecond {
			rate := plan.start + (plan.top-plan.start)*at.Seconds()/plan.ramp.Seconds()
			excess += max(rate-floor, 0) * time.Millisecond.Seconds() / 8
		}
		if excess < probeBucketBytes*0.98 {
			t.Errorf("%s: a %v ramp lets only %.0f bytes over the rate", tt.name, plan.ramp, excess)
		}
		if span < probeMinSpan || span > probeMaxSpan || n < probeMinPackets || n > probeMaxPackets || size > maxPaddingBytes {
			t.Errorf("%s: %d x %d B over %v out of bounds", tt.name, n, size, span)
		}
	}
}

// TestProbeRamp checks that a cluster's padding grows from the rate the path
// is known to carry: a small bucket empties while the excess is small.
func TestProbeRamp(t *testing.T) {
	plan := probePlan(450_000, 600_000, 300_000, 310_000, 190_000)
	early := plan.paddingBits(100*time.Millisecond) / 0.1
	tail := (plan.paddingBits(plan.span) - plan.paddingBits(plan.ramp)) / probeTailTime.Seconds()
	if early > 0.4*tail {
		t.Errorf("padding at %.0f bit/s over the first 100 ms and %.0f over the tail: no ramp", early, tail)
	}
	if got := plan.paddingRate(plan.span); math.Abs(got+plan.media-plan.top) > 1 {
		t.Errorf("the tail's total rate is %.0f, want the top %.0f", got+plan.media, plan.top)
	}
}

// TestProberEndsSaturatedCluster checks that a cluster stops once the
// estimator reports that it filled the path.
func TestProberEndsSaturatedCluster(t *testing.T) {
	f := newSimulcastFixture()
	w := &recordingWriter{}
	d := newBoundDownTrack(t, f.up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	f.send(2, vp8Frame{key: true, pid: 1})
	var p prober
	start := time.Now()
	saturatedAfter := func(int64) bool { return time.Since(start) > 100*time.Millisecond }
	if !p.maybeProbe(time.Now().UnixNano(), 2_000_000, 500_000, 1_000_000, 0, []*subscription{{dt: d}}, saturatedAfter, make(chan struct{})) {
		t.Fatal("no cluster")
	}
	test, known := probeTest(2_000_000, 1_000_000, 0, 0)
	planned := probePlan(test, 2_000_000, known, 0, 500_000).span
	if took := time.Since(start); took > planned/2 {
		t.Errorf("a saturated cluster ran %v of its %v", took, planned)
	}
}

// TestProberFilledClusterIsNoConfirmation checks that an estimate crossing
// a cluster's target is no confirmation when that cluster filled the path
// (the estimate rose by other means): the cluster fails at the deadline.
func TestProberFilledClusterIsNoConfirmation(t *testing.T) {
	tests := []struct {
		name                string
		endedFull, saturate bool
		want                probeOutcome
	}{
		{"clean cluster", false, false, probeConfirmed},
		{"ended early on saturation", true, false, probeFailed},
		{"saturated by its tail", false, true, probeFailed},
	}
	for _, tt := range tests {
		now := time.Now().UnixNano()
		p := prober{target: 500_000, before: 400_000, sentAt: now, last: probeCluster{full: tt.endedFull}}
		got := p.result(now+int64(100*time.Millisecond), 600_000, tt.saturate)
		if got == probePending {
			got = p.result(now+int64(probeResultWait)+1, 600_000, tt.saturate)
		}
		if got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
