package sfu

import "testing"

// TestFault11UpTrackDiscarded is issue 12, item 11: the UpTrack's counts
// of malformed and dropped packets were written on every packet and read
// by nothing; Discarded exposes them.
func TestFault11UpTrackDiscarded(t *testing.T) {
	up, clock, _ := newFixtureUpTrack(fixtureVP8, 0)
	src := newMediaSource(up, clock, 1000)
	src.send("Kdd")
	f := &forwarder{up: up}
	f.forward(src.sent[1].marshal(96)) // a duplicate
	f.forward([]byte{0x80, 96})        // too short to be RTP
	f.forward([]byte{0x00, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	if n, _ := up.Stats(); n != 4 {
		t.Errorf("%d packets counted, want 4 (three and a duplicate)", n)
	}
	if malformed, dropped := up.Discarded(); malformed != 2 || dropped != 1 {
		t.Errorf("discarded %d malformed and %d dropped, want 2 and 1", malformed, dropped)
	}
}
