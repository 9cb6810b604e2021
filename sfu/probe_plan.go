package sfu

import (
	"math"
	"time"
)

// A cluster that explores ramps: media and padding together start at the
// rate the path is known to carry and grow linearly to the cluster's top
// rate, which they hold for probeTailTime, the tail the estimator
// measures. The cluster for an upgrade's own rate, once exploring ones
// have shown the path carries most of it, is paced flat at its top rate.
//
// The ramp is for the shapers' buckets. A cluster must push a plausible
// bucket's worth (probeBucketBytes) through above the link's rate before
// its tail says anything, which at a low rate takes a top rate far above
// the link. Paced flat, that excess would hit a small bucket and a shallow
// queue at once, and the queue would overflow before the first feedback
// showed it (feedback comes every 50-100 ms): a failed probe would cost
// the media behind it. Ramped, a small bucket is empty while the excess is
// still small, so the queue fills slowly, and the cluster stops
// (ProbeSaturated) with little overfill; a large bucket takes the ramp's
// larger excess, and the queue behind it (a tbf queue holds the bucket plus
// rate x latency) has the room.

// clusterPlan is how one cluster is paced.
type clusterPlan struct {
	n, size    int           // padding packets and their size
	ramp, span time.Duration // the ramp, and the whole cluster (ramp and tail)
	// start and top are the rates (bits/s) of media and padding together
	// at the start of the ramp and over the tail; media is what the media
	// takes of them.
	start, top, media float64
}

// probeCountMargin is how much more than the estimator a shaper may count
// of the same packets (link-layer framing).
const probeCountMargin = 1.15

// probePlan plans a cluster testing for test bits/s, want being what the
// next upgrade needs, while the media takes media bits/s, the path being
// known to carry known bits/s and to have delivered capacity bits/s when
// last full (0: unknown).
//
// The cluster's excess over floor, the rate it must tell apart, empties a
// probeBucketBytes bucket by the end of the ramp. For the upgrade's own
// rate (test at want) floor is that rate: a path just short of it must
// fill. For a cluster that only explores (test under want) it is the rate
// the path is known to carry: a path still at it fills soon, and one that
// is not is confirmed by the upgrade's cluster. Either way floor is at
// least the capacity the path showed, with probeCountMargin: the excess
// must be over the link's real rate. The top rate is at least test times
// the overshoot, and higher when the ramp could not otherwise empty the
// bucket within probeMaxSpan.
func probePlan(test, want, known, capacity, media uint64) clusterPlan {
	explore := test < want
	overshoot, floor := probeConfirmOvershoot, float64(test)
	if explore {
		overshoot, floor = probeOvershoot, float64(min(known, test))
	}
	floor = max(floor, float64(capacity)) * probeCountMargin
	bucket := float64(probeBucketBytes * 8)
	longest := (probeMaxSpan - probeTailTime).Seconds()
	var plan clusterPlan
	if explore {
		// Ramped: it spends (top-floor)^2 / (2 slope) seconds above floor.
		start := min(float64(known), floor)
		top := max(float64(test)*overshoot, floor+rampExcess(bucket/longest, floor-start))
		plan.start, plan.top = start, top
		plan.ramp = time.Duration(2 * bucket * (top - start) / ((top - floor) * (top - floor)) * float64(time.Second))
	} else {
		// Flat: exploring clusters have shown the path carries most of
		// it, and a flat cluster is shorter, so the upgrade comes sooner.
		top := max(float64(test)*overshoot, floor+bucket/longest)
		plan.start, plan.top = top, top
		plan.ramp = time.Duration(bucket / (top - floor) * float64(time.Second))
	}
	plan.ramp = min(max(plan.ramp, probeMinSpan-probeTailTime), probeMaxSpan-probeTailTime)
	plan.span, plan.media = plan.ramp+probeTailTime, float64(media)
	bytes := int(plan.paddingBits(plan.span) / 8)
	plan.n = min(max(bytes/maxPaddingBytes, probeMinPackets), probeMaxPackets)
	plan.size = min(max(bytes/plan.n, 1), maxPaddingBytes)
	return plan
}

// rampExcess is how far above floor (bits/s) a ramp that starts under
// below it must end to push a bucket through above floor within the
// longest ramp, c being the bucket over that ramp's length: the excess
// above floor is x^2 / (2 slope) with slope (x + under) / longest, so x
// solves x^2 = 2c (x + under).
func rampExcess(c, under float64) float64 {
	return c + math.Sqrt(c*c+2*c*under)
}

// paddingRate is the padding's rate (bits/s) at t into the cluster: the
// planned total less the media, and at least a little, so that the
// cluster's packets keep coming from its start.
func (p *clusterPlan) paddingRate(t time.Duration) float64 {
	total := p.top
	if t < p.ramp {
		total = p.start + (p.top-p.start)*t.Seconds()/p.ramp.Seconds()
	}
	return max(total-p.media, p.top*(probeOvershoot-1)/4)
}

// paddingBits is the padding (bits) due by t into the cluster: the
// integral of paddingRate, in probeSlot steps.
func (p *clusterPlan) paddingBits(t time.Duration) float64 {
	var bits float64
	for at := time.Duration(0); at < t; at += probeSlot {
		bits += p.paddingRate(at+probeSlot/2) * min(probeSlot, t-at).Seconds()
	}
	return bits
}

// probePacketGap is the longest a cluster goes without a padding packet:
// the estimator ends a cluster at a pause of 20 ms (simulcast probeGap), so
// the sparse start of a ramp sends smaller packets rather than fewer.
const probePacketGap = 3 * probeSlot

// sendCluster writes the plan's padding on dt, slot by slot, and stops
// early when saturated reports that the cluster filled the path. It
// reports whether it went out (all of it, or until it saturated).
func sendCluster(dt *DownTrack, plan clusterPlan, saturated func(since int64) bool, stop <-chan struct{}) (ok, full bool) {
	since := time.Now().UnixNano()
	total := plan.paddingBits(plan.span)
	planned := float64(plan.n * plan.size)
	slots := int(plan.span / probeSlot)
	timer := time.NewTimer(probeSlot)
	defer timer.Stop()
	var bits, sentBytes float64
	idle := time.Duration(0)
	for k := 1; k <= slots; k++ {
		bits += plan.paddingRate(time.Duration(k)*probeSlot-probeSlot/2) * probeSlot.Seconds()
		due := planned * bits / total
		if k == slots {
			due = planned
		}
		count, size := plan.slotPackets(due-sentBytes, idle)
		idle += probeSlot
		if count > 0 {
			if dt.WritePadding(count, size) == 0 {
				return false, false
			}
			sentBytes += float64(count * size)
			idle = 0
		}
		if k == slots {
			break
		}
		if saturated(since) {
			return true, true
		}
		timer.Reset(probeSlot)
		select {
		case <-stop:
			return false, false
		case <-timer.C:
		}
	}
	return true, false
}

// slotPackets is what one slot sends when pending bytes are due and no
// padding went out for idle: whole packets of the plan's size, or, once
// probePacketGap passed without one, a single smaller packet.
func (p *clusterPlan) slotPackets(pending float64, idle time.Duration) (count, size int) {
	if n := int(pending) / p.size; n > 0 {
		return n, p.size
	}
	if idle+probeSlot >= probePacketGap && pending >= 1 {
		return 1, int(pending)
	}
	return 0, 0
}
