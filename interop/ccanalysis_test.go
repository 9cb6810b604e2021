package interop

import (
	"testing"

	"github.com/pion/rtp"
)

// TestCCSeqLoss checks that a sequence number counts as lost only when no
// retransmission ever filled it, over the numbers first seen in the span.
func TestCCSeqLoss(t *testing.T) {
	var ev []ccEvent
	for s := int64(1); s <= 10; s++ {
		if s == 5 || s == 7 {
			continue
		}
		ev = append(ev, ccEvent{Ev: "pkt", Kind: "v", T: float64(s * 100), Seq: s})
	}
	ev = append(ev, ccEvent{Ev: "pkt", Kind: "v", T: 2500, Seq: 5}) // retransmitted after the span
	ev = append(ev, ccEvent{Ev: "pkt", Kind: "a", T: 300, Seq: 1})
	lost, expected := seqLoss(ev, "v", 0, 1000)
	if lost != 1 || expected != 10 {
		t.Errorf("lost %d of %d, want 1 of 10 (5 was retransmitted, 7 never came)", lost, expected)
	}
	if lost, expected := seqLoss(ev, "v", 5000, 6000); lost != 0 || expected != 0 {
		t.Errorf("empty span: lost %d of %d", lost, expected)
	}
}

// TestCCFrameTracker checks that a VP8 frame completes only once all its
// packets arrived (a retransmission completes it) and that a keyframe's
// width is read.
func TestCCFrameTracker(t *testing.T) {
	key := []byte{0x10, 0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01} // descriptor S=1 PID 0, then a 640x360 keyframe header
	mid := []byte{0x00, 0xaa, 0xbb}
	ft := newFrameTracker()
	pkt := func(seq uint16, ts uint32, marker bool, payload []byte) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
	}
	if _, ok := ft.push(10, pkt(10, 900, false, key)); ok {
		t.Fatal("complete after its first packet")
	}
	if _, ok := ft.push(12, pkt(12, 900, true, mid)); ok {
		t.Fatal("complete with packet 11 missing")
	}
	f, ok := ft.push(11, pkt(11, 900, false, mid)) // the retransmission
	if !ok || !f.key || f.w != 640 {
		t.Fatalf("after the retransmission: %+v %v, want a complete 640-wide keyframe", f, ok)
	}
	if _, ok := ft.push(11, pkt(11, 900, false, mid)); ok {
		t.Error("a duplicate completed the frame twice")
	}
	delta := []byte{0x10, 0x51, 0x00, 0x00}
	if f, ok := ft.push(13, pkt(13, 5400, true, delta)); !ok || f.key || f.w != 640 {
		t.Errorf("one-packet delta frame: %+v %v, want complete at the keyframe's width", f, ok)
	}
}

// TestCCAnalyze checks the layer path, settling, changes and a visit above
// the rate on a synthetic run: HIGH before the cap at 10 s, MEDIUM from
// 11 s, HIGH again at 15-16 s, MEDIUM after, cap off at 25 s.
func TestCCAnalyze(t *testing.T) {
	var ev []ccEvent
	for ms := 5000.0; ms < 30000; ms += 50 {
		w := 1280
		if (ms >= 11000 && ms < 15000) || (ms >= 16000 && ms <= 25000) {
			w = 640
		}
		ev = append(ev, ccEvent{Ev: "frame", Kind: "v", T: ms, W: w})
	}
	m := analyzeCC(ev, ccCase{shape: ccShape{700, 16, 100}, want: 640}, 10000, 25000)
	if m.SettleMs != 1000 || !m.Direct || m.Changes != 2 || m.AboveAfter != 20 {
		t.Errorf("settle %.0f direct %v changes %d above %d; want 1000 true 2 20", m.SettleMs, m.Direct, m.Changes, m.AboveAfter)
	}
	if got := layerNames(m.Layers); got != "HIGH>MEDIUM>HIGH>MEDIUM" {
		t.Errorf("layers %s", got)
	}
	if m.RecoverMs != 1000 {
		t.Errorf("recover %.0f ms, want 1000 (the first full 1 s window of 1280 after the cap)", m.RecoverMs)
	}
	m = analyzeCC(ev, ccCase{shape: ccShape{300, 16, 100}, want: 320}, 10000, 25000)
	if m.SettleMs != -1 || m.Direct {
		t.Errorf("never at 320: settle %.0f direct %v, want -1 false", m.SettleMs, m.Direct)
	}
}
