package simulcast

import "math"

// Probe measurement. A probe cluster is a run of Probe packets sent at most
// probeGap apart; it is measured by its own packets only, so a planner sizes
// the cluster's padding at the rate it wants to test. The cluster's rate is
// the lower of its send rate and its receive rate (bytes after the first
// arrival over the arrival span). A receive rate well under the send rate
// means the probe filled the path: the path's share is the receive rate,
// and the result is taken a little under it.
const (
	probeGap        = int64(20e6) // a longer pause between probe packets ends the cluster
	probeMaxSpan    = int64(1e9)  // a cluster longer than this is measured and a new one starts
	probeMinPackets = 5
	probeMaxLoss    = 0.2
	probeSaturated  = 0.9 // receive rate under 0.9 x send rate: the path was full
)

// probeMeter measures probe clusters from feedback.
type probeMeter struct {
	open                bool
	sent, recv          int
	sentBytes           int64
	recvBytes           int64
	firstSend, lastSend int64
	lastSendSize        int
	firstArr, lastArr   int64
	firstArrSize        int
	best                float64 // best result completed since the last take
}

// add takes one reported packet in send order.
func (p *probeMeter) add(r *PacketResult) {
	if p.open && (r.SendTime-p.lastSend > probeGap || r.SendTime-p.firstSend > probeMaxSpan) {
		p.finish()
	}
	if !r.Probe || r.Size <= 0 {
		return
	}
	if !p.open {
		*p = probeMeter{open: true, firstSend: r.SendTime, lastSend: r.SendTime, best: p.best}
	}
	p.sent++
	p.sentBytes += int64(r.Size)
	if r.SendTime >= p.lastSend {
		p.lastSend, p.lastSendSize = r.SendTime, r.Size
	}
	if !r.Received {
		return
	}
	p.recv++
	p.recvBytes += int64(r.Size)
	if p.recv == 1 || r.Arrival < p.firstArr {
		p.firstArr, p.firstArrSize = r.Arrival, r.Size
	}
	if p.recv == 1 || r.Arrival > p.lastArr {
		p.lastArr = r.Arrival
	}
}

// finish closes the open cluster and keeps its result if it is the best.
func (p *probeMeter) finish() {
	p.open = false
	if r := p.result(); r > p.best {
		p.best = r
	}
}

// result is the open cluster's measured rate, or 0 when it is not usable.
func (p *probeMeter) result() float64 {
	if p.sent < probeMinPackets || p.recv < probeMinPackets {
		return 0
	}
	if 1-float64(p.recv)/float64(p.sent) > probeMaxLoss {
		return 0
	}
	recvSpan := p.lastArr - p.firstArr
	if recvSpan <= 0 {
		return 0
	}
	recvRate := float64(p.recvBytes-int64(p.firstArrSize)) * 8 / (float64(recvSpan) / 1e9)
	sendRate := math.Inf(1)
	if sendSpan := p.lastSend - p.firstSend; sendSpan > 0 {
		sendRate = float64(p.sentBytes-int64(p.lastSendSize)) * 8 / (float64(sendSpan) / 1e9)
	}
	if recvRate < probeSaturated*sendRate {
		return probeSaturated * recvRate
	}
	return math.Min(sendRate, recvRate)
}

// take returns the best cluster result completed since the last call, or 0.
func (p *probeMeter) take() float64 {
	b := p.best
	p.best = 0
	return b
}
