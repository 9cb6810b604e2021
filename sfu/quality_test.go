package sfu

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
)

func TestQualityScore(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		s    linkStats
		want livekit.ConnectionQuality
	}{
		{"perfect", linkStats{}, livekit.ConnectionQuality_EXCELLENT},
		{"lan", linkStats{loss: 0.001, jitter: 2 * ms, rtt: 5 * ms}, livekit.ConnectionQuality_EXCELLENT},
		{"good wan", linkStats{loss: 0.005, jitter: 10 * ms, rtt: 80 * ms}, livekit.ConnectionQuality_EXCELLENT},
		{"some loss", linkStats{loss: 0.03, jitter: 10 * ms, rtt: 60 * ms}, livekit.ConnectionQuality_GOOD},
		{"long way", linkStats{loss: 0, jitter: 20 * ms, rtt: 300 * ms}, livekit.ConnectionQuality_GOOD},
		{"heavy loss", linkStats{loss: 0.2, rtt: 20 * ms}, livekit.ConnectionQuality_POOR},
		{"satellite and loss", linkStats{loss: 0.05, jitter: 50 * ms, rtt: 700 * ms}, livekit.ConnectionQuality_POOR},
		{"everything lost", linkStats{loss: 1}, livekit.ConnectionQuality_POOR},
	}
	for _, tt := range tests {
		q, score := qualityScore(tt.s)
		if q != tt.want || score < 1 || score > 4.5 {
			t.Errorf("%s: %s (%.2f), want %s", tt.name, q, score, tt.want)
		}
	}
}

func TestReceiverReportStats(t *testing.T) {
	now := time.Now()
	var r receiverReport
	if _, ok := r.stats(now, time.Second); ok {
		t.Fatal("stats before any report")
	}
	sentSR := now.Add(-250 * time.Millisecond)
	r.record(rtcp.ReceptionReport{
		SSRC: 9, FractionLost: 64, Jitter: 900, // a quarter lost; 10 ms at 90 kHz
		LastSenderReport: ntpShort(sentSR), Delay: 65536 / 10, // held 100 ms at the receiver
	}, 90000, now)
	s, ok := r.stats(now, time.Second)
	if !ok || s.loss != 0.25 || s.jitter != 10*time.Millisecond || s.rtt < 149*time.Millisecond || s.rtt > 151*time.Millisecond {
		t.Fatalf("stats %+v %v, want loss 0.25, jitter 10ms, rtt 150ms", s, ok)
	}
	if _, ok := r.stats(now.Add(2*time.Second), time.Second); ok {
		t.Error("a stale report still counts")
	}
}

func TestLossMeterAndCacheCounts(t *testing.T) {
	c := NewPacketCache(64)
	var m lossMeter
	for seq := uint16(65500); seq != 100; seq++ {
		if seq%10 != 0 { // every tenth lost
			c.Store(testPacket(seq, 1, 100))
		}
	}
	loss, ok := m.sample(c.Counts())
	if !ok || loss < 0.09 || loss > 0.11 {
		t.Fatalf("loss %.3f %v, want about 0.1", loss, ok)
	}
	if _, ok := m.sample(c.Counts()); ok {
		t.Error("no new packets, yet a sample")
	}
	for seq := uint16(100); seq < 120; seq++ {
		c.Store(testPacket(seq, 1, 100))
	}
	if loss, ok := m.sample(c.Counts()); !ok || loss != 0 {
		t.Errorf("clean stretch: loss %.3f %v", loss, ok)
	}
}
