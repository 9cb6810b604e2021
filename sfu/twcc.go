package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"

	"github.com/fanout-sfu/fanout/simulcast"
)

// sendHistorySize is how many sent packets a subscriber connection
// remembers for transport-wide feedback: about a second at 2000 packets/s,
// while feedback comes every 50 to 100 ms.
const sendHistorySize = 2048

// sentRecord is one packet sent on a subscriber connection.
type sentRecord struct {
	at    int64 // unix nanoseconds
	seq   uint16
	size  uint16
	probe bool
	valid bool
}

// twccRecorder is the transport-wide congestion control of one subscriber
// connection. Its DownTracks stamp every packet they send with its next
// transport-wide sequence number and record the send time here (no
// interceptor does it: pion's would allocate per packet); as the
// connection's first interceptor it reads the subscriber's feedback and
// turns it into per-packet results for the bandwidth estimator. REMB from
// clients that send it instead is passed on too.
type twccRecorder struct {
	interceptor.NoOp
	nowNanos   func() int64
	onFeedback func(now int64, results []simulcast.PacketResult)
	onREMB     func(now int64, bps uint64)
	seq        atomic.Uint32 // next transport-wide sequence number

	mu      sync.Mutex // guards history
	history [sendHistorySize]sentRecord

	fbMu    sync.Mutex // guards results and the counts below (feedback may come on any RTCP reader)
	results []simulcast.PacketResult
	// walked counts the packet statuses of feedback looked at, rejected
	// the feedback packets refused for naming packets never sent.
	walked, rejected uint64
}

func newTWCCRecorder(onFeedback func(int64, []simulcast.PacketResult), onREMB func(int64, uint64)) *twccRecorder {
	return &twccRecorder{
		nowNanos:   func() int64 { return time.Now().UnixNano() },
		onFeedback: onFeedback,
		onREMB:     onREMB,
		results:    make([]simulcast.PacketResult, 0, 256),
	}
}

// twccRecorderFactory hands one recorder to the one peer connection built
// with it.
type twccRecorderFactory struct{ rec *twccRecorder }

// NewInterceptor returns the recorder.
func (f twccRecorderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return f.rec, nil
}

// nextSeq hands out the connection's next transport-wide sequence number.
func (r *twccRecorder) nextSeq() uint16 { return uint16(r.seq.Add(1) - 1) }

// wireOverhead is what a packet costs on the link beyond its RTP bytes:
// the SRTP authentication tag (10), UDP (8), IPv4 (20) and an Ethernet
// header (14). A shaper counts it: a 700 kbit/s link carries about
// 640 kbit/s of 1,200-byte RTP packets and much less of small audio and
// padding packets, so an estimate of RTP bytes alone read the link 10 %
// slow and put a 640 layer that fits under it.
const wireOverhead = 52

// record notes a packet about to be sent at now (unix nanoseconds).
func (r *twccRecorder) record(seq uint16, now int64, size int, probe bool) {
	r.mu.Lock()
	r.history[seq%sendHistorySize] = sentRecord{at: now, seq: seq, size: uint16(min(size, 0xffff)), probe: probe, valid: true}
	r.mu.Unlock()
}

// BindRTCPReader looks at the feedback the subscriber sends.
func (r *twccRecorder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, perr := attr.GetRTCPPackets(b[:n])
		if perr == nil {
			r.handleRTCP(pkts)
		}
		return n, attr, err
	})
}

func (r *twccRecorder) handleRTCP(pkts []rtcp.Packet) {
	now := r.nowNanos()
	for _, p := range pkts {
		switch fb := p.(type) {
		case *rtcp.TransportLayerCC:
			r.feedback(now, fb)
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			if r.onREMB != nil && fb.Bitrate > 0 {
				r.onREMB(now, uint64(fb.Bitrate))
			}
		}
	}
}

// feedback turns one transport-wide feedback packet into packet results.
func (r *twccRecorder) feedback(now int64, fb *rtcp.TransportLayerCC) {
	r.fbMu.Lock()
	defer r.fbMu.Unlock()
	r.results = r.results[:0]
	count, skip, ok := r.feedbackSpan(fb.BaseSequenceNumber, fb.PacketStatusCount)
	if !ok {
		r.rejected++
		return
	}
	arrival := int64(fb.ReferenceTime) * int64(64*time.Millisecond)
	seq, left, delta := fb.BaseSequenceNumber, count, 0
	status := func(symbol uint16) {
		left--
		r.walked++
		received := symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta
		if received && delta < len(fb.RecvDeltas) {
			arrival += fb.RecvDeltas[delta].Delta * int64(time.Microsecond)
			delta++
		}
		if skip > 0 {
			skip-- // older than the history: no lookup
		} else {
			r.addResult(seq, received, arrival)
		}
		seq++
	}
	for _, chunk := range fb.PacketChunks {
		switch c := chunk.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(c.RunLength) && left > 0; i++ {
				status(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				if left == 0 {
					break
				}
				status(s)
			}
		}
		if left == 0 {
			break
		}
	}
	if len(r.results) > 0 && r.onFeedback != nil {
		r.onFeedback(now, r.results)
	}
}

// feedbackSpan bounds the work a feedback packet makes by what was sent:
// a count of statuses of 65535 takes a packet of a few dozen bytes. A
// feedback naming packets never sent (beyond the newest, which no
// receiver can have seen, or before the first) is refused (ok false), and
// so is one whose base is over a whole history behind the history: at
// most two histories of statuses are walked. Of the count statuses
// walked, the first skip are older than the history and get no lookup.
func (r *twccRecorder) feedbackSpan(base, statuses uint16) (count, skip int, ok bool) {
	total := r.seq.Load() // packets stamped so far (wrapping after 2^32)
	if total == 0 || statuses == 0 {
		return 0, 0, false
	}
	behind := int(uint16(total-1) - base) // how far base is before the newest
	window := int(min(total, sendHistorySize))
	switch {
	case int(statuses) > behind+1:
		return 0, 0, false // reaches beyond the newest (or base is ahead of it)
	case uint32(behind) >= total:
		return 0, 0, false // before the first packet
	case behind >= 2*window:
		return 0, 0, false // far behind the history
	}
	if behind >= window {
		skip = behind - window + 1
	}
	return int(statuses), skip, true
}

// addResult adds the fate of one packet, if it is still in the history.
// Callers hold fbMu.
func (r *twccRecorder) addResult(seq uint16, received bool, arrival int64) {
	r.mu.Lock()
	s := r.history[seq%sendHistorySize]
	r.mu.Unlock()
	if !s.valid || s.seq != seq {
		return
	}
	res := simulcast.PacketResult{Seq: seq, SendTime: s.at, Size: int(s.size) + wireOverhead, Received: received, Probe: s.probe}
	if received {
		res.Arrival = arrival
	}
	r.results = append(r.results, res)
}
