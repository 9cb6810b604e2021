package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestFault6AudioNACKBounded is issue 12, fault 6: a subscriber NACKing the
// same audio packet again and again must get a bounded number of
// retransmissions, and the refused NACKs are counted.
func TestFault6AudioNACKBounded(t *testing.T) {
	up, clock, _ := newFixtureUpTrack(fixtureOpus, 0)
	w := &recordingWriter{}
	d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureOpus, 111, 9, 0, w))
	driveDownTrack(newMediaSource(up, clock, 1000), d, "dddd")
	before := len(w.packets())
	if before != 4 {
		t.Fatalf("%d packets forwarded, want 4", before)
	}
	nack := []rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 1001}}}}
	const asks = 1000
	for range asks {
		d.handleRTCP(nack)
	}
	got := len(w.packets()) - before
	if got < 1 || got > maxRetransmits {
		t.Fatalf("%d NACKs of one audio packet answered with %d retransmissions, want 1 to %d", asks, got, maxRetransmits)
	}
	if n := testing.AllocsPerRun(100, func() { d.handleRTCP(nack) }); n != 0 {
		t.Errorf("%v allocations per NACK", n)
	}
	st := d.RetransmitStats()
	if st.Packets != uint64(got) || st.Refused != uint64(asks+101-got) {
		t.Errorf("stats %+v, want %d sent and %d refused", st, got, asks-got)
	}
	w.check(t)
}

// TestFault6RetransmitBudget is issue 12, fault 6: distinct packets asked
// for all at once are retransmitted only within the downtrack's byte
// budget (a token bucket that forwarding fills, up to rtxBudgetBurst).
func TestFault6RetransmitBudget(t *testing.T) {
	up, clock, _ := newFixtureUpTrack(fixtureVP8, 2048)
	w := &recordingWriter{}
	d := newBoundDownTrack(t, up, "PA_sub", subscriberContext(fixtureVP8, 100, 9, 0, w))
	const forwarded = 1000
	driveDownTrack(newMediaSource(up, clock, 1000), d, "K"+strings.Repeat("d", forwarded-1))
	sent := w.packets()
	var fwdBytes int
	for _, p := range sent {
		fwdBytes += p.hdr.MarshalSize() + len(p.payload)
	}
	// Every packet forwarded, NACKed at once (17 per pair), as often as
	// each may be sent again: more than the budget holds.
	var pairs []rtcp.NackPair
	for seq := 1000; seq < 1000+forwarded; seq += 17 {
		pairs = append(pairs, rtcp.NackPair{PacketID: uint16(seq), LostPackets: 0xffff})
	}
	for i := range maxRetransmits {
		if i > 0 {
			time.Sleep(minRetransmitGap + 10*time.Millisecond)
		}
		d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 9, Nacks: pairs}})
	}
	var rtxBytes int
	rtx := w.packets()[len(sent):]
	for _, p := range rtx {
		rtxBytes += p.hdr.MarshalSize() + len(p.payload)
	}
	limit := rtxBudgetBurst
	if rtxBytes == 0 || rtxBytes > limit {
		t.Fatalf("%d of %d forwarded bytes retransmitted (%d packets), want some and at most %d", rtxBytes, fwdBytes, len(rtx), limit)
	}
	if st := d.RetransmitStats(); st.Refused == 0 || st.Packets != uint64(len(rtx)) {
		t.Errorf("stats %+v after %d retransmissions over budget", st, len(rtx))
	}
}
