package signaling_test

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// TestClientUnpublish: removing the track from the publisher connection and
// renegotiating unpublishes it for everyone.
func TestClientUnpublish(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "unpub", "alice", client.Options{})
	sub := n.join(t, "unpub", "bob", client.Options{})
	tc := watchTracks(sub)
	info, sender := publishVideo(t, pub, "cam")
	eventually(t, 5*time.Second, "media", func() bool { return tc.packets(info.Sid) > 10 })
	mark := sub.Mark()
	if err := pub.Pub.RemoveTrack(sender); err != nil {
		t.Fatal(err)
	}
	if err := pub.NegotiatePublisher(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := sub.WaitAfter(ctxTimeout(t, 5*time.Second), mark, participantUpdate("alice", func(p *livekit.ParticipantInfo) bool {
		return len(p.Tracks) == 0
	}))
	if err != nil {
		t.Fatalf("bob not told the track was unpublished: %v", err)
	}
	bob := n.rooms.Room("unpub").Participant("bob")
	eventually(t, 3*time.Second, "bob's subscription gone", func() bool { return len(bob.SubscribedTracks()) == 0 })
}
