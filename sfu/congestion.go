package sfu

import (
	"log/slog"
	"sync"
	"time"

	"github.com/fanout-sfu/fanout/simulcast"
)

// estimateLogInterval spaces the debug log of a subscriber's estimate.
const estimateLogInterval = 2 * time.Second

// congestion estimates the bandwidth of one subscriber connection from the
// transport-wide feedback its client sends (or REMB, from clients that send
// that instead). The subscriber's allocation reads the estimate to choose
// every DownTrack's layer and to probe for more (allocation.go); it is also
// logged and exposed (Participant.BandwidthEstimate).
type congestion struct {
	rec *twccRecorder
	log *slog.Logger

	mu      sync.Mutex // guards est and lastLog
	est     *simulcast.GCC
	lastLog int64
	// dropped, when set, is called (without blocking) when a feedback
	// cuts the estimate by more than a tenth: the allocation runs at once
	// rather than at its next tick.
	dropped func()
}

func newCongestion(log *slog.Logger) *congestion {
	c := &congestion{est: simulcast.NewGCC(simulcast.GCCConfig{}), log: log}
	c.rec = newTWCCRecorder(c.onFeedback, c.onREMB)
	return c
}

// factory is the interceptor factory of the subscriber connection.
func (c *congestion) factory() twccRecorderFactory { return twccRecorderFactory{rec: c.rec} }

func (c *congestion) onFeedback(now int64, results []simulcast.PacketResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.est.Estimate(now)
	c.est.OnFeedback(now, results)
	if after := c.est.Estimate(now); after < before-before/10 && c.dropped != nil {
		c.dropped()
	}
	if now-c.lastLog >= int64(estimateLogInterval) {
		c.lastLog = now
		st := c.est.State(now)
		c.log.Debug("bandwidth estimate", "bps", st.Estimate, "delay_signal", st.Signal.String(), "loss", st.LossRatio, "acked_bps", st.Acked, "delay_bps", st.DelayBased, "loss_bps", st.LossBased)
	}
}

func (c *congestion) onREMB(now int64, bps uint64) {
	c.mu.Lock()
	c.est.OnREMB(now, bps)
	c.mu.Unlock()
}

// estimate is the current bandwidth estimate in bits per second.
func (c *congestion) estimate() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.Estimate(time.Now().UnixNano())
}

// restore undoes a decrease that a failed probe caused: the allocation
// calls it when its prober reports the probe failed (allocation.step).
func (c *congestion) restore(bps uint64) {
	c.mu.Lock()
	c.est.Restore(bps)
	c.mu.Unlock()
}

// probeSaturated reports whether the probe cluster sent from since (unix
// ns) on has filled the path (the prober ends it then).
func (c *congestion) probeSaturated(since int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.ProbeSaturated(since)
}

// queueDelay is how long the path's queues held the newest packet
// reported.
func (c *congestion) queueDelay() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.QueueDelay()
}

// probeVerdict says why the latest probe cluster filled the path.
func (c *congestion) probeVerdict() simulcast.ProbeVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.ProbeVerdict()
}

// linkCapacity is what the path delivered when it was last full, 0 when
// unknown.
func (c *congestion) linkCapacity() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.LinkCapacity()
}

// onDrop sets the function called when a feedback cuts the estimate.
func (c *congestion) onDrop(f func()) {
	c.mu.Lock()
	c.dropped = f
	c.mu.Unlock()
}

// acked is the bitrate the receiver reported getting lately (0 until
// measured).
func (c *congestion) acked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.est.State(time.Now().UnixNano()).Acked
}
