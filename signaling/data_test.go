package signaling_test

import (
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/signaling/client"
)

func sendUser(t *testing.T, c *client.Client, payload string, dests ...string) {
	t.Helper()
	pkt := &livekit.DataPacket{Value: &livekit.DataPacket_User{User: &livekit.UserPacket{
		Payload: []byte(payload), Topic: strPtr("chat"), DestinationIdentities: dests,
	}}}
	if err := c.SendData(pkt, true); err != nil {
		t.Fatalf("send data: %v", err)
	}
}

func strPtr(s string) *string { return &s }

func userPayload(s string) func(*livekit.DataPacket) bool {
	return func(p *livekit.DataPacket) bool { return string(p.GetUser().GetPayload()) == s }
}

// waitDataOpen waits until the clients' publisher data channels are open.
func waitDataOpen(t *testing.T, cs ...*client.Client) {
	t.Helper()
	for _, c := range cs {
		eventually(t, 5*time.Second, "publisher data channel open", c.DataReady)
	}
}

func TestDataRelayedReliableAndLossy(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	a := n.join(t, "data", "alice", client.Options{})
	b := n.join(t, "data", "bob", client.Options{})
	c := n.join(t, "data", "carol", client.Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	for _, cl := range []*client.Client{a, b} {
		if err := cl.NegotiatePublisher(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitDataOpen(t, a, b)
	sendUser(t, a, "a->all")
	sendUser(t, b, "b->all")
	sendUser(t, a, "a->bob", "bob")
	got, err := b.WaitData(ctx, userPayload("a->all"))
	if err != nil {
		t.Fatalf("bob missed alice's packet: %v", err)
	}
	if got.ParticipantIdentity != "alice" || got.GetUser().GetTopic() != "chat" || got.Kind != livekit.DataPacket_RELIABLE {
		t.Fatalf("relayed packet lost its sender, topic or kind: %v", got)
	}
	if _, err := a.WaitData(ctx, userPayload("b->all")); err != nil {
		t.Fatalf("alice missed bob's packet: %v", err)
	}
	if _, err := b.WaitData(ctx, userPayload("a->bob")); err != nil {
		t.Fatalf("bob missed his direct packet: %v", err)
	}
	if _, err := c.WaitData(ctx, userPayload("a->all")); err != nil {
		t.Fatalf("carol missed the broadcast: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range c.ReceivedData() {
		if string(p.GetUser().GetPayload()) == "a->bob" {
			t.Fatal("carol received a packet addressed to bob only")
		}
	}
	lossy := &livekit.DataPacket{Value: &livekit.DataPacket_User{User: &livekit.UserPacket{Payload: []byte("fast")}}}
	if err := a.SendData(lossy, false); err != nil {
		t.Fatal(err)
	}
	got, err = b.WaitData(ctx, userPayload("fast"))
	if err != nil || got.Kind != livekit.DataPacket_LOSSY {
		t.Fatalf("lossy packet: %v %v", got, err)
	}
}
