package sfu

import (
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
	now := time.Now().UnixNano()
	if p.maybeProbe(now, 2_000_000, 1_000_000, subs, stop) {
		t.Fatal("a cluster went out before the stream started")
	}
	f.send(2, vp8Frame{key: true, pid: 1})
	before := len(w.packets())

	start := time.Now()
	if !p.maybeProbe(now, 2_000_000, 1_000_000, subs, stop) {
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
	// 2 Mbit/s times the overshoot over the cluster's span.
	want := int(2_000_000 * probeOvershoot * probeClusterSpan.Seconds() / 8)
	if bytes < want*9/10 || bytes > want*11/10 || len(sent) < probeMinPackets {
		t.Errorf("cluster: %d packets, %d bytes of padding, want about %d", len(sent), bytes, want)
	}
	if span < probeClusterSpan-2*probeSlot {
		t.Errorf("cluster sent in %v: not paced over %v", span, probeClusterSpan)
	}

	end := time.Now().UnixNano()
	if p.maybeProbe(end, 2_000_000, 1_000_000, subs, stop) {
		t.Error("a second cluster while the first one's result is pending")
	}
	// No result: failed after probeResultWait; the next cluster waits the
	// backoff, which doubles.
	late := end + int64(probeResultWait) + 1
	if p.shield(600_000) != 1_000_000 {
		t.Errorf("pending: allocating by %d, want the estimate from before the cluster", p.shield(600_000))
	}
	if got := p.result(late, 600_000); got != probeFailed {
		t.Errorf("result without the estimate rising: %v, want failed", got)
	}
	if p.shield(600_000) != 600_000 {
		t.Error("the shield outlived the cluster")
	}
	if !p.maybeProbe(end+int64(probeBackoffMin)+1, 2_000_000, 1_000_000, subs, stop) {
		t.Fatal("no cluster after the first backoff")
	}
	if p.backoff != 2*probeBackoffMin {
		t.Errorf("backoff after a failure: %v", p.backoff)
	}
	end = time.Now().UnixNano()
	p.result(end+int64(probeResultWait)+1, 1_000_000)
	if p.maybeProbe(end+int64(2*probeBackoffMin)-int64(100*time.Millisecond), 2_000_000, 1_000_000, subs, stop) {
		t.Error("a cluster before the doubled backoff passed")
	}
	later := end + int64(2*probeBackoffMin) + int64(time.Millisecond)
	if !p.maybeProbe(later, 2_000_000, 1_000_000, subs, stop) {
		t.Fatal("no cluster after the doubled backoff")
	}
	// Confirmed: the next step may be probed for at once.
	if got := p.result(later+int64(100*time.Millisecond), 2_100_000); got != probeConfirmed {
		t.Fatalf("an estimate at the target: %v, want confirmed", got)
	}
	if got := p.result(later+int64(200*time.Millisecond), 2_100_000); got != probePending {
		t.Errorf("a second result: %v", got)
	}
	if p.maybeProbe(later+int64(200*time.Millisecond), 3_000_000, 2_100_000, subs, stop) {
		t.Error("a cluster while the upgrade a confirmed one allowed settles")
	}
	if !p.maybeProbe(later+int64(100*time.Millisecond+probeSettle), 3_000_000, 2_100_000, subs, stop) {
		t.Error("no cluster once the upgrade settled")
	}
	close(stop)
	if p.maybeProbe(later+int64(10*time.Second), 3_000_000, 2_100_000, subs, stop) {
		t.Error("a whole cluster after stop")
	}
}
