package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// Probing: before the allocator moves a track up to a layer the estimate
// does not cover, the subscriber's path is tested with a cluster of
// padding-only packets paced above the bitrate the upgrade needs, on top of
// the media. The estimator measures the cluster by its own packets, over
// its tail (simulcast GCC): if the receiver got the tail at that rate
// without delay growth the estimate rises to it, and the allocator trusts
// it at once.
//
// A token bucket in the path (home routers, cable and mobile shapers hold
// tens of kilobytes) passes a burst its size at the sender's pace: a
// cluster must push more than any plausible bucket through before its tail
// says anything. So a cluster lasts long enough for its excess over the
// bitrate it tests (the overshoot plus the media) to empty probeBucketBytes
// and then probeTailTime more, and it ends early as soon as the estimator
// sees its tail saturate the path (GCC.ProbeSaturated): a failed probe
// costs one feedback interval of overfill, not the whole cluster.
const (
	// probeBucketBytes is the largest token bucket the prober plans for.
	probeBucketBytes = 64 << 10
	// probeTailTime is how long a cluster runs after the bucket is empty:
	// the estimator measures the last 100 ms.
	probeTailTime = 150 * time.Millisecond
	// probeMinSpan and probeMaxSpan bound a cluster's length.
	probeMinSpan = 300 * time.Millisecond
	probeMaxSpan = 1900 * time.Millisecond
	// probeSlot paces the cluster: packets go out in bursts this far apart.
	probeSlot = 5 * time.Millisecond
	// probeOvershoot paces a cluster above the estimate it tests for, so
	// that the rate measured (a little under the paced one) still reaches
	// it, and so that a path just short of it fills.
	probeOvershoot = 1.25
	// probeConfirmOvershoot paces the cluster for an upgrade's own rate:
	// higher, so that it is shorter (exploring clusters have shown the
	// path carries most of it).
	probeConfirmOvershoot = 1.5
	// probeMinPackets and probeMaxPackets bound a cluster (padding-only
	// packets carry at most 255 bytes).
	probeMinPackets = 10
	probeMaxPackets = 1600
	// probeResultWait is how long a cluster's result may take to show in
	// the estimate (feedback comes every 50-100 ms).
	probeResultWait = time.Second
	// probeBackoffMin and probeBackoffMax space the clusters of an upgrade
	// the path keeps refusing: each failure doubles the wait, so that a
	// link at its capacity is tested rarely, but often enough that a link
	// that got better is noticed within seconds (a lifted cap is found
	// within probeBackoffMax plus a cluster).
	probeBackoffMin = time.Second
	probeBackoffMax = 2 * time.Second
	// probeSettle is how long after an upgrade the next cluster waits:
	// the upgrade starts with a keyframe of the new layer (a round trip
	// and a frame or two after the switch), and a cluster on top of that
	// burst would fail, or make the congestion of the upgrade look like
	// the probe's own.
	probeSettle = 500 * time.Millisecond
)

// probeReach is how far above the path's known rate one cluster tests
// (the link capacity the estimator saw when the path was last full, or the
// estimate): a path capped well under an upgrade's need is then overfilled
// only a little, so that the frames queued behind the padding stay close
// and a shallow queue barely overflows, while a lifted cap is found in two
// clusters (one that explores, one that confirms the upgrade).
//
// Each confirmed cluster doubles the reach of the next (up to
// probeReachMax), so that a path that got much better (a cap lifted from
// 300 kbit/s) is climbed in three clusters, not six; a failed one resets it.
const (
	probeReach    = 1.5
	probeReachMax = 4
)

// probeTest is the bitrate a cluster tests for when want is what the next
// upgrade needs, with reach (0: probeReach), and the rate it may assume
// the path carries (known).
func probeTest(want, estimate, capacity uint64, reach float64) (test, known uint64) {
	known = max(estimate, 1)
	if capacity > 0 {
		known = min(known, capacity)
	}
	if reach == 0 {
		reach = probeReach
	}
	// Never under the estimate: a cluster the estimate already covers
	// would tell nothing.
	test = max(uint64(float64(known)*reach), uint64(float64(estimate)*probeAboveEstimate))
	return min(want, test), known
}

// probeAboveEstimate is the least a cluster tests for, over the estimate.
const probeAboveEstimate = 1.1

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
	startAt int64  // when the pending cluster started
	before  uint64 // the estimate when the pending cluster was sent
	sentAt  int64  // when the pending cluster ended
	next    int64  // earliest start of the next cluster
	upAt    int64  // when a track last went up
	backoff time.Duration
	reach   float64 // of the next cluster (0: probeReach)
	last    probeCluster
}

// probeCluster describes the last cluster sent, for logs.
type probeCluster struct {
	test          uint64  // bits/s tested for
	top           float64 // bits/s the tail was paced at
	planned, took time.Duration
	full          bool // ended early: it filled the path
}

// upgraded notes that a track went up at now: no cluster for probeSettle,
// so that the congestion a cluster meets is its own.
func (p *prober) upgraded(now int64) { p.upAt = now }

// idle forgets a pending cluster: nothing is subscribed.
func (p *prober) idle() { p.target = 0 }

// result reports, once, that the estimate rose to the pending cluster's
// target (confirmed: the next step may be probed for after probeSettle), or that it
// did not within probeResultWait (failed). saturated reports that the
// estimator saw the cluster fill the path: the estimate may still cross
// the target (its additive increase, say), but not on this cluster's
// evidence, so it is no confirmation.
func (p *prober) result(now int64, estimate uint64, saturated bool) probeOutcome {
	if p.target == 0 {
		return probePending
	}
	filled := saturated || p.last.full
	if !filled && estimate >= p.target && (estimate > p.before || p.target <= p.before) {
		p.target, p.backoff, p.next = 0, 0, now
		p.reach = min(2*max(p.reach, probeReach), probeReachMax)
		return probeConfirmed
	}
	if now-p.sentAt > int64(probeResultWait) {
		p.target, p.reach = 0, 0
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
func (p *prober) maybeProbe(now int64, want, media, estimate, capacity uint64, subs []*subscription, saturated func(since int64) bool, stop <-chan struct{}) bool {
	if p.target != 0 || now < p.next || (p.upAt != 0 && now-p.upAt < int64(probeSettle)) {
		return false
	}
	test, known := probeTest(want, estimate, capacity, p.reach)
	plan := probePlan(test, want, known, capacity, media)
	dt := paddingTrack(subs)
	if dt == nil {
		return false
	}
	ok, full := sendCluster(dt, plan, saturated, stop)
	if !ok {
		return false
	}
	end := time.Now().UnixNano()
	p.last = probeCluster{test: test, top: plan.top, planned: plan.span, took: time.Duration(end - now), full: full}
	p.target, p.before, p.sentAt, p.startAt = test, estimate, end, now
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
