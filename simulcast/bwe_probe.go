package simulcast

import "math"

// Probe measurement. A probe cluster is a run of Probe packets sent at most
// probeGap apart, with the media packets sent among them: a planner paces
// its padding so that media and padding together make the rate it tests.
//
// A bottleneck that is a token bucket lets a burst the size of its bucket
// (tens of kilobytes on home routers, cable and mobile shapers) through at
// the sender's pace, and only then serves at its rate: the head of a
// cluster says nothing about the link. So a cluster is measured over its
// tail, the last probeTailSpan of it by send time: the receive rate there
// (bytes after the tail's first arrival over the tail's arrival span)
// against the send rate there. A tail received well under its send rate
// means the probe filled the path (saturated): the result is then a little
// under that receive rate (the path's rate, which may still be above what
// the planner tested for), and a planner ends the cluster early on it
// (ProbeSaturated). Otherwise the result is the lower of the cluster's send
// and receive rates: never above what was sent. A planner makes clusters
// long enough to empty any plausible bucket before their tail.
const (
	probeGap        = int64(20e6) // a longer pause between probe packets ends the cluster
	probeMaxSpan    = int64(2e9)  // a cluster longer than this is measured and a new one starts
	probeMinPackets = 5
	probeMaxLoss    = 0.2
	probeSaturated  = 0.9 // receive rate under 0.9 x send rate: the path was full
	// probeSegment and probeSegments cut a cluster by send time into
	// segments kept as sums (no per-packet memory).
	probeSegment  = int64(25e6)
	probeSegments = int(probeMaxSpan / probeSegment)
	// probeTailSpan and probeTailPackets: the tail is the last segments
	// covering at least 75 ms and 8 received packets.
	probeTailSpan    = int64(75e6)
	probeTailPackets = 8
	// probeQueueMs and probeQueuePackets: the latest segment's packets
	// (probeQueuePackets at least) took probeQueueMs longer on average to
	// arrive than the first segment's: the cluster is queueing, which shows
	// a feedback or two before its receive rate does. The means over a
	// dense cluster's packets keep jitter of tens of milliseconds under it
	// (a needless stop only costs one cluster).
	probeQueueMs      = 25.0
	probeQueuePackets = 4
)

// probeSums are the sums of a run of packets of a probe cluster.
type probeSums struct {
	sent, recv          int
	sentBytes           int64
	recvBytes           int64
	firstSend, lastSend int64
	lastSendSize        int
	firstArr, lastArr   int64
	firstArrSize        int
	delaySum            float64 // arrival - send of the received, in ms
}

// meanDelay is the mean arrival - send (ms) of the received packets.
func (s *probeSums) meanDelay() float64 { return s.delaySum / float64(max(s.recv, 1)) }

// add counts one packet; base is subtracted from its arrival - send.
func (s *probeSums) add(r *PacketResult, base int64) {
	if s.sent == 0 || r.SendTime < s.firstSend {
		s.firstSend = r.SendTime
	}
	if s.sent == 0 || r.SendTime >= s.lastSend {
		s.lastSend, s.lastSendSize = r.SendTime, r.Size
	}
	s.sent++
	s.sentBytes += int64(r.Size)
	if !r.Received {
		return
	}
	if s.recv == 0 || r.Arrival < s.firstArr {
		s.firstArr, s.firstArrSize = r.Arrival, r.Size
	}
	if s.recv == 0 || r.Arrival > s.lastArr {
		s.lastArr = r.Arrival
	}
	s.recv++
	s.recvBytes += int64(r.Size)
	s.delaySum += float64(r.Arrival-r.SendTime-base) / 1e6
}

// merge adds the sums of o.
func (s *probeSums) merge(o *probeSums) {
	if o.sent == 0 {
		return
	}
	if s.sent == 0 {
		*s = *o
		return
	}
	if o.firstSend < s.firstSend {
		s.firstSend = o.firstSend
	}
	if o.lastSend >= s.lastSend {
		s.lastSend, s.lastSendSize = o.lastSend, o.lastSendSize
	}
	s.sent += o.sent
	s.sentBytes += o.sentBytes
	if o.recv > 0 {
		if s.recv == 0 || o.firstArr < s.firstArr {
			s.firstArr, s.firstArrSize = o.firstArr, o.firstArrSize
		}
		if s.recv == 0 || o.lastArr > s.lastArr {
			s.lastArr = o.lastArr
		}
	}
	s.recv += o.recv
	s.recvBytes += o.recvBytes
	s.delaySum += o.delaySum
}

// rates are the receive and send rates of the run (bits/s); ok is false
// when it is too short to tell.
func (s *probeSums) rates() (recv, send float64, ok bool) {
	if s.sent < probeMinPackets || s.recv < probeMinPackets {
		return 0, 0, false
	}
	recvSpan := s.lastArr - s.firstArr
	if recvSpan <= 0 {
		return 0, 0, false
	}
	recv = float64(s.recvBytes-int64(s.firstArrSize)) * 8 / (float64(recvSpan) / 1e9)
	send = math.Inf(1)
	if span := s.lastSend - s.firstSend; span > 0 {
		send = float64(s.sentBytes-int64(s.lastSendSize)) * 8 / (float64(span) / 1e9)
	}
	return recv, send, true
}

// probeMeter measures probe clusters from feedback.
type probeMeter struct {
	open  bool
	total probeSums
	segs  [probeSegments]probeSums
	last  int // highest segment with packets
	// lastProbe is the send time of the cluster's latest padding packet.
	lastProbe int64
	// base is the first received packet's arrival - send: delays are
	// kept relative to it.
	base  int64
	based bool
	best  float64 // best result completed since the last take
	// fullBest is the lowest result of the clusters that filled the path.
	fullBest float64
	// saturated: the open cluster's tail was received well under its
	// send rate (or lost too much): it has filled the path.
	saturated bool
}

// add takes one reported packet in send order. Media packets sent while a
// cluster is open count with it: the planner paces the padding so that
// media and padding together make the rate it tests.
func (p *probeMeter) add(r *PacketResult) {
	if p.open && (r.SendTime-p.lastProbe > probeGap || r.SendTime-p.total.firstSend >= probeMaxSpan) {
		p.finish()
	}
	if r.Size <= 0 || (!r.Probe && !p.open) {
		return
	}
	if !p.open {
		*p = probeMeter{open: true, best: p.best, fullBest: p.fullBest}
		p.total.firstSend = r.SendTime
	}
	if r.Probe {
		p.lastProbe = max(p.lastProbe, r.SendTime)
	}
	if r.Received && !p.based {
		p.base, p.based = r.Arrival-r.SendTime, true
	}
	p.total.add(r, p.base)
	i := int((r.SendTime - p.total.firstSend) / probeSegment)
	i = min(max(i, 0), probeSegments-1)
	p.segs[i].add(r, p.base)
	p.last = max(p.last, i)
}

// update re-evaluates the open cluster's tail after a feedback.
func (p *probeMeter) update() {
	if !p.open || p.saturated {
		return
	}
	if tail, ok := p.tail(); ok {
		p.saturated = probeTailSaturated(&tail)
	}
	p.saturated = p.saturated || p.queueing()
}

// queueing reports whether the latest segment with enough received
// packets arrived probeQueueMs later, on average, than the first one.
func (p *probeMeter) queueing() bool {
	first := -1
	for i := 0; i <= p.last; i++ {
		if p.segs[i].recv >= probeQueuePackets {
			first = i
			break
		}
	}
	for i := p.last; i > first && first >= 0; i-- {
		if p.segs[i].recv >= probeQueuePackets {
			return p.segs[i].meanDelay()-p.segs[first].meanDelay() >= probeQueueMs
		}
	}
	return false
}

// tail sums the last segments of the open cluster that cover
// probeTailSpan and probeTailPackets received packets.
func (p *probeMeter) tail() (probeSums, bool) {
	var t probeSums
	for i := p.last; i >= 0; i-- {
		t.merge(&p.segs[i])
		if t.recv >= probeTailPackets && t.lastSend-t.firstSend >= probeTailSpan-probeSegment/2 {
			return t, true
		}
	}
	return t, false
}

// probeTailSaturated reports whether a tail was received well under its
// send rate, or lost too much.
func probeTailSaturated(t *probeSums) bool {
	if t.sent >= probeMinPackets && 1-float64(t.recv)/float64(t.sent) > probeMaxLoss {
		return true
	}
	recv, send, ok := t.rates()
	return ok && recv < probeSaturated*send
}

// finish closes the open cluster and keeps its result if it is the best.
func (p *probeMeter) finish() {
	p.open = false
	r, full := p.result()
	switch {
	case full && (p.fullBest == 0 || r < p.fullBest):
		p.fullBest = r
	case !full && r > p.best:
		p.best = r
	}
}

// result is the open cluster's measured rate, or 0 when it is not usable;
// full reports that the cluster filled the path (the rate is then a
// little under what its tail got through: the path's rate).
func (p *probeMeter) result() (rate float64, full bool) {
	s := &p.total
	if tail, ok := p.tail(); ok && (p.saturated || probeTailSaturated(&tail)) {
		recv, _, ok := tail.rates()
		if !ok {
			return 0, true
		}
		return probeSaturated * recv, true
	}
	if s.sent < probeMinPackets || s.recv < probeMinPackets {
		return 0, false
	}
	if 1-float64(s.recv)/float64(s.sent) > probeMaxLoss {
		return 0, true
	}
	recv, send, ok := s.rates()
	if !ok {
		return 0, false
	}
	if recv < probeSaturated*send {
		return probeSaturated * recv, true
	}
	return math.Min(send, recv), false
}

// take returns the best result of the clusters completed since the last
// call that did not fill the path, or 0, and the lowest rate of those that
// did, or 0. A cluster that filled the path says what it got through, an
// upper bound of the path's rate, never a reason to raise the estimate: if
// it ended early its tail may still hold a bucket's burst.
func (p *probeMeter) take() (best, full float64) {
	best, full = p.best, p.fullBest
	p.best, p.fullBest = 0, 0
	return best, full
}
