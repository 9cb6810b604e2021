package simulcast

import (
	"math"
	"time"
)

// AIMD rate control parameters.
const (
	// decreaseFactor: on overuse the estimate drops to 0.9 x what the
	// bottleneck delivered while it was full (deliveredRate), so the queue
	// drains.
	decreaseFactor = 0.9
	// increasePerSec: multiplicative increase, 8 % per second, while the
	// estimate is far from the last congestion point.
	increasePerSec = 1.08
	// startupPerSec: until the first congestion (delay overuse or heavy
	// loss) the estimate grows 50 % per second, like TCP slow start, so a
	// subscriber reaches a 2 Mbit/s layer from 1 Mbit/s in under two
	// seconds without probes. The acked cap below still keeps it within
	// 1.5 x of what actually got through.
	startupPerSec = 1.5
	// ackedCapFactor and ackedCapExtra: an increase never takes the
	// estimate above 1.5 x the acked bitrate + 10 kbit/s, so it cannot run
	// away from what is sent (only a probe result can lift it higher).
	ackedCapFactor = 1.5
	ackedCapExtra  = 10_000
	// additivePacketBits and additiveMin: near the last congestion point
	// the estimate grows by one 1200-byte packet per response time
	// (RTT + 100 ms), at least 4 kbit/s per second.
	additivePacketBits = 1200 * 8
	additiveMin        = 4_000
	responseExtra      = 100 * time.Millisecond
	// maxIncreaseStep bounds the time one increase accounts for (a gap in
	// feedback is not a license to jump).
	maxIncreaseStep = time.Second
)

// Link capacity estimate: the acked bitrates at congestion, their mean and
// relative deviation. Within mean +- 3 deviations the controller increases
// additively; an acked bitrate above that range forgets the estimate.
const (
	capacityAlpha  = 0.25
	capacityDevNew = 0.05
	capacityDevMin = 0.02
	capacityDevMax = 0.5
)

// linkCapacity remembers where congestion happened.
type linkCapacity struct {
	known     bool
	mean, dev float64
}

func (c *linkCapacity) upper() float64 { return c.mean * (1 + 3*c.dev) }
func (c *linkCapacity) lower() float64 { return c.mean * (1 - 3*c.dev) }

// onCongestion folds in the acked bitrate at a congestion event; one far
// off the known range starts a new estimate.
func (c *linkCapacity) onCongestion(acked float64) {
	if !c.known || acked > c.upper() || acked < c.lower() {
		*c = linkCapacity{known: true, mean: acked, dev: capacityDevNew}
		return
	}
	rel := math.Abs(acked-c.mean) / c.mean
	c.mean += capacityAlpha * (acked - c.mean)
	c.dev = (1-capacityAlpha)*c.dev + capacityAlpha*rel
	c.dev = math.Min(math.Max(c.dev, capacityDevMin), capacityDevMax)
}

// rateControl is the delay-based AIMD controller.
type rateControl struct {
	rate         float64 // bits per second
	startup      bool
	lastUpdate   int64
	updated      bool
	lastDecrease int64
	decreased    bool
	capacity     linkCapacity
	// ackedProbed: the acked bitrate of this update counts probe packets.
	ackedProbed bool
}

func (r *rateControl) init(rate float64) { *r = rateControl{rate: rate, startup: true} }

// endStartup leaves the start-up ramp (after congestion).
func (r *rateControl) endStartup() { r.startup = false }

// update applies one feedback's delay signal: decrease on overuse,
// increase when normal, hold when a queue drains.
func (r *rateControl) update(now int64, sig DelaySignal, acked float64, ackedOK bool, recent float64, rtt time.Duration) {
	var dt float64
	if r.updated {
		dt = float64(min(max(now-r.lastUpdate, 0), int64(maxIncreaseStep))) / 1e9
	}
	r.lastUpdate, r.updated = now, true
	switch sig {
	case DelayOverusing:
		r.decrease(now, acked, ackedOK, recent, rtt)
	case DelayNormal:
		r.increase(dt, acked, ackedOK, rtt)
	}
}

// decrease drops the rate to decreaseFactor x the recently acked bitrate
// (recent, what the bottleneck delivered over the last ackedRecentSpan), at
// most once per response time unless the rate is more than twice the acked
// one. An overuse while the rate is already at or under what the receiver
// gets is the backlog of an earlier overload draining (the sender's switch
// to a lower layer waits for a keyframe, and the queue it filled takes a
// while to empty): it is not a reason to go lower.
func (r *rateControl) decrease(now int64, acked float64, ackedOK bool, recent float64, rtt time.Duration) {
	since := now - r.lastDecrease
	tooSoon := r.decreased && since >= 0 && since < int64(rtt+responseExtra)
	if tooSoon && !(ackedOK && r.rate > 2*acked) {
		return
	}
	if recent > 0 && r.decreased && r.rate <= recent {
		return
	}
	target := decreaseFactor * r.rate
	if recent > 0 {
		target = decreaseFactor * recent
		r.noteCongestion(recent, r.ackedProbed)
	} else if ackedOK {
		target = 0.85 * acked
		r.noteCongestion(acked, r.ackedProbed)
	}
	r.rate = math.Min(r.rate, target)
	r.startup = false
	r.lastDecrease, r.decreased = now, true
}

// noteCongestion folds the rate delivered at a congestion into the link
// capacity. A probe cluster's own congestion (probed: its packets in the
// acked window, or its own saturated result) measures a path that was
// overfilled and dropping: it pulls a known capacity down at most to the
// low end of its range.
func (r *rateControl) noteCongestion(delivered float64, probed bool) {
	if probed && r.capacity.known {
		delivered = max(delivered, r.capacity.lower())
	}
	r.capacity.onCongestion(delivered)
}

// increase grows the rate for dt seconds: fast during start-up,
// multiplicatively far from the last congestion point, additively near it,
// never above the acked cap.
func (r *rateControl) increase(dt, acked float64, ackedOK bool, rtt time.Duration) {
	// A probe cluster's padding in the acked window may be a token
	// bucket's burst at the sender's pace: only the cluster's own result
	// (raise) tells that the link carries more.
	if ackedOK && !r.ackedProbed && r.capacity.known && acked > r.capacity.upper() {
		r.capacity = linkCapacity{}
	}
	var next float64
	switch {
	case r.startup:
		next = r.rate * math.Pow(startupPerSec, dt)
	case r.capacity.known:
		perSec := math.Max(additivePacketBits/(rtt+responseExtra).Seconds(), additiveMin)
		next = r.rate + perSec*dt
	default:
		next = r.rate * math.Pow(increasePerSec, dt)
	}
	if ackedOK {
		if limit := ackedCapFactor*acked + ackedCapExtra; next > limit {
			next = math.Max(r.rate, limit)
		}
	}
	r.rate = next
}

// raise lifts the rate to a probe result that showed no delay growth.
func (r *rateControl) raise(p float64) {
	if p <= r.rate {
		return
	}
	r.rate = p
	if r.capacity.known && p > r.capacity.upper() {
		r.capacity = linkCapacity{}
	}
}

// clamp keeps the rate within [lo, hi].
func (r *rateControl) clamp(lo, hi float64) {
	if !(r.rate >= lo) {
		r.rate = lo
	}
	r.rate = math.Min(r.rate, hi)
}

// Acked bitrate measurement: received bytes over the last 500 ms of
// arrival time, in 10 ms buckets.
const (
	ackedBucket   = int64(10e6)
	ackedBuckets  = 50
	ackedMinSpan  = 20  // buckets (200 ms) measured before a rate is reported
	ackedBackJump = 200 // buckets (2 s): an arrival this far back restarts
)

// ackedRate measures the bitrate the receiver got, on its own clock.
type ackedRate struct {
	bytes   [ackedBuckets]int64
	sum     int64
	newest  int64 // bucket number of the newest arrival
	first   int64 // bucket number where measurement (re)started
	started bool
}

func (a *ackedRate) restart(idx int64) {
	*a = ackedRate{newest: idx, first: idx, started: true}
}

// add counts a received packet.
func (a *ackedRate) add(arrival int64, size int) {
	if size <= 0 {
		return
	}
	idx := arrival / ackedBucket
	if arrival < 0 && arrival%ackedBucket != 0 {
		idx--
	}
	if !a.started {
		a.restart(idx)
	}
	switch diff := idx - a.newest; {
	case diff >= ackedBuckets:
		a.restart(idx) // silence longer than the window: start over
	case diff > 0:
		for i := a.newest + 1; i <= idx; i++ {
			s := bucketSlot(i)
			a.sum -= a.bytes[s]
			a.bytes[s] = 0
		}
		a.newest = idx
	case diff < -ackedBackJump:
		a.restart(idx) // the receiver's clock jumped back
	case diff <= -ackedBuckets:
		return // too old for the window
	}
	a.bytes[bucketSlot(idx)] += int64(size)
	a.sum += int64(size)
}

func bucketSlot(i int64) int {
	s := i % ackedBuckets
	if s < 0 {
		s += ackedBuckets
	}
	return int(s)
}

// ackedRecentSpan is the span, in buckets, of the recent acked bitrate: the
// 300 ms of arrivals before the newest (still filling) bucket. After a token bucket empties, the queue behind
// it shows as delay growth within a few group deltas; the 500 ms window
// would still hold the bucket's burst at line rate by then, this one
// mostly what the bottleneck let through since.
const ackedRecentSpan = 30

// recent is the bitrate the receiver got over the ackedRecentSpan buckets
// of arrival time before the newest, or 0 before that much is measured.
func (a *ackedRate) recent() float64 {
	if !a.started || a.newest-a.first < ackedRecentSpan {
		return 0
	}
	var sum int64
	for i := a.newest - ackedRecentSpan; i < a.newest; i++ {
		sum += a.bytes[bucketSlot(i)]
	}
	return float64(sum) * 8 / (float64(ackedRecentSpan*ackedBucket) / 1e9)
}

// newestArrival is the start of the newest bucket with an arrival.
func (a *ackedRate) newestArrival() int64 { return a.newest * ackedBucket }

// rate is the acked bitrate, once enough time is measured.
func (a *ackedRate) rate() (float64, bool) {
	span := min(a.newest-a.first+1, ackedBuckets)
	if !a.started || span < ackedMinSpan || a.sum <= 0 {
		return 0, false
	}
	return float64(a.sum) * 8 / (float64(span*ackedBucket) / 1e9), true
}
