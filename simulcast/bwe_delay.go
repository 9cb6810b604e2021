package simulcast

import "math"

// Delay-based detection: packets are grouped into send bursts, the change
// of one-way delay from group to group is accumulated and smoothed, its
// trend over a window is fitted by least squares, and the trend is compared
// with an adaptive threshold.
const (
	// groupSpan: packets sent within 5 ms of a group's first packet belong
	// to it (a video frame is sent as one burst).
	groupSpan = int64(5e6)
	// burstGap and burstSpan: a packet that arrives within 5 ms of the
	// group's last one, closer than it was sent, joins the group as long as
	// the group arrived within 100 ms (Wi-Fi and cellular links deliver
	// queued packets in bursts; splitting them would fake delay changes).
	burstGap  = int64(5e6)
	burstSpan = int64(100e6)
	// arrivalJump: a group arriving more than 3 s off what its send time
	// predicts means the receiver's clock jumped; the filters restart.
	arrivalJump = int64(3e9)
)

// Trendline filter parameters.
const (
	trendWindow    = 20   // group deltas in the regression window
	trendMinPoints = 8    // points before the first fit (a short history is de-weighted below)
	trendSmoothing = 0.9  // exponential smoothing of the accumulated delay
	trendGain      = 4.0  // modified trend = min(deltas, 60) * slope * gain
	trendMaxDeltas = 60.0 // caps the delta count in the modified trend
)

// Adaptive threshold and overuse detector parameters (ms). The threshold
// follows |trend| up slowly (kUp) and down faster (kDown), so it tolerates a
// path's normal jitter yet a sustained trend still crosses it.
const (
	thresholdInit    = 12.5
	thresholdMin     = 6.0
	thresholdMax     = 600.0
	thresholdKUp     = 0.0087
	thresholdKDown   = 0.039
	thresholdSpike   = 15.0  // |trend| this far above the threshold is an outlier
	thresholdMaxStep = 100.0 // longest time step of one threshold update
	overuseTime      = 10.0  // the trend must stay above the threshold 10 ms...
	overuseCount     = 2     // ...over at least two group deltas
)

// sendGroup is a burst of packets sent close together.
type sendGroup struct {
	firstSend, lastSend       int64
	firstArrival, lastArrival int64
	valid                     bool
}

// groupDeltas is the difference between two consecutive send groups (ms),
// and when the later one arrived (receiver clock, ns).
type groupDeltas struct {
	send, arrival float64
	at            int64
}

// groupStatus is what adding a packet to an interArrival produced.
type groupStatus uint8

const (
	groupNone  groupStatus = iota // the packet extended or started a group
	groupDelta                    // a group completed: deltas to the previous one
	groupReset                    // the arrival clock jumped: filters restart
)

// interArrival groups received packets into send bursts and reports the
// send and arrival time differences of consecutive groups.
type interArrival struct {
	cur, prev sendGroup
}

// add takes one received packet (in send order).
func (a *interArrival) add(send, arrival int64) (groupDeltas, groupStatus) {
	c := &a.cur
	if !c.valid {
		a.start(send, arrival)
		return groupDeltas{}, groupNone
	}
	if send < c.firstSend {
		return groupDeltas{}, groupNone // reordered in send order: ignore
	}
	if a.belongs(send, arrival) {
		c.lastSend = max(c.lastSend, send)
		c.lastArrival = max(c.lastArrival, arrival)
		return groupDeltas{}, groupNone
	}
	// The packet starts a new group: the current one is complete.
	var d groupDeltas
	st := groupNone
	if a.prev.valid {
		d = groupDeltas{
			send:    float64(c.lastSend-a.prev.lastSend) / 1e6,
			arrival: float64(c.lastArrival-a.prev.lastArrival) / 1e6,
			at:      c.lastArrival,
		}
		jump := c.lastArrival - a.prev.lastArrival - (c.lastSend - a.prev.lastSend)
		switch {
		case jump > arrivalJump || jump < -arrivalJump:
			a.prev.valid = false
			a.start(send, arrival)
			return groupDeltas{}, groupReset
		case d.arrival < 0:
			// The group arrived before the previous one (reordering):
			// drop it, keep measuring from the previous group.
			a.start(send, arrival)
			return groupDeltas{}, groupNone
		}
		st = groupDelta
	}
	a.prev = *c
	a.start(send, arrival)
	return d, st
}

// belongs reports whether a packet joins the current group: sent within
// groupSpan of its first packet, or part of an arrival burst.
func (a *interArrival) belongs(send, arrival int64) bool {
	c := &a.cur
	if send-c.firstSend <= groupSpan {
		return true
	}
	gap := arrival - c.lastArrival
	return gap >= 0 && gap < burstGap && gap < send-c.lastSend && arrival-c.firstArrival < burstSpan
}

func (a *interArrival) start(send, arrival int64) {
	a.cur = sendGroup{firstSend: send, lastSend: send, firstArrival: arrival, lastArrival: arrival, valid: true}
}

// trendline fits a line to the smoothed accumulated delay variation over
// the last trendWindow group deltas; its slope is the delay trend (ms of
// queueing delay gained per ms).
type trendline struct {
	acc, smoothed float64
	origin        int64 // arrival time of the first delta (ns): x = 0
	started       bool
	deltas        int // deltas seen, for the modified trend
	x, y          [trendWindow]float64
	head, count   int
}

func (t *trendline) reset() { *t = trendline{} }

// update adds one group delta and returns the slope, once the window holds
// enough points for a fit.
func (t *trendline) update(d groupDeltas) (slope float64, ok bool) {
	if !t.started {
		t.origin, t.started = d.at, true
	}
	t.acc += d.arrival - d.send
	t.smoothed = trendSmoothing*t.smoothed + (1-trendSmoothing)*t.acc
	if t.deltas < math.MaxInt32 {
		t.deltas++
	}
	t.x[t.head] = float64(d.at-t.origin) / 1e6
	t.y[t.head] = t.smoothed
	t.head = (t.head + 1) % trendWindow
	if t.count < trendWindow {
		t.count++
	}
	if t.count < trendMinPoints {
		return 0, false
	}
	return t.fit()
}

// fit is the least-squares slope of the window's points.
func (t *trendline) fit() (float64, bool) {
	var sx, sy float64
	for i := range t.count {
		sx += t.x[i]
		sy += t.y[i]
	}
	n := float64(t.count)
	mx, my := sx/n, sy/n
	var num, den float64
	for i := range t.count {
		dx := t.x[i] - mx
		num += dx * (t.y[i] - my)
		den += dx * dx
	}
	if den <= 0 || math.IsNaN(num) || math.IsInf(num, 0) {
		return 0, false
	}
	return num / den, true
}

// modified scales a slope into the value compared with the threshold: the
// longer the history, the more a small slope is trusted.
func (t *trendline) modified(slope float64) float64 {
	return math.Min(float64(t.deltas), trendMaxDeltas) * slope * trendGain
}

// overuseDetector compares the modified trend with an adaptive threshold.
type overuseDetector struct {
	threshold  float64
	trend      float64 // last modified trend
	lastUpdate int64   // arrival time of the last threshold update
	updated    bool
	overTime   float64 // ms the trend has been above the threshold, <0: not
	overCount  int
	signal     DelaySignal
}

func (o *overuseDetector) reset() {
	*o = overuseDetector{threshold: thresholdInit, overTime: -1}
}

// resetTime forgets the arrival clock after it jumped.
func (o *overuseDetector) resetTime() {
	o.updated = false
	o.overTime, o.overCount = -1, 0
}

// detect classifies a modified trend m measured at group deltas d.
func (o *overuseDetector) detect(m float64, d groupDeltas) DelaySignal {
	if math.IsNaN(m) || math.IsInf(m, 0) {
		return o.signal
	}
	prev := o.trend
	o.trend = m
	switch {
	case m > o.threshold:
		if o.overTime < 0 {
			o.overTime = d.send / 2
		} else {
			o.overTime += d.send
		}
		o.overCount++
		if o.overTime > overuseTime && o.overCount >= overuseCount && m >= prev {
			o.overTime, o.overCount = 0, 0
			o.signal = DelayOverusing
		}
	case m < -o.threshold:
		o.overTime, o.overCount = -1, 0
		o.signal = DelayUnderusing
	default:
		o.overTime, o.overCount = -1, 0
		o.signal = DelayNormal
	}
	o.adapt(m, d.at)
	return o.signal
}

// adapt moves the threshold toward |m|, ignoring outliers far above it.
func (o *overuseDetector) adapt(m float64, at int64) {
	if !o.updated {
		o.lastUpdate, o.updated = at, true
	}
	abs := math.Abs(m)
	if abs > o.threshold+thresholdSpike {
		o.lastUpdate = at
		return
	}
	k := thresholdKUp
	if abs < o.threshold {
		k = thresholdKDown
	}
	dt := math.Min(math.Max(float64(at-o.lastUpdate)/1e6, 0), thresholdMaxStep)
	o.threshold += k * (abs - o.threshold) * dt
	o.threshold = math.Min(math.Max(o.threshold, thresholdMin), thresholdMax)
	o.lastUpdate = at
}
