package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"

	"github.com/fanout-sfu/fanout/simulcast"
)

// rtcpSource is an RTCPReader that returns one marshalled packet.
type rtcpSource struct{ raw []byte }

func (s *rtcpSource) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	return copy(b, s.raw), a, nil
}

// TestTWCCRecorder records packets with transport-wide sequence numbers
// (wrapping, one lost on the way), builds the
// receiver's feedback with pion's own TWCC recorder, and checks the results:
// send times and sizes from the recorder, arrival times and losses from the
// feedback.
func TestTWCCRecorder(t *testing.T) {
	var got []simulcast.PacketResult
	var remb uint64
	rec := newTWCCRecorder(func(_ int64, rs []simulcast.PacketResult) { got = append(got, rs...) },
		func(_ int64, bps uint64) { remb = bps })
	clock := newNanoClock()
	rec.nowNanos = clock.now
	rec.seq.Store(65530) // wraps
	receiver := twcc.NewRecorder(1)
	sendTimes := map[uint16]int64{}
	for i := 0; i < 10; i++ {
		seq := rec.nextSeq()
		clock.advance(5 * time.Millisecond)
		sendTimes[seq] = clock.now()
		rec.record(seq, clock.now(), 12+8+1000, false)
		if i != 4 { // lost on the way
			receiver.Record(9, seq, int64(1_000_000+i*7000)) // µs: 7 ms apart
		}
	}
	fb := receiver.BuildFeedbackPacket()
	raw, err := rtcp.Marshal(append(fb, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 750_000, SSRCs: []uint32{9}}))
	if err != nil {
		t.Fatal(err)
	}
	reader := rec.BindRTCPReader(&rtcpSource{raw: raw})
	buf := make([]byte, 1500)
	if _, _, err := reader.Read(buf, nil); err != nil {
		t.Fatal(err)
	}
	if remb != 750_000 {
		t.Errorf("REMB %d, want 750000", remb)
	}
	if len(got) != 10 {
		t.Fatalf("%d results, want 10: %+v", len(got), got)
	}
	var firstArrival int64
	for i, r := range got {
		seq := uint16(65530 + i)
		if r.Seq != seq || r.SendTime != sendTimes[seq] || r.Size != 12+8+1000+wireOverhead || r.Probe {
			t.Errorf("result %d: %+v, want seq %d sent at %d, 1020 bytes and the wire overhead", i, r, seq, sendTimes[seq])
		}
		if r.Received != (i != 4) {
			t.Errorf("result %d received %v", i, r.Received)
		}
		if i == 0 {
			firstArrival = r.Arrival
		}
		if r.Received && r.Arrival-firstArrival != int64(i)*7*int64(time.Millisecond) {
			t.Errorf("result %d arrives %v after the first, want %v", i, time.Duration(r.Arrival-firstArrival), time.Duration(i)*7*time.Millisecond)
		}
	}
}

// TestTWCCRecorderIgnoresUnknown checks feedback for packets never sent.
func TestTWCCRecorderIgnoresUnknown(t *testing.T) {
	calls := 0
	rec := newTWCCRecorder(func(int64, []simulcast.PacketResult) { calls++ }, nil)
	receiver := twcc.NewRecorder(1)
	for i := 0; i < 5; i++ {
		receiver.Record(9, uint16(100+i), int64(i*1000))
	}
	rec.handleRTCP(receiver.BuildFeedbackPacket())
	rec.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{PacketStatusCount: 3}})
	if calls != 0 {
		t.Errorf("feedback for unknown packets reached the estimator %d times", calls)
	}
}
