package signaling_test

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// TestShutdownAsksClientsToRejoin: a server shutdown tells clients to
// reconnect (elsewhere or later), while a removal tells them to stay away.
func TestShutdownAsksClientsToRejoin(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	c := n.join(t, "bye", "alice", client.Options{})
	n.rooms.Close()
	msg, err := c.WaitFor(ctxTimeout(t, 5*time.Second), func(m *livekit.SignalResponse) bool { return m.GetLeave() != nil })
	if err != nil {
		t.Fatalf("no leave on shutdown: %v", err)
	}
	l := msg.GetLeave()
	if l.Action != livekit.LeaveRequest_RECONNECT || !l.CanReconnect || l.Reason != livekit.DisconnectReason_SERVER_SHUTDOWN {
		t.Fatalf("shutdown leave = %v, want RECONNECT with SERVER_SHUTDOWN", l)
	}
}
