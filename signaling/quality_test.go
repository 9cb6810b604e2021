package signaling_test

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// waitQuality waits until c hears that participant sid has quality want.
func waitQuality(t *testing.T, c *client.Client, sid string, want livekit.ConnectionQuality) *livekit.ConnectionQualityInfo {
	t.Helper()
	var got *livekit.ConnectionQualityInfo
	_, err := c.WaitFor(ctxTimeout(t, 10*time.Second), func(m *livekit.SignalResponse) bool {
		for _, u := range m.GetConnectionQuality().GetUpdates() {
			if u.ParticipantSid == sid && u.Quality == want {
				got = u
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("never told %s is %s: %v", sid, want, err)
	}
	return got
}

// TestConnectionQuality has bob lose a fifth of the video he receives, for
// good (retransmissions too): everyone hears bob is POOR, from his receiver
// reports, while alice, whose paths are clean, stays EXCELLENT.
func TestConnectionQuality(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{qualityInterval: 300 * time.Millisecond})
	alice := n.join(t, "quality", "alice", client.Options{})
	bob := n.join(t, "quality", "bob", client.Options{Configure: func(_ *webrtc.MediaEngine, ir *interceptor.Registry) error {
		// Every fifth sequence number, retransmissions included: a
		// lasting loss the receiver reports.
		ir.Add(dropVideoFactory{&dropVideo{drop: func(h *rtp.Header) bool { return h.SequenceNumber%5 == 0 }}})
		return nil
	}})
	watchTracks(bob) // reading is what runs bob's interceptors
	publishVideo(t, alice, "cam")
	bobSid := bob.Join.Participant.Sid
	poor := waitQuality(t, alice, bobSid, livekit.ConnectionQuality_POOR)
	waitQuality(t, bob, bobSid, livekit.ConnectionQuality_POOR)
	ok := waitQuality(t, bob, alice.Join.Participant.Sid, livekit.ConnectionQuality_EXCELLENT)
	t.Logf("bob %s (%.2f), alice %s (%.2f)", poor.Quality, poor.Score, ok.Quality, ok.Score)
}

// TestSubscriberBandwidthEstimate checks that a subscriber's transport-wide
// feedback reaches the estimator: on loopback, receiving the 1.4 Mbit/s
// HIGH layer, the bitrate its feedback reports is measured, and the
// estimate covers it.
func TestSubscriberBandwidthEstimate(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	bob := watchFrames(n.join(t, "bwe", "bob", client.Options{}))
	alice := n.join(t, "bwe", "alice", simulcastClientOptions())
	info, _ := publishSimulcastFiles(t, alice, "vp8", "cam")
	waitKeyframe(t, bob, info.Sid, 0, frameSize{1280, 720}, 5*time.Second)
	p := n.rooms.Room("bwe").Participant("bob")
	eventually(t, 10*time.Second, "bob's feedback reporting the HIGH layer", func() bool { return p.ReceivedBitrate() > 1_000_000 })
	if est, got := p.BandwidthEstimate(), p.ReceivedBitrate(); est < got {
		t.Errorf("bob's estimate %d bit/s under what he receives, %d", est, got)
	}
	t.Logf("bob's estimate: %d bit/s, received %d", p.BandwidthEstimate(), p.ReceivedBitrate())
}
