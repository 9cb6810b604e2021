package interop

import (
	"bytes"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
)

// publishData sends one reliable user packet from p.
func publishData(t *testing.T, p *peer, payload []byte, topic string, to ...string) {
	t.Helper()
	opts := []lksdk.DataPublishOption{lksdk.WithDataPublishReliable(true), lksdk.WithDataPublishTopic(topic)}
	if len(to) > 0 {
		opts = append(opts, lksdk.WithDataPublishDestination(to))
	}
	if err := p.Room.LocalParticipant.PublishDataPacket(lksdk.UserData(payload), opts...); err != nil {
		t.Fatalf("%s: PublishDataPacket: %v", p.Identity, err)
	}
}

// expectData waits for the next user packet at p and checks it.
func expectData(t *testing.T, p *peer, payload []byte, topic, sender string) {
	t.Helper()
	select {
	case m := <-p.Data:
		if !bytes.Equal(m.Payload, payload) || m.Topic != topic || m.Sender != sender {
			t.Errorf("%s got data %q topic %q from %q; want %q topic %q from %q",
				p.Identity, m.Payload, m.Topic, m.Sender, payload, topic, sender)
		}
	case <-time.After(eventTimeout):
		t.Errorf("%s: no data packet (%q from %q) within %s", p.Identity, payload, sender, eventTimeout)
	}
}

func TestData(t *testing.T) {
	t.Run("Exchange", func(t *testing.T) {
		setup(t)
		room := uniqueRoom(t)
		a := connect(t, room, "alice")
		b := connect(t, room, "bob")
		a.waitSees(t, "bob")
		b.waitSees(t, "alice")
		waitDataReady(t, a, b)

		fromA := []byte("hello from alice \x00\x01\x02")
		fromB := []byte("hello from bob")
		publishData(t, a, fromA, "t")
		publishData(t, b, fromB, "t2")
		expectData(t, b, fromA, "t", "alice")
		expectData(t, a, fromB, "t2", "bob")

		// The sender must not get its own packet back (the SDK drops it anyway; a server
		// echoing would still show up as an extra packet if identity were wrong).
		select {
		case m := <-a.Data:
			t.Errorf("alice got an extra packet %q from %q", m.Payload, m.Sender)
		case m := <-b.Data:
			t.Errorf("bob got an extra packet %q from %q", m.Payload, m.Sender)
		default:
		}
	})

	t.Run("Destination", func(t *testing.T) {
		setup(t)
		room := uniqueRoom(t)
		a := connect(t, room, "alice")
		b := connect(t, room, "bob")
		c := connect(t, room, "carol")
		a.waitSees(t, "bob", "carol")
		b.waitSees(t, "alice", "carol")
		c.waitSees(t, "alice", "bob")
		waitDataReady(t, a, b, c)

		private := []byte("for bob only")
		marker := []byte("for everyone")
		publishData(t, a, private, "dm", "bob")
		// A broadcast after the private packet on the same reliable (ordered) channel: once
		// carol has it, anything the server forwarded to her before it has arrived too.
		publishData(t, a, marker, "all")

		expectData(t, b, private, "dm", "alice")
		expectData(t, b, marker, "all", "alice")
		expectData(t, c, marker, "all", "alice")
		if t.Failed() {
			return
		}
		select {
		case m := <-c.Data:
			t.Errorf("carol got %q (topic %q) from %q, which was not addressed to her", m.Payload, m.Topic, m.Sender)
		default:
		}
	})
}
