package sfu

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"github.com/fanout-sfu/fanout/simulcast"
)

// sendHistorySize is how many sent packets a subscriber connection
// remembers for transport-wide feedback: about two seconds at 2000
// packets/s, while feedback comes every 50 to 100 ms.
const sendHistorySize = 4096

// sentRecord is one packet sent on a subscriber connection.
type sentRecord struct {
	at    int64 // unix nanoseconds
	seq   uint16
	size  uint16
	probe bool
	valid bool
}

// twccRecorder is the interceptor of one subscriber connection that sees
// both directions of transport-wide congestion control: it records the
// send time of every packet by its transport-wide sequence number (set by
// pion's transport-cc header extension interceptor, which must run before
// it: register it after this one), and turns the subscriber's feedback
// into per-packet results for the bandwidth estimator. REMB from clients
// that send it instead is passed on too.
type twccRecorder struct {
	interceptor.NoOp
	nowNanos   func() int64
	onFeedback func(now int64, results []simulcast.PacketResult)
	onREMB     func(now int64, bps uint64)

	mu      sync.Mutex // guards history
	history [sendHistorySize]sentRecord

	fbMu    sync.Mutex // guards results (feedback may come on any RTCP reader)
	results []simulcast.PacketResult
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

// BindLocalStream records the packets of a stream that carries the
// transport-cc extension.
func (r *twccRecorder) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, ext := range info.RTPHeaderExtensions {
		if ext.URI == sdp.TransportCCURI {
			id = uint8(ext.ID)
		}
	}
	if id == 0 {
		return writer
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if ext := h.GetExtension(id); len(ext) >= 2 {
			size := h.MarshalSize() + len(payload) + int(h.PaddingSize)
			r.record(binary.BigEndian.Uint16(ext), size, len(payload) == 0 || (h.Padding && len(payload) <= int(h.PaddingSize)))
		}
		return writer.Write(h, payload, a)
	})
}

// record notes a packet about to be sent.
func (r *twccRecorder) record(seq uint16, size int, probe bool) {
	now := r.nowNanos()
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
	arrival := int64(fb.ReferenceTime) * int64(64*time.Millisecond)
	seq, left, delta := fb.BaseSequenceNumber, int(fb.PacketStatusCount), 0
	status := func(symbol uint16) {
		if left == 0 {
			return
		}
		left--
		received := symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta
		if received && delta < len(fb.RecvDeltas) {
			arrival += fb.RecvDeltas[delta].Delta * int64(time.Microsecond)
			delta++
		}
		r.addResult(seq, received, arrival)
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
				status(s)
			}
		}
	}
	if len(r.results) > 0 && r.onFeedback != nil {
		r.onFeedback(now, r.results)
	}
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
	res := simulcast.PacketResult{Seq: seq, SendTime: s.at, Size: int(s.size), Received: received, Probe: s.probe}
	if received {
		res.Arrival = arrival
	}
	r.results = append(r.results, res)
}
