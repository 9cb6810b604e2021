package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// Probing: before the allocator moves a track up to a layer the estimate
// does not cover, the subscriber's path is tested with a short cluster of
// padding-only packets paced at the bitrate the upgrade needs. The
// estimator measures the cluster by its own packets (simulcast GCC): if the
// receiver got it at that rate without delay growth the estimate rises to
// it, and the allocator trusts it at once.
const (
	// probeClusterSpan is how long one cluster lasts: long enough for a
	// receive rate to be measured over many packets, short enough that a
	// full path only queues it briefly.
	probeClusterSpan = 40 * time.Millisecond
	// probeSlot paces the cluster: packets go out in bursts this far apart.
	probeSlot = 5 * time.Millisecond
	// probeMinBytes is the least a cluster carries, however low its rate
	// (it then lasts longer, up to probeMaxSpan): a bottleneck lets a
	// burst the size of its token bucket (at least a packet or two)
	// through at line rate, and a cluster no larger would measure that.
	probeMinBytes = 6000
	probeMaxSpan  = 300 * time.Millisecond
	// probeOvershoot paces a cluster above the estimate it tests for, so
	// that the rate measured (a little under the paced one) still reaches
	// it.
	probeOvershoot = 1.2
	// probeMinPackets and probeMaxPackets bound a cluster: the estimator
	// ignores clusters of fewer than 5 received packets.
	probeMinPackets = 10
	probeMaxPackets = 200
	// probeResultWait is how long a cluster's result may take to show in
	// the estimate (feedback comes every 50-100 ms).
	probeResultWait = time.Second
	// probeBackoffMin and probeBackoffMax space the clusters of an upgrade
	// the path keeps refusing: each failure doubles the wait, so that a
	// link at its capacity is tested rarely, but often enough that a link
	// that got better is noticed within seconds.
	probeBackoffMin = time.Second
	probeBackoffMax = 8 * time.Second
	// probeSettle is how long after a confirmed cluster the next one
	// waits: the upgrade it allowed starts with a keyframe of the new
	// layer, and a cluster on top of that burst would fail, or make the
	// congestion of the upgrade look like the probe's own.
	probeSettle = 2 * time.Second
)

// probeOutcome is what became of a probe cluster.
type probeOutcome int

const (
	probePending   probeOutcome = iota // no result yet, or no cluster
	probeConfirmed                     // the estimate reached the target
	probeFailed                        // it did not within probeResultWait
)

// prober paces probe clusters for one subscriber connection; it runs on
// the connection's allocation goroutine.
//
// A cluster that overfills the path makes the estimator see congestion
// of its own making: while its result is pending the allocator goes by the
// estimate from before it (shield), and when it failed the estimate is
// restored to that, so that probing never costs a subscriber its layer.
type prober struct {
	target  uint64 // estimate the pending cluster tests for, 0: none pending
	before  uint64 // the estimate when the pending cluster was sent
	sentAt  int64  // when the pending cluster ended
	next    int64  // earliest start of the next cluster
	upAt    int64  // when a track last went up
	backoff time.Duration
}

// upgraded notes that a track went up at now: no cluster for probeSettle,
// so that the congestion a cluster meets is its own.
func (p *prober) upgraded(now int64) { p.upAt = now }

// idle forgets a pending cluster: nothing is subscribed.
func (p *prober) idle() { p.target = 0 }

// result reports, once, that the estimate reached the pending cluster's
// target (confirmed: the next step may be probed for after probeSettle), or that it
// did not within probeResultWait (failed).
func (p *prober) result(now int64, estimate uint64) probeOutcome {
	if p.target == 0 {
		return probePending
	}
	if estimate >= p.target {
		p.target, p.backoff, p.next = 0, 0, now+int64(probeSettle)
		return probeConfirmed
	}
	if now-p.sentAt > int64(probeResultWait) {
		p.target = 0
		return probeFailed
	}
	return probePending
}

// shield is the estimate to allocate by: while a cluster's result is
// pending, not below the estimate from before it.
func (p *prober) shield(estimate uint64) uint64 {
	if p.target != 0 {
		return max(estimate, p.before)
	}
	return estimate
}

// maybeProbe sends a cluster testing for an estimate of want bits/s (the
// estimate now being estimate) on one
// of the subscriptions' video streams, unless one is pending or the
// backoff has not passed, and reports whether it sent one. It returns
// early when stop closes.
func (p *prober) maybeProbe(now int64, want, estimate uint64, subs []*subscription, stop <-chan struct{}) bool {
	if p.target != 0 || now < p.next || (p.upAt != 0 && now-p.upAt < int64(probeSettle)) {
		return false
	}
	rate := float64(want) * probeOvershoot
	bytes := max(int(rate*probeClusterSpan.Seconds()/8), probeMinBytes)
	span := min(time.Duration(float64(bytes)*8/rate*float64(time.Second)), probeMaxSpan)
	bytes = int(rate * span.Seconds() / 8)
	n := min(max(bytes/maxPaddingBytes, probeMinPackets), probeMaxPackets)
	size := min(max(bytes/n, 1), maxPaddingBytes)
	dt := paddingTrack(subs)
	if dt == nil || !sendCluster(dt, n, size, max(span, probeClusterSpan), stop) {
		return false
	}
	end := time.Now().UnixNano()
	p.target, p.before, p.sentAt = want, estimate, end
	p.backoff = min(max(2*p.backoff, probeBackoffMin), probeBackoffMax)
	p.next = end + int64(p.backoff)
	return true
}

// paddingTrack picks the video DownTrack to carry padding: the first that
// is bound and forwards (or forwarded before the allocator paused it).
func paddingTrack(subs []*subscription) *DownTrack {
	for _, sub := range subs {
		dt := sub.dt
		if dt.Kind() == webrtc.RTPCodecTypeVideo && !dt.Paused() && dt.bound.Load() != nil && dt.mungerStarted() {
			return dt
		}
	}
	return nil
}

// sendCluster writes n padding packets of size bytes on dt, spread evenly
// over span in probeSlot steps. It reports whether all went out.
func sendCluster(dt *DownTrack, n, size int, span time.Duration, stop <-chan struct{}) bool {
	slots := int(span / probeSlot)
	timer := time.NewTimer(probeSlot)
	defer timer.Stop()
	sent := 0
	for k := 1; k <= slots; k++ {
		due := n * k / slots
		if due > sent {
			if dt.WritePadding(due-sent, size) == 0 {
				return false
			}
			sent = due
		}
		if k == slots {
			break
		}
		timer.Reset(probeSlot)
		select {
		case <-stop:
			return false
		case <-timer.C:
		}
	}
	return true
}
