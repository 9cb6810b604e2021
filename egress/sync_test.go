package egress

import (
	"testing"

	"github.com/fanout-sfu/fanout/simulcast"
)

// TestSenderReportMapping: RTP timestamps and NTP instants convert both
// ways through a sender report, across a timestamp wrap and before the
// report's own instant.
func TestSenderReportMapping(t *testing.T) {
	sr := simulcast.SenderReport{NTP: 5000 << 32, RTP: 4294960000}
	for _, c := range []struct {
		name string
		ntp  uint64
		rate int64
		want uint32
	}{
		{"the report's instant", 5000 << 32, 90000, 4294960000},
		{"one second later, across the wrap", 5001 << 32, 90000, 90000 - 7296}, // 4294960000 + 90000 - 2^32
		{"half a second before", 5000<<32 - 1<<31, 48000, 4294960000 - 24000},
	} {
		if got := rtpAt(sr, c.ntp, c.rate); got != c.want {
			t.Errorf("%s: rtpAt %d, want %d", c.name, got, c.want)
		}
		if got := ntpAt(sr, c.want, c.rate); got != c.ntp {
			t.Errorf("%s: ntpAt %d, want %d", c.name, got, c.ntp)
		}
	}
}
