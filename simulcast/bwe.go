package simulcast

import (
	"math"
	"time"
)

// PacketResult is one sent packet as transport-wide feedback reports it.
type PacketResult struct {
	Seq      uint16 // transport-wide sequence number (informational)
	SendTime int64  // unix nanoseconds when the SFU sent it
	Arrival  int64  // receiver's arrival time in nanoseconds (any base, from the feedback), valid when Received
	Size     int    // bytes on the wire (RTP header + payload + padding)
	Received bool
	Probe    bool // a padding/probe packet (sent to test for headroom)
}

// BandwidthEstimator estimates, from a subscriber's feedback, the bitrate
// its path can carry. Not safe for concurrent use: the caller serializes.
type BandwidthEstimator interface {
	// OnFeedback takes one transport-wide feedback; results in send order.
	OnFeedback(now int64, results []PacketResult)
	// OnREMB takes a receiver's own estimate, which caps ours for a while.
	OnREMB(now int64, bps uint64)
	// OnRTT takes a round-trip time measurement (from RTCP).
	OnRTT(now int64, rtt time.Duration)
	// Estimate is the bitrate, in bits per second, the path can carry.
	Estimate(now int64) uint64
	// State is a snapshot of the estimator for logs and debugging.
	State(now int64) BWEState
	// Restore undoes a decrease that the caller's own failed probe caused.
	Restore(bps uint64)
	// LinkCapacity is what the path delivered when it was last full, 0
	// when unknown: a prober tests little above it.
	LinkCapacity() uint64
	// ProbeSaturated reports whether the probe cluster whose first packet
	// was sent at or after since (unix ns) has filled the path: its tail
	// arrives well under its send rate. The planner ends it then.
	ProbeSaturated(since int64) bool
}

// Default bitrates of GCCConfig, in bits per second.
//
// The initial 2.5 Mbit/s lets a subscriber start on a top simulcast layer
// (typically 1.2-2 Mbit/s) at once, as the anchors do: on an open link the
// top layer is decoded within the first keyframe's round trip. A path that
// cannot carry it shows it in the first feedback: once any token bucket in
// it is empty, queueing delay grows within a few frames, and the estimate
// drops to what the bottleneck delivered (decreaseFactor), from which the
// allocator picks the best layer that fits.
const (
	DefaultInitialBitrate = 2_500_000
	DefaultMinBitrate     = 30_000
	DefaultMaxBitrate     = 20_000_000
)

// RembTimeout is how long a REMB caps the estimate: three times Chrome's
// one-second REMB interval, so two lost REMBs do not release the cap.
const RembTimeout = 3 * time.Second

// GCCConfig bounds a GCC estimator, in bits per second. Zero fields take the
// defaults; Initial is clamped to [Min, Max].
type GCCConfig struct {
	Initial uint64
	Min     uint64
	Max     uint64
}

// withDefaults fills zero fields and makes the bounds consistent.
func (c GCCConfig) withDefaults() GCCConfig {
	if c.Min == 0 {
		c.Min = DefaultMinBitrate
	}
	if c.Max == 0 {
		c.Max = DefaultMaxBitrate
	}
	if c.Max < c.Min {
		c.Max = c.Min
	}
	if c.Initial == 0 {
		c.Initial = DefaultInitialBitrate
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	return c
}

// DelaySignal is what the delay-based detector concludes about the path.
type DelaySignal uint8

// Delay signals.
const (
	// DelayNormal: queueing delay is stable.
	DelayNormal DelaySignal = iota
	// DelayOverusing: queueing delay grows; the path is congested.
	DelayOverusing
	// DelayUnderusing: queueing delay shrinks; a queue is draining.
	DelayUnderusing
)

// String names the signal for logs.
func (s DelaySignal) String() string {
	switch s {
	case DelayNormal:
		return "normal"
	case DelayOverusing:
		return "overusing"
	case DelayUnderusing:
		return "underusing"
	}
	return "unknown"
}

// BWEState is a snapshot of an estimator for logs and debugging. Bitrates
// are in bits per second.
type BWEState struct {
	Estimate   uint64        // final estimate (what Estimate returns)
	DelayBased uint64        // delay-based (AIMD) estimate
	LossBased  uint64        // loss-based cap, 0 when loss does not limit
	REMB       uint64        // receiver's cap, 0 when none is current
	Acked      uint64        // bitrate the receiver got, 0 until measured
	Signal     DelaySignal   // delay detector's conclusion
	Trend      float64       // modified delay trend compared to Threshold (ms)
	Threshold  float64       // adaptive overuse threshold (ms)
	LossRatio  float64       // lost fraction of the last loss window
	Startup    bool          // still ramping up before the first congestion
	RTT        time.Duration // last round-trip time given to OnRTT
}

// GCC is a send-side bandwidth estimator after Google Congestion Control
// (draft-ietf-rmcat-gcc): a delay-based AIMD controller driven by a
// trendline of one-way delay variation, capped by a loss-based controller
// and by the receiver's REMB. It implements BandwidthEstimator.
type GCC struct {
	min, max float64

	groups   interArrival
	trend    trendline
	detector overuseDetector
	acked    ackedRate
	rate     rateControl
	loss     lossControl
	probe    probeMeter
	queue    queueWatch
	busy     busyMeter

	// The congestion episode: the highest recent acked bitrate seen while
	// overusing since episodeAt (see deliveredRate).
	episodePeak float64
	episodeAt   int64
	episode     bool

	// probeArrival is the arrival of the latest probe packet received
	// (probeSeen: one was): while the acked window holds it, the acked
	// bitrate may be a bucket's burst, not the link's rate.
	probeArrival int64
	probeSeen    bool

	remb   float64
	rembAt int64
	isREMB bool
	rtt    time.Duration
}

var _ BandwidthEstimator = (*GCC)(nil)

// defaultRTT is assumed until OnRTT reports one.
const defaultRTT = 100 * time.Millisecond

// NewGCC returns an estimator starting at cfg.Initial.
func NewGCC(cfg GCCConfig) *GCC {
	cfg = cfg.withDefaults()
	g := &GCC{min: float64(cfg.Min), max: float64(cfg.Max), rtt: defaultRTT}
	g.detector.reset()
	g.rate.init(float64(cfg.Initial))
	return g
}

// OnFeedback takes the results of one transport-wide feedback, in send
// order. It does not allocate.
func (g *GCC) OnFeedback(now int64, results []PacketResult) {
	if len(results) == 0 {
		return
	}
	overused, received := false, false
	for i := range results {
		r := &results[i]
		g.loss.add(r)
		g.probe.add(r)
		if !r.Received {
			continue
		}
		received = true
		if r.Probe && (!g.probeSeen || r.Arrival > g.probeArrival) {
			g.probeArrival, g.probeSeen = r.Arrival, true
		}
		g.acked.add(r.Arrival, r.Size)
		g.busy.add(r)
		d, st := g.groups.add(r.SendTime, r.Arrival)
		switch st {
		case groupReset:
			g.trend.reset()
			g.queue.reset()
			g.detector.resetTime()
		case groupDelta:
			if g.onDelta(d) == DelayOverusing {
				overused = true
			}
		}
	}
	signal := g.detector.signal
	if overused {
		signal = DelayOverusing
	}
	acked, ackedOK := g.acked.rate()
	delivered := g.deliveredRate(now, signal)
	if received {
		g.rate.ackedProbed = g.probeSeen && g.acked.newestArrival()-g.probeArrival < ackedBuckets*ackedBucket
		g.rate.update(now, signal, acked, ackedOK, delivered, g.rtt)
	}
	g.probe.update()
	best, full := g.probe.take()
	if best > 0 && signal != DelayOverusing && g.detector.trend < g.detector.threshold {
		g.rate.raise(best)
	}
	if c := &g.rate.capacity; full > 0 && (!c.known || full < c.mean) {
		// An upper bound on what the path carries. A cluster that ended
		// early is measured over few packets: it pulls a known capacity
		// down at most to the low end of its range (congestion of the
		// media itself resets it), so that one low reading does not start
		// a new estimate that the media's own acked rate then clears.
		g.rate.noteCongestion(full, true)
	}
	if g.loss.update(now, g.current(now), g.rate.rate, delivered) {
		g.rate.endStartup()
	}
	g.rate.clamp(g.min, g.max)
	g.loss.clamp(g.min, g.max)
}

// episodeSpan is how long a congestion episode keeps the highest bitrate
// delivered during it.
const episodeSpan = int64(2e9)

// deliveredRate is what the bottleneck delivers while it is full: the
// highest rate seen while overusing in the current episode (up to
// episodeSpan long), or the rate now outside one; the rate is the
// bottleneck's while busy (busyMeter) when a queue stood recently, else
// the recent acked bitrate. Once the SFU has cut the rate (a layer switch, which waits for a
// keyframe) the receiver gets less than the link carries while the queue
// drains: the peak of the episode is the link's rate, the latest value
// only the sender's.
func (g *GCC) deliveredRate(now int64, signal DelaySignal) float64 {
	recent := g.acked.recent()
	if busy := g.busy.rate(); busy > 0 {
		recent = busy
	}
	if signal != DelayOverusing {
		if g.episode && now-g.episodeAt <= episodeSpan {
			return math.Max(g.episodePeak, recent)
		}
		return recent
	}
	if !g.episode || now-g.episodeAt > episodeSpan || now < g.episodeAt {
		g.episode, g.episodeAt, g.episodePeak = true, now, recent
	}
	g.episodePeak = math.Max(g.episodePeak, recent)
	return g.episodePeak
}

// onDelta runs one inter-group delay variation through the trendline and
// the overuse detector.
func (g *GCC) onDelta(d groupDeltas) DelaySignal {
	slope, ok := g.trend.update(d)
	g.queue.add(d.at, g.trend.acc)
	sig := g.detector.signal
	if ok {
		sig = g.detector.detect(g.trend.modified(slope), d)
	}
	if g.queue.growing() {
		return DelayOverusing
	}
	return sig
}

// OnREMB caps the estimate at a receiver's own estimate for RembTimeout.
func (g *GCC) OnREMB(now int64, bps uint64) {
	g.remb, g.rembAt, g.isREMB = float64(bps), now, true
}

// OnRTT takes a round-trip time measurement; it paces decreases and the
// additive increase.
func (g *GCC) OnRTT(now int64, rtt time.Duration) {
	if rtt <= 0 {
		return
	}
	g.rtt = min(rtt, 10*time.Second)
}

// rembCap is the REMB bitrate if one is current at now.
func (g *GCC) rembCap(now int64) (float64, bool) {
	if !g.isREMB {
		return 0, false
	}
	age := now - g.rembAt
	if age > int64(RembTimeout) || age < -int64(RembTimeout) {
		return 0, false
	}
	return g.remb, true
}

// Restore raises the estimate back to bps when a decrease took it below:
// the caller's probe cluster overfilled the path, so the congestion was
// the probe's own and the media alone fitted. What the estimator learnt of
// the link's capacity at that congestion is kept, so that it grows
// carefully around it.
func (g *GCC) Restore(bps uint64) {
	b := math.Min(float64(bps), g.max)
	g.rate.rate = math.Max(g.rate.rate, b)
	if g.loss.bound > 0 {
		g.loss.bound = math.Max(g.loss.bound, b)
	}
}

// LinkCapacity is the rate, in bits per second, the path delivered when it
// was last full (congestion or a probe that filled it), while the estimator
// has not seen it carry clearly more since; 0 when unknown.
func (g *GCC) LinkCapacity() uint64 {
	if !g.rate.capacity.known {
		return 0
	}
	return uint64(g.rate.capacity.mean)
}

// ProbeSaturated reports whether the probe cluster whose first packet was
// sent at or after since has filled the path.
func (g *GCC) ProbeSaturated(since int64) bool {
	return g.probe.saturated && g.probe.total.firstSend >= since
}

// QueueDelay is how long the newest packet the receiver reported waited in
// the path's queues, from its one-way delay over the fastest recent
// packet's: about how long the path takes to empty once the sender stops.
func (g *GCC) QueueDelay() time.Duration { return time.Duration(g.busy.queueDelay()) }

// ProbeVerdict says why the latest probe cluster was found to fill the
// path; its By is "" when it was not.
func (g *GCC) ProbeVerdict() ProbeVerdict { return g.probe.verdict }

// current is the final estimate before clamping: the smallest of the
// delay-based estimate, the loss-based cap and a current REMB.
func (g *GCC) current(now int64) float64 {
	e := g.rate.rate
	if b := g.loss.bound; b > 0 {
		e = math.Min(e, b)
	}
	if r, ok := g.rembCap(now); ok {
		e = math.Min(e, r)
	}
	return e
}

// Estimate is the bitrate the path can carry, in bits per second, within
// [Min, Max].
func (g *GCC) Estimate(now int64) uint64 {
	e := g.current(now)
	if !(e >= g.min) { // also catches NaN
		e = g.min
	}
	return uint64(math.Min(e, g.max))
}

// State is a snapshot of the estimator for logs and debugging.
func (g *GCC) State(now int64) BWEState {
	s := BWEState{
		Estimate:   g.Estimate(now),
		DelayBased: uint64(g.rate.rate),
		LossBased:  uint64(g.loss.bound),
		Signal:     g.detector.signal,
		Trend:      g.detector.trend,
		Threshold:  g.detector.threshold,
		LossRatio:  g.loss.ratio,
		Startup:    g.rate.startup,
		RTT:        g.rtt,
	}
	if r, ok := g.rembCap(now); ok {
		s.REMB = uint64(r)
	}
	if a, ok := g.acked.rate(); ok {
		s.Acked = uint64(a)
	}
	return s
}
