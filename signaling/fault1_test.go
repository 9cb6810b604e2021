package signaling_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// holdingSink is a Sink (as an egress would attach) whose TrackClosed
// blocks until released: it holds a track between "ended" and
// "unpublished".
type holdingSink struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdingSink) SinkID() string       { return "hold" }
func (h *holdingSink) WriteRTP(*sfu.Packet) {}
func (h *holdingSink) TrackClosed() {
	h.once.Do(func() { close(h.entered) })
	<-h.release
}

// TestFault1JoinWhileTrackEnds (issue 12, fault 1): a client joining over
// /rtc while a published track has ended but is not yet unpublished gets
// its join and then hears of the unpublish. Before the fix its
// participant's Start hung in UpTrack.AddSink (TrackClosed run under the
// sink lock, re-entered by the unsubscribe), so the client never got its
// join and stayed in the room as a ghost.
func TestFault1JoinWhileTrackEnds(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "ending", "alice", client.Options{})
	early := n.join(t, "ending", "bob", client.Options{})
	tc := watchTracks(early)
	info, sender := publishVideo(t, pub, "cam")
	eventually(t, 5*time.Second, "media", func() bool { return tc.packets(info.Sid) > 10 })
	room := n.rooms.Room("ending")
	track, ok := room.PublishedTrack(livekit.TrackID(info.Sid))
	if !ok {
		t.Fatal("published track not found")
	}
	hold := &holdingSink{entered: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(hold.release) })
	defer release()
	track.AddSink(hold)
	if err := pub.Pub.RemoveTrack(sender); err != nil {
		t.Fatal(err)
	}
	if err := pub.NegotiatePublisher(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hold.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the track did not end after its sender was removed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	late, err := client.Connect(ctx, n.wsURL, token(t, "ending", "carol", nil), client.Options{})
	if err != nil {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		// Written at once: a deadlocked node cannot be stopped by the
		// cleanups, and the test then ends only at the test timeout.
		msg := fmt.Sprintf("a client joining while a track ended got no join: %v; goroutines:\n%s", err, buf.String())
		fmt.Fprintln(os.Stderr, msg)
		t.Fatal(msg)
	}
	t.Cleanup(late.Close)
	release()
	eventually(t, 5*time.Second, "track unpublished, nobody subscribed", func() bool {
		_, still := room.PublishedTrack(livekit.TrackID(info.Sid))
		carol := room.Participant("carol")
		return !still && carol != nil && len(carol.SubscribedTracks()) == 0 &&
			len(room.Participant("bob").SubscribedTracks()) == 0
	})
}
