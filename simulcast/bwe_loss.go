package simulcast

import "math"

// Loss-based control. Random loss alone is not congestion: Wi-Fi and
// cellular links lose a few percent of packets at any rate, and NACK/FEC
// repair it, so loss only lowers the estimate when it is heavy.
//
// Over each loss window (at least 500 ms of feedback and 60 packets):
//   - below lossLow (5 %): loss does not limit. A cap left by earlier
//     heavy loss grows 8 % per second and is released once it reaches the
//     delay-based estimate; a cap set only to hold is released at once;
//     otherwise the delay-based controller is free to keep increasing.
//   - from lossLow to lossHigh (5-10 %): hold. The estimate may not grow
//     (a cap is set at the current estimate if there is none) nor falls.
//   - above lossHigh (10 %): cap at rate x (1 - 0.5 x loss),
//     draft-ietf-rmcat-gcc's loss-based rule, but not under 0.9 x the
//     bitrate the receiver got recently (loss at a full queue's edge). The rate is what the window's
//     packets were sent at, but at most the highest estimate during this
//     window and the one before (feedback reports packets up to a queue
//     and a round trip after they were sent): not the estimate now, since
//     after a delay overuse it has already dropped and the loss that
//     congestion caused must not cut it a second time; and not more than
//     the estimates allowed, so a sender ignoring them still sees the
//     estimate fall. A cap only goes down this way.
//
// The 60-packet minimum keeps a 2 % random loss from crossing 10 % by
// chance (P ~ 0.0001 per window); at 2 Mbit/s a window is ~100 packets. It
// does reach 5 % by chance (about one window in eight at 60 packets), which
// is why a hold-only cap goes as soon as a window is clean again.
const (
	lossLow          = 0.05
	lossHigh         = 0.10
	lossWindow       = int64(500e6)
	lossMinPackets   = 60
	lossMaxPackets   = 1000 // closes a window early at high packet rates
	lossGrowthPerSec = 1.08
	lossMaxStep      = int64(1e9) // longest time one growth step accounts for
)

// lossControl is the loss-based controller: a cap on the estimate, set by
// heavy loss.
type lossControl struct {
	sent, lost int
	bytes      int64 // sent in the window
	firstSend  int64 // earliest and latest send time in the window
	lastSend   int64
	start      int64 // feedback time the window opened
	open       bool
	lastClose  int64
	closed     bool
	ratio      float64 // loss ratio of the last window
	bound      float64 // cap in bits per second, 0: none
	peak       float64 // highest estimate during the window
	prevPeak   float64 // highest estimate during the window before
	holdOnly   bool    // the cap was set by the hold band, not by a decrease
}

// add counts one reported packet. Probe padding is not counted: a probe
// that overfills the path loses its own packets by design, and the
// estimator learns that from the probe's result, not as loss of the media.
func (l *lossControl) add(r *PacketResult) {
	if r.Probe {
		return
	}
	if l.sent == 0 {
		l.firstSend, l.lastSend = r.SendTime, r.SendTime
	}
	l.firstSend, l.lastSend = min(l.firstSend, r.SendTime), max(l.lastSend, r.SendTime)
	l.bytes += int64(max(r.Size, 0))
	l.sent++
	if !r.Received {
		l.lost++
	}
}

// update closes the window once it is complete and applies the loss rule
// to current (the final estimate the sender follows); delayBased releases
// a cap that has grown back to it. It reports whether loss lowered the cap.
func (l *lossControl) update(now int64, current, delayBased, received float64) bool {
	if !l.open || now < l.start {
		l.start, l.open = now, true
	}
	l.peak = math.Max(l.peak, current)
	if l.sent < lossMinPackets || (now-l.start < lossWindow && l.sent < lossMaxPackets) {
		return false
	}
	l.ratio = float64(l.lost) / float64(l.sent)
	dt := now - l.start
	if l.closed {
		dt = now - l.lastClose
	}
	dt = min(max(dt, 0), lossMaxStep)
	allowed := math.Max(l.peak, l.prevPeak)
	rate := math.Min(l.sendRate(allowed), allowed)
	l.sent, l.lost, l.bytes, l.start = 0, 0, 0, now
	l.lastClose, l.closed = now, true
	decreased := false
	switch {
	case l.ratio > lossHigh:
		// Loss at a full queue's edge (a token bucket's, a shaper's) comes
		// with the bottleneck delivering all it can: what it delivered is
		// a floor, so that the overflow of a burst does not cut the
		// estimate below the link's own rate.
		b := math.Max(rate*(1-0.5*l.ratio), decreaseFactor*received)
		if l.bound == 0 || b < l.bound {
			l.bound, l.holdOnly = b, false
		}
		decreased = true
	case l.ratio >= lossLow:
		if l.bound == 0 {
			l.bound, l.holdOnly = current, true
		}
	case l.holdOnly:
		l.bound, l.holdOnly = 0, false
	case l.bound > 0:
		l.bound *= math.Pow(lossGrowthPerSec, float64(dt)/1e9)
		if l.bound >= delayBased {
			l.bound = 0
		}
	}
	l.prevPeak, l.peak = l.peak, current
	if l.bound > 0 {
		l.peak = math.Min(l.peak, l.bound)
	}
	return decreased
}

// sendRate is the bitrate the window's packets were sent at, or fallback if
// their send times do not span enough time to tell.
func (l *lossControl) sendRate(fallback float64) float64 {
	span := l.lastSend - l.firstSend
	if span < lossWindow/5 {
		return fallback
	}
	return float64(l.bytes) * 8 / (float64(span) / 1e9)
}

// clamp keeps a cap within [lo, hi].
func (l *lossControl) clamp(lo, hi float64) {
	if l.bound == 0 {
		return
	}
	l.bound = math.Min(math.Max(l.bound, lo), hi)
}
