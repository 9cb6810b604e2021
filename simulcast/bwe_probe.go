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
// (bytes between its first and last arrival over that span, spanBytes)
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
	sent, recv                  int
	sentBytes                   int64
	recvBytes                   int64
	firstSend, lastSend         int64
	firstSendSize, lastSendSize int
	firstArr, lastArr           int64
	firstArrSize, lastArrSize   int
	delaySum                    float64 // arrival - send of the received, in ms
}

// meanDelay is the mean arrival - send (ms) of the received packets.
func (s *probeSums) meanDelay() float64 { return s.delaySum / float64(max(s.recv, 1)) }

// add counts one packet; base is subtracted from its arrival - send.
func (s *probeSums) add(r *PacketResult, base int64) {
	if s.sent == 0 || r.SendTime < s.firstSend {
		s.firstSend, s.firstSendSize = r.SendTime, r.Size
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
		s.lastArr, s.lastArrSize = r.Arrival, r.Size
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
		s.firstSend, s.firstSendSize = o.firstSend, o.firstSendSize
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
			s.lastArr, s.lastArrSize = o.lastArr, o.lastArrSize
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
	recv = spanBytes(s.recvBytes, s.firstArrSize, s.lastArrSize) * 8 / (float64(recvSpan) / 1e9)
	send = math.Inf(1)
	if span := s.lastSend - s.firstSend; span > 0 {
		send = spanBytes(s.sentBytes, s.firstSendSize, s.lastSendSize) * 8 / (float64(span) / 1e9)
	}
	return recv, send, true
}

// spanBytes is what a run of packets carried between its first and last
// (send or arrival) instants: its bytes less half of the first packet and
// half of the last. Counting the same share of both ends on the send and
// the receive side keeps a run that mixes media packets of 1,200 bytes with
// small padding packets from reading a rate difference where there is none:
// excluding a whole first packet on one side and a whole last on the other
// biased a sparse tail's two rates by a packet's size (a tenth of the rate
// over 75 ms at 1 Mbit/s), enough to call an open link full.
func spanBytes(bytes int64, first, last int) float64 {
	return float64(bytes) - float64(first+last)/2
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
	// verdict is what made the open cluster saturated, for logs.
	verdict ProbeVerdict
}

// ProbeVerdict says why a probe cluster was found to fill the path: the
// tail's sums when it was, and the queueing delay growth.
type ProbeVerdict struct {
	By             string  // "tail_rate", "tail_loss", "queueing" or "cluster_rate"; "" when not full
	TailSent       int     // packets sent in the tail
	TailRecv       int     // of them received
	TailSendBps    float64 // the tail's send rate
	TailRecvBps    float64 // the tail's receive rate
	TailSendSpanMs float64 // first to last send in the tail
	TailRecvSpanMs float64 // first to last arrival in the tail
	QueueMs        float64 // latest segment's mean delay over the first's
	AtMs           float64 // the tail's last send, from the cluster's first
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
	tail, ok := p.tail()
	if ok {
		p.saturated = probeTailSaturated(&tail)
	}
	q := p.queueDelay()
	if !p.saturated && q >= probeQueueMs {
		p.saturated = true
	}
	if p.saturated {
		p.verdict = verdictOf(&tail, q, p.total.firstSend, "queueing")
	}
}

// verdictOf describes a saturated tail t for logs; by names the test
// that fired when neither of the tail's did.
func verdictOf(t *probeSums, queueMs float64, start int64, by string) ProbeVerdict {
	v := ProbeVerdict{By: by, TailSent: t.sent, TailRecv: t.recv, QueueMs: queueMs,
		TailSendSpanMs: float64(t.lastSend-t.firstSend) / 1e6, TailRecvSpanMs: float64(t.lastArr-t.firstArr) / 1e6,
		AtMs: float64(t.lastSend-start) / 1e6}
	v.TailRecvBps, v.TailSendBps, _ = t.rates()
	switch {
	case t.sent >= probeMinPackets && 1-float64(t.recv)/float64(t.sent) > probeMaxLoss:
		v.By = "tail_loss"
	case v.TailRecvBps > 0 && v.TailRecvBps < probeSaturated*v.TailSendBps:
		v.By = "tail_rate"
	}
	return v
}

// queueDelay is how much later, on average, the latest segment with
// enough received packets arrived than the first one (ms).
func (p *probeMeter) queueDelay() float64 {
	first := -1
	for i := 0; i <= p.last; i++ {
		if p.segs[i].recv >= probeQueuePackets {
			first = i
			break
		}
	}
	for i := p.last; i > first && first >= 0; i-- {
		if p.segs[i].recv >= probeQueuePackets {
			return p.segs[i].meanDelay() - p.segs[first].meanDelay()
		}
	}
	return 0
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
	if full && !p.saturated {
		// Found full only now (the whole cluster's rates, or its final
		// tail): say why, for the log of its failure.
		tail, _ := p.tail()
		p.verdict = verdictOf(&tail, p.queueDelay(), p.total.firstSend, "cluster_rate")
	}
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
