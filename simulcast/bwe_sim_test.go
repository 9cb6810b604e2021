package simulcast

import (
	"math/rand/v2"
	"time"
)

// A deterministic simulated path for the bandwidth estimator: a sender
// forwarding 30 fps video at min(estimate, demand), a drop-tail FIFO
// bottleneck served at a (possibly changing) capacity, a fixed one-way delay
// each way, seeded random loss, and a receiver sending transport-wide
// feedback at a fixed interval. Time is simulated in 1 ms ticks.

const (
	simTick      = int64(time.Millisecond)
	simStart     = int64(1_700_000_000) * 1e9 // sender clock (unix ns) at t = 0
	simRecvBase  = int64(987_654_321_000)     // receiver clock at t = 0 (any base)
	simFrame     = int64(time.Second) / 30
	simMaxPacket = 1200
	simProbeLen  = int64(50 * time.Millisecond)
)

// simLink is a drop-tail FIFO bottleneck.
type simLink struct {
	capacity  func(t int64) float64 // bits per second at simulated time t
	owd       int64                 // one-way propagation delay (ns)
	maxQueue  int64                 // backlog (ns of service) above which packets are dropped
	loss      float64               // random loss after the queue
	jitter    int64                 // random extra delay after the queue, up to this (ns), order kept
	rng       *rand.Rand
	busyUntil int64 // when the link has served everything queued
	lastArr   int64 // arrival of the previous packet (jitter does not reorder)
}

// send offers a packet at time t and returns when it arrives, or false if
// the queue was full or the packet was lost.
func (l *simLink) send(t int64, size int) (int64, bool) {
	if l.busyUntil-t > l.maxQueue {
		return 0, false
	}
	start := max(t, l.busyUntil)
	l.busyUntil = start + int64(float64(size*8)/l.capacity(start)*1e9)
	if l.loss > 0 && l.rng.Float64() < l.loss {
		return 0, false
	}
	arr := l.busyUntil + l.owd
	if l.jitter > 0 {
		arr = max(arr+l.rng.Int64N(l.jitter), l.lastArr)
	}
	l.lastArr = arr
	return arr, true
}

// simConfig describes one simulated run. Times are simulated nanoseconds
// since the start.
type simConfig struct {
	capacity   func(t int64) float64
	demand     float64 // bits per second the sender would like to send
	owd        time.Duration
	loss       float64
	jitter     time.Duration
	probeEvery time.Duration // 0: no probes
	duration   time.Duration
	feedback   time.Duration // feedback interval, default 50 ms
	seed       uint64
	cfg        GCCConfig
	hook       func(t int64, g *GCC) // runs at every tick before sending
}

// simSample is the estimate at one moment.
type simSample struct {
	t   int64
	est uint64
}

// simDelay is the added (queueing + serialization) delay of one packet.
type simDelay struct {
	sent, delay int64
}

// simRun is the outcome of a run.
type simRun struct {
	g       *GCC
	samples []simSample // every 10 ms
	delays  []simDelay
}

type simFeedback struct {
	at      int64
	results []PacketResult
}

// simPending is a sent packet the receiver has not reported yet.
type simPending struct {
	res     PacketResult
	arrival int64 // simulated time, valid when res.Received
}

// simulator is the state of a run in progress.
type simulator struct {
	c        simConfig
	g        *GCC
	link     simLink
	seq      uint16
	pending  []simPending
	inflight []simFeedback
	run      *simRun

	probeStart, probeBytes int64
	probeN, probeSent      int
}

func runSim(c simConfig) *simRun {
	if c.feedback == 0 {
		c.feedback = 50 * time.Millisecond
	}
	s := &simulator{c: c, g: NewGCC(c.cfg)}
	s.link = simLink{capacity: c.capacity, owd: int64(c.owd), maxQueue: int64(500 * time.Millisecond),
		loss: c.loss, jitter: int64(c.jitter), rng: rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))}
	s.run = &simRun{g: s.g}
	s.probeStart = -1
	var nextFrame, nextFeedback, nextProbe int64 = 0, int64(c.feedback), int64(c.probeEvery)
	for t := int64(0); t < int64(c.duration); t += simTick {
		now := simStart + t
		if t%int64(time.Second) == 0 {
			s.g.OnRTT(now, 2*c.owd)
		}
		if c.hook != nil {
			c.hook(t, s.g)
		}
		for len(s.inflight) > 0 && s.inflight[0].at <= t {
			s.g.OnFeedback(now, s.inflight[0].results)
			s.inflight = s.inflight[1:]
		}
		est := float64(s.g.Estimate(now))
		if t >= nextFrame {
			s.sendFrame(t, min(est, c.demand))
			nextFrame += simFrame
		}
		if c.probeEvery > 0 && t >= nextProbe {
			s.startProbe(t, 2*est)
			nextProbe += int64(c.probeEvery)
		}
		s.sendProbe(t)
		if t >= nextFeedback {
			s.feedback(t)
			nextFeedback += int64(c.feedback)
		}
		if t%(10*simTick) == 0 {
			s.run.samples = append(s.run.samples, simSample{t: t, est: s.g.Estimate(now)})
		}
	}
	return s.run
}

// sendFrame sends one video frame at rate bps as a burst of packets.
func (s *simulator) sendFrame(t int64, rate float64) {
	bytes := max(int(rate/8/30), 100)
	n := (bytes + simMaxPacket - 1) / simMaxPacket
	for range n {
		s.send(t, bytes/n, false)
	}
}

// startProbe plans a 50 ms cluster of padding at rate bps, at least 10
// packets.
func (s *simulator) startProbe(t int64, rate float64) {
	s.probeStart, s.probeBytes = t, int64(rate*float64(simProbeLen)/1e9/8)
	s.probeN = max(10, int((s.probeBytes+simMaxPacket-1)/simMaxPacket))
	s.probeSent = 0
}

// sendProbe sends the planned probe packets due at t, evenly spread.
func (s *simulator) sendProbe(t int64) {
	if s.probeStart < 0 {
		return
	}
	for s.probeSent < s.probeN && s.probeStart+int64(s.probeSent)*simProbeLen/int64(s.probeN) <= t {
		s.send(t, int(s.probeBytes)/s.probeN, true)
		s.probeSent++
	}
	if s.probeSent == s.probeN {
		s.probeStart = -1
	}
}

func (s *simulator) send(t int64, size int, probe bool) {
	arr, ok := s.link.send(t, size)
	p := simPending{res: PacketResult{Seq: s.seq, SendTime: simStart + t, Size: size, Received: ok, Probe: probe}, arrival: arr}
	if ok {
		p.res.Arrival = simRecvBase + arr
		s.run.delays = append(s.run.delays, simDelay{sent: t, delay: arr - t - s.link.owd - s.link.jitter/2})
	}
	s.seq++
	s.pending = append(s.pending, p)
}

// feedback reports, at receiver time t, every packet up to the last one
// that arrived; packets before it that did not arrive are reported lost.
func (s *simulator) feedback(t int64) {
	last := -1
	for i, p := range s.pending {
		if p.res.Received && p.arrival <= t {
			last = i
		}
	}
	if last < 0 {
		return
	}
	res := make([]PacketResult, last+1)
	for i := range res {
		res[i] = s.pending[i].res
	}
	s.pending = s.pending[last+1:]
	s.inflight = append(s.inflight, simFeedback{at: t + int64(s.c.owd), results: res})
}

// constant is a fixed capacity.
func simConstant(bps float64) func(int64) float64 { return func(int64) float64 { return bps } }

// step is a capacity that changes from a to b at time at.
func simStep(a, b float64, at time.Duration) func(int64) float64 {
	return func(t int64) float64 {
		if t < int64(at) {
			return a
		}
		return b
	}
}

// firstAtOrAbove is the first sample time at or after from whose estimate
// is at least level, or -1.
func (r *simRun) firstAtOrAbove(from time.Duration, level uint64) time.Duration {
	for _, s := range r.samples {
		if s.t >= int64(from) && s.est >= level {
			return time.Duration(s.t)
		}
	}
	return -1
}

// firstBelow is the first sample time at or after from whose estimate is
// under level, or -1.
func (r *simRun) firstBelow(from time.Duration, level uint64) time.Duration {
	for _, s := range r.samples {
		if s.t >= int64(from) && s.est < level {
			return time.Duration(s.t)
		}
	}
	return -1
}

// minMax is the range of the estimate over [from, to).
func (r *simRun) minMax(from, to time.Duration) (lo, hi uint64) {
	lo = ^uint64(0)
	for _, s := range r.samples {
		if s.t >= int64(from) && s.t < int64(to) {
			lo, hi = min(lo, s.est), max(hi, s.est)
		}
	}
	return lo, hi
}

// avgDelay is the mean added delay of packets sent in [from, to).
func (r *simRun) avgDelay(from, to time.Duration) time.Duration {
	var sum, n int64
	for _, d := range r.delays {
		if d.sent >= int64(from) && d.sent < int64(to) {
			sum += d.delay
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return time.Duration(sum / n)
}

// swings counts the times in [from, to) the estimate fell more than 30 %
// below its highest value of the preceding second.
func (r *simRun) swings(from, to time.Duration) int {
	count, in := 0, false
	for i, s := range r.samples {
		if s.t < int64(from) || s.t >= int64(to) {
			continue
		}
		var peak uint64
		for j := i; j >= 0 && r.samples[j].t > s.t-int64(time.Second); j-- {
			peak = max(peak, r.samples[j].est)
		}
		low := float64(s.est) < 0.7*float64(peak)
		if low && !in {
			count++
		}
		in = low
	}
	return count
}
