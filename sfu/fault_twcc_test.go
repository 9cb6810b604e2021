package sfu

import (
	"testing"

	"github.com/pion/rtcp"

	"github.com/fanout-sfu/fanout/simulcast"
)

// craftedFeedback is a transport-wide feedback packet of about 40 bytes
// that reports count packets from base as not received, in run-length
// chunks of the largest run.
func craftedFeedback(t *testing.T, base, count uint16) []byte {
	t.Helper()
	fb := &rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 9, BaseSequenceNumber: base, PacketStatusCount: count}
	for left := int(count); left > 0; left -= 8191 {
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{
			PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: uint16(min(left, 8191)),
		})
	}
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback}
	fb.Header.Padding = fb.Len()%4 != 0
	fb.Header.Length = uint16((fb.Len()+3)/4 - 1)
	raw, err := rtcp.Marshal([]rtcp.Packet{fb})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// feedbackOutcome is what a recorder made of one feedback packet.
type feedbackOutcome struct {
	results          int
	walked, rejected uint64
}

// feedAfterSending records sent packets on a new recorder, then reads raw
// as the subscriber's feedback, through the interceptor as pion would.
func feedAfterSending(t *testing.T, sent int, raw []byte) feedbackOutcome {
	t.Helper()
	var out feedbackOutcome
	rec := newTWCCRecorder(func(_ int64, rs []simulcast.PacketResult) { out.results += len(rs) }, nil)
	for range sent {
		rec.record(rec.nextSeq(), 1, 1000, false)
	}
	reader := rec.BindRTCPReader(&rtcpSource{raw: raw})
	if _, _, err := reader.Read(make([]byte, 1500), nil); err != nil {
		t.Fatal(err)
	}
	rec.fbMu.Lock()
	out.walked, out.rejected = rec.walked, rec.rejected
	rec.fbMu.Unlock()
	return out
}

// TestFault7CraftedFeedbackBounded is issue 12, fault 7: a transport-cc
// feedback packet of a few dozen bytes claiming 65535 packet statuses
// must cost work in proportion to the packets actually sent, not 65535
// history lookups under a lock.
func TestFault7CraftedFeedbackBounded(t *testing.T) {
	const sent = 100
	tests := []struct {
		name        string
		base, count uint16
		maxWalked   uint64
		wantResults int
	}{
		{name: "from the first packet, far beyond the newest", base: 0, count: 65535, maxWalked: 0},
		{name: "beyond the newest", base: 200, count: 65535, maxWalked: 0},
		{name: "just behind, wrapping", base: 65535 - 100, count: 65535, maxWalked: 0},
		{name: "the packets sent", base: 0, count: sent, maxWalked: sent, wantResults: sent},
		{name: "the newest few", base: sent - 10, count: 10, maxWalked: 10, wantResults: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := craftedFeedback(t, tt.base, tt.count)
			if len(raw) > 64 {
				t.Fatalf("crafted feedback of %d bytes", len(raw))
			}
			got := feedAfterSending(t, sent, raw)
			if got.walked > tt.maxWalked {
				t.Errorf("a %d-byte feedback for %d packets walked %d statuses with %d packets sent, want at most %d",
					len(raw), tt.count, got.walked, sent, tt.maxWalked)
			}
			if got.results != tt.wantResults {
				t.Errorf("%d results, want %d", got.results, tt.wantResults)
			}
			if wantRejected := tt.wantResults == 0; (got.rejected == 1) != wantRejected {
				t.Errorf("%d feedback packets rejected, want rejected %v", got.rejected, wantRejected)
			}
		})
	}
}

// TestFault7FeedbackBehindHistory checks the other end of fault 7: a
// feedback starting before the send history walks the statuses before it
// without lookups, and one starting far behind it is refused.
func TestFault7FeedbackBehindHistory(t *testing.T) {
	const sent = 70000 // the sequence numbers wrap
	newest := uint16((sent - 1) % 65536)
	tests := []struct {
		name        string
		base, count uint16
		wantResults int
		rejected    bool
	}{
		{name: "starts before the history", base: newest - 2499, count: 2500, wantResults: sendHistorySize},
		{name: "ends before the newest", base: newest - 2499, count: 1000, wantResults: 1000 - (2500 - sendHistorySize)},
		{name: "far behind", base: newest - 3*sendHistorySize, count: 3*sendHistorySize + 1, rejected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := feedAfterSending(t, sent, craftedFeedback(t, tt.base, tt.count))
			if got.results != tt.wantResults || (got.rejected == 1) != tt.rejected {
				t.Errorf("%d results, %d rejected; want %d, rejected %v", got.results, got.rejected, tt.wantResults, tt.rejected)
			}
			if got.walked > 2*sendHistorySize {
				t.Errorf("%d statuses walked", got.walked)
			}
		})
	}
}
