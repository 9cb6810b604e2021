package signaling

import (
	"fmt"
	"net/http"
	"time"

	"github.com/livekit/protocol/livekit"
	"golang.org/x/time/rate"
)

// Limits bounds what clients can make the signaling layer hold or do. A
// zero field takes its default (DefaultLimits); every limit is named in
// the error a client gets past it by its YAML key under limits:.
type Limits struct {
	// MaxSignalMessageSize bounds one signal WebSocket frame, in bytes
	// (limits.max_signal_message_size).
	MaxSignalMessageSize int
	// SignalRate and SignalBurst are the token bucket of the signal
	// messages one participant sends (limits.signal_rate, limits.signal_burst).
	SignalRate  float64
	SignalBurst int
	// MaxAPIBodySize bounds a Twirp (RoomService, Egress) request body,
	// in bytes (limits.max_api_body_size).
	MaxAPIBodySize int
	// MaxWHIPSessions and MaxWHEPSessions bound the WHIP and WHEP sessions
	// of this node (limits.max_whip_sessions, limits.max_whep_sessions).
	MaxWHIPSessions int
	MaxWHEPSessions int
	// MaxEgresses bounds the running egresses of this node (limits.max_egresses).
	MaxEgresses int
}

// DefaultLimits are the signaling limits a production node runs with.
func DefaultLimits() Limits {
	return Limits{
		MaxSignalMessageSize: MaxMessageSize,
		// A joining livekit-client sends a few dozen messages in its
		// first second (trickles, addTrack, track settings); steady state
		// is a few per second.
		SignalRate: 50, SignalBurst: 200,
		MaxAPIBodySize:  1 << 20,
		MaxWHIPSessions: 100,
		MaxWHEPSessions: 1000,
		MaxEgresses:     16,
	}
}

// withDefaults fills in every zero field from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int }{
		{&l.MaxSignalMessageSize, &d.MaxSignalMessageSize}, {&l.SignalBurst, &d.SignalBurst},
		{&l.MaxAPIBodySize, &d.MaxAPIBodySize}, {&l.MaxWHIPSessions, &d.MaxWHIPSessions},
		{&l.MaxWHEPSessions, &d.MaxWHEPSessions}, {&l.MaxEgresses, &d.MaxEgresses},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if l.SignalRate <= 0 {
		l.SignalRate = d.SignalRate
	}
	return l
}

// Signal rate policy. A message past the token bucket is dropped and the
// client gets a LIMIT_EXCEEDED RequestResponse (at most one per
// signalWarnInterval, so the answer is no amplifier itself). A client
// that has more than SignalBurst messages dropped within
// signalAbuseWindow is not a client having a busy moment: it is
// disconnected (WebSocket close 1008 with the reason). Leave requests are
// never dropped.
const (
	signalWarnInterval = time.Second
	signalAbuseWindow  = 10 * time.Second
)

// signalLimiter is one signal connection's rate limit.
type signalLimiter struct {
	limits      Limits
	bucket      *rate.Limiter
	lastWarn    time.Time
	windowStart time.Time
	dropped     int
}

func newSignalLimiter(l Limits) *signalLimiter {
	return &signalLimiter{limits: l, bucket: rate.NewLimiter(rate.Limit(l.SignalRate), l.SignalBurst)}
}

// verdict is what happens to one signal message.
type verdict int

const (
	accept verdict = iota
	drop
	disconnect
)

// check decides on one message arriving at now; warn tells whether the
// client should hear about a drop. It is called from the read loop only.
func (sl *signalLimiter) check(req *livekit.SignalRequest, now time.Time) (v verdict, warn bool) {
	if _, leave := req.Message.(*livekit.SignalRequest_Leave); leave || sl.bucket.AllowN(now, 1) {
		return accept, false
	}
	if now.Sub(sl.windowStart) > signalAbuseWindow {
		sl.windowStart, sl.dropped = now, 0
	}
	sl.dropped++
	if sl.dropped > sl.limits.SignalBurst {
		return disconnect, false
	}
	if now.Sub(sl.lastWarn) >= signalWarnInterval {
		sl.lastWarn = now
		return drop, true
	}
	return drop, false
}

// rateError is the reason a client is given for a dropped message, or
// for its disconnection.
func (sl *signalLimiter) rateError() error {
	return fmt.Errorf("%w: over limits.signal_rate %g/s (burst %d)",
		ErrSignalRateLimited, sl.limits.SignalRate, sl.limits.SignalBurst)
}

// reserve takes a slot of kind if live plus pending sessions are below max.
func (r *httpSessions) reserve(kind string, max int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.live[kind] + r.pending[kind]; n >= max {
		return fmt.Errorf("%w: %d %s sessions on this node, limits.max_%s_sessions is %d",
			ErrTooManySessions, n, kind, kind, max)
	}
	r.pending[kind]++
	return nil
}

// unreserve gives back a slot taken by reserve (the session, if it
// started, is counted in live from then on).
func (r *httpSessions) unreserve(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[kind]--
}

// refuseSession answers a WHIP or WHEP POST past its limit.
func refuseSession(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "10")
	httpError(w, http.StatusServiceUnavailable, "%v", err)
}
