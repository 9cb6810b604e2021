package interop

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"google.golang.org/protobuf/proto"
)

// roomNames lists the names ListRooms returns for req.
func roomNames(t *testing.T, c *lksdk.RoomServiceClient, req *livekit.ListRoomsRequest) []string {
	t.Helper()
	res, err := c.ListRooms(rpcCtx(t), req)
	if err != nil {
		t.Fatalf("ListRooms: %v", err)
	}
	var names []string
	for _, r := range res.Rooms {
		names = append(names, r.Name)
	}
	return names
}

// listRoom returns the room called name from ListRooms, or nil.
func listRoom(t *testing.T, c *lksdk.RoomServiceClient, name string) *livekit.Room {
	t.Helper()
	res, err := c.ListRooms(rpcCtx(t), &livekit.ListRoomsRequest{})
	if err != nil {
		t.Fatalf("ListRooms: %v", err)
	}
	for _, r := range res.Rooms {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// joinPair connects alice then bob to a fresh room and waits until each sees the other.
func joinPair(t *testing.T) (room string, a, b *peer) {
	t.Helper()
	room = uniqueRoom(t)
	a = connect(t, room, "alice")
	b = connect(t, room, "bob")
	a.waitSees(t, "bob")
	b.waitSees(t, "alice")
	return room, a, b
}

func TestRoomService(t *testing.T) {
	c := roomClient()

	t.Run("CreateListDeleteRoom", func(t *testing.T) {
		setup(t)
		name := uniqueRoom(t)
		created, err := c.CreateRoom(rpcCtx(t), &livekit.CreateRoomRequest{Name: name, EmptyTimeout: 60, Metadata: "created"})
		if err != nil {
			t.Fatalf("CreateRoom: %v", err)
		}
		if created.Name != name || created.Metadata != "created" || !strings.HasPrefix(created.Sid, "RM_") {
			t.Errorf("CreateRoom returned name %q metadata %q sid %q; want %q, %q, RM_...", created.Name, created.Metadata, created.Sid, name, "created")
		}

		if names := roomNames(t, c, &livekit.ListRoomsRequest{}); !slices.Contains(names, name) {
			t.Errorf("ListRooms{} = %v, missing %q", names, name)
		}
		got := listRoom(t, c, name)
		if got != nil && (got.Sid != created.Sid || got.Metadata != "created") {
			t.Errorf("ListRooms shows sid %q metadata %q; want %q %q", got.Sid, got.Metadata, created.Sid, "created")
		}
		if names := roomNames(t, c, &livekit.ListRoomsRequest{Names: []string{name, name + "-nope"}}); !slices.Equal(names, []string{name}) {
			t.Errorf("ListRooms{Names: [%s, %s-nope]} = %v, want just the first", name, name, names)
		}

		// Creating an existing room returns it, unchanged.
		again, err := c.CreateRoom(rpcCtx(t), &livekit.CreateRoomRequest{Name: name})
		if err != nil {
			t.Errorf("CreateRoom (existing): %v", err)
		} else if again.Sid != created.Sid {
			t.Errorf("CreateRoom (existing) sid %q, want %q", again.Sid, created.Sid)
		}

		if _, err := c.DeleteRoom(rpcCtx(t), &livekit.DeleteRoomRequest{Room: name}); err != nil {
			t.Fatalf("DeleteRoom: %v", err)
		}
		if names := roomNames(t, c, &livekit.ListRoomsRequest{}); slices.Contains(names, name) {
			t.Errorf("ListRooms after DeleteRoom still shows %q", name)
		}
	})

	t.Run("Participants", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)

		res, err := c.ListParticipants(rpcCtx(t), &livekit.ListParticipantsRequest{Room: room})
		if err != nil {
			t.Fatalf("ListParticipants: %v", err)
		}
		var ids []string
		sids := map[string]string{}
		for _, p := range res.Participants {
			ids = append(ids, p.Identity)
			sids[p.Identity] = p.Sid
			if p.State == livekit.ParticipantInfo_DISCONNECTED {
				t.Errorf("ListParticipants: %s is DISCONNECTED", p.Identity)
			}
		}
		sort.Strings(ids)
		if !slices.Equal(ids, []string{"alice", "bob"}) {
			t.Errorf("ListParticipants identities = %v, want [alice bob]", ids)
		}
		if sids["alice"] != a.Room.LocalParticipant.SID() || sids["bob"] != b.Room.LocalParticipant.SID() {
			t.Errorf("ListParticipants sids %v; clients have alice=%s bob=%s", sids, a.Room.LocalParticipant.SID(), b.Room.LocalParticipant.SID())
		}
		if r := listRoom(t, c, room); r == nil {
			t.Errorf("ListRooms does not show %q, which has participants", room)
		} else if r.NumParticipants != 2 {
			t.Errorf("ListRooms: %q has num_participants %d, want 2", room, r.NumParticipants)
		}

		got, err := c.GetParticipant(rpcCtx(t), &livekit.RoomParticipantIdentity{Room: room, Identity: "alice"})
		if err != nil {
			t.Fatalf("GetParticipant: %v", err)
		}
		if got.Identity != "alice" || got.Sid != a.Room.LocalParticipant.SID() || got.Name != "alice" {
			t.Errorf("GetParticipant = identity %q sid %q name %q; want alice %s alice", got.Identity, got.Sid, got.Name, a.Room.LocalParticipant.SID())
		}
		if _, err := c.GetParticipant(rpcCtx(t), &livekit.RoomParticipantIdentity{Room: room, Identity: "nobody"}); err == nil {
			t.Errorf("GetParticipant(nobody) succeeded, want an error")
		}

		updated, err := c.UpdateParticipant(rpcCtx(t), &livekit.UpdateParticipantRequest{Room: room, Identity: "alice", Metadata: "meta-1"})
		if err != nil {
			t.Fatalf("UpdateParticipant: %v", err)
		}
		if updated.Metadata != "meta-1" {
			t.Errorf("UpdateParticipant returned metadata %q, want meta-1", updated.Metadata)
		}
		waitMetadata(t, b, "alice", "meta-1")
		waitMetadata(t, a, "alice", "meta-1") // alice's own view (ParticipantUpdate with herself)
		if rp := b.Room.GetParticipantByIdentity("alice"); rp == nil || rp.Metadata() != "meta-1" {
			t.Errorf("bob's view of alice lacks metadata meta-1")
		}
	})

	t.Run("MutePublishedTrack", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		pub := publishAudio(t, a)
		st := b.nextSubscribed(t, mediaTimeout)
		if st.SID != pub.SID() {
			t.Fatalf("bob subscribed to %s, want %s", st.SID, pub.SID())
		}

		res, err := c.MutePublishedTrack(rpcCtx(t), &livekit.MuteRoomTrackRequest{Room: room, Identity: "alice", TrackSid: pub.SID(), Muted: true})
		if err != nil {
			t.Fatalf("MutePublishedTrack: %v", err)
		}
		if res.Track == nil || res.Track.Sid != pub.SID() || !res.Track.Muted {
			t.Errorf("MutePublishedTrack returned track %v, want sid %s muted", res.Track, pub.SID())
		}
		waitMute(t, a, "alice", pub.SID()) // the publisher is told (MuteTrackRequest from the server)
		waitMute(t, b, "alice", pub.SID()) // and the subscriber sees it (ParticipantUpdate)
		if !pub.IsMuted() {
			t.Errorf("alice's publication not muted")
		}
		if rp := b.Room.GetParticipantByIdentity("alice"); rp == nil || rp.IsMicrophoneEnabled() {
			t.Errorf("bob still sees alice's microphone enabled")
		}
		info, err := c.GetParticipant(rpcCtx(t), &livekit.RoomParticipantIdentity{Room: room, Identity: "alice"})
		if err != nil {
			t.Fatalf("GetParticipant: %v", err)
		}
		for _, tr := range info.Tracks {
			if tr.Sid == pub.SID() && !tr.Muted {
				t.Errorf("GetParticipant: track %s not muted", tr.Sid)
			}
		}
		// server-sdk-go 2.13.0 re-sends its own mute state when a ParticipantUpdate about
		// itself disagrees with it, so a server that updates alice before telling her to
		// mute gets the track unmuted again. Give such an unmute time to show up.
		select {
		case m := <-b.Mutes:
			t.Errorf("after the mute, bob saw %+v", m)
		case <-time.After(time.Second):
		}
	})

	t.Run("UpdateSubscriptions", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		pub := publishAudio(t, a)
		st := b.nextSubscribed(t, mediaTimeout)
		if st.SID != pub.SID() {
			t.Fatalf("bob subscribed to %s, want %s", st.SID, pub.SID())
		}
		if !waitUntil(mediaTimeout, func() bool { return st.Packets.Load() > 0 }) {
			t.Fatalf("no RTP on the subscribed track within %s", mediaTimeout)
		}

		_, err := c.UpdateSubscriptions(rpcCtx(t), &livekit.UpdateSubscriptionsRequest{
			Room: room, Identity: "bob", TrackSids: []string{pub.SID()}, Subscribe: false,
		})
		if err != nil {
			t.Fatalf("UpdateSubscriptions(unsubscribe): %v", err)
		}
		// server-sdk-go 2.13.0 calls OnTrackUnsubscribed only when a track is unpublished or
		// its publisher leaves. For a server-side unsubscription, what the client sees is the
		// renegotiated subscriber connection: pion stops the track's receiver, and reading
		// the TrackRemote ends. Either counts as "bob was unsubscribed".
		select {
		case sid := <-b.Unsubscribed:
			if sid != pub.SID() {
				t.Errorf("OnTrackUnsubscribed for %s, want %s", sid, pub.SID())
			}
		case <-st.Ended():
			t.Logf("bob's track %s ended after %d packets (%v)", st.SID, st.Packets.Load(), st.readErr.Load())
		case <-time.After(mediaTimeout):
			t.Fatalf("bob still subscribed to %s %s after UpdateSubscriptions(unsubscribe): no OnTrackUnsubscribed, RTP reading goes on (%d packets)",
				pub.SID(), mediaTimeout, st.Packets.Load())
		}
		if pub.IsMuted() {
			t.Errorf("unsubscribing bob muted alice's publication")
		}

		_, err = c.UpdateSubscriptions(rpcCtx(t), &livekit.UpdateSubscriptionsRequest{
			Room: room, Identity: "bob", TrackSids: []string{pub.SID()}, Subscribe: true,
		})
		if err != nil {
			t.Fatalf("UpdateSubscriptions(subscribe): %v", err)
		}
		again := b.nextSubscribed(t, mediaTimeout)
		if again.SID != pub.SID() {
			t.Fatalf("bob re-subscribed to %s, want %s", again.SID, pub.SID())
		}
		if !waitUntil(mediaTimeout, func() bool { return again.Packets.Load() >= 10 }) {
			t.Errorf("after re-subscribing, %d RTP packets within %s, want >= 10", again.Packets.Load(), mediaTimeout)
		}
	})

	t.Run("SendData", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		waitDataReady(t, a, b)
		payload := []byte("from the server")
		topic := "srv"
		if _, err := c.SendData(rpcCtx(t), &livekit.SendDataRequest{
			Room: room, Data: payload, Kind: livekit.DataPacket_RELIABLE, Topic: proto.String(topic),
		}); err != nil {
			t.Fatalf("SendData: %v", err)
		}
		for _, p := range []*peer{a, b} {
			select {
			case m := <-p.Data:
				if !bytes.Equal(m.Payload, payload) || m.Topic != topic {
					t.Errorf("%s got %q topic %q, want %q topic %q", p.Identity, m.Payload, m.Topic, payload, topic)
				}
			case <-time.After(eventTimeout):
				t.Errorf("%s: no data from SendData within %s", p.Identity, eventTimeout)
			}
		}

		only := []byte("only bob")
		if _, err := c.SendData(rpcCtx(t), &livekit.SendDataRequest{
			Room: room, Data: only, Kind: livekit.DataPacket_RELIABLE, Topic: proto.String(topic), DestinationIdentities: []string{"bob"},
		}); err != nil {
			t.Fatalf("SendData(bob): %v", err)
		}
		expectDataPayload(t, b, only)
		if _, err := c.SendData(rpcCtx(t), &livekit.SendDataRequest{
			Room: room, Data: []byte("marker"), Kind: livekit.DataPacket_RELIABLE,
		}); err != nil {
			t.Fatalf("SendData(marker): %v", err)
		}
		// alice's next packet must be the marker: the packet for bob alone came before it.
		expectDataPayload(t, a, []byte("marker"))
	})

	t.Run("UpdateRoomMetadata", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		res, err := c.UpdateRoomMetadata(rpcCtx(t), &livekit.UpdateRoomMetadataRequest{Room: room, Metadata: "room-meta-1"})
		if err != nil {
			t.Fatalf("UpdateRoomMetadata: %v", err)
		}
		if res.Metadata != "room-meta-1" || res.Name != room {
			t.Errorf("UpdateRoomMetadata returned name %q metadata %q", res.Name, res.Metadata)
		}
		for _, p := range []*peer{a, b} {
			select {
			case m := <-p.RoomMetadata:
				if m != "room-meta-1" {
					t.Errorf("%s: OnRoomMetadataChanged(%q), want room-meta-1", p.Identity, m)
				}
			case <-time.After(eventTimeout):
				t.Errorf("%s: no OnRoomMetadataChanged within %s", p.Identity, eventTimeout)
			}
			if got := p.Room.Metadata(); got != "room-meta-1" {
				t.Errorf("%s: Room.Metadata() = %q", p.Identity, got)
			}
		}
		if r := listRoom(t, c, room); r == nil || r.Metadata != "room-meta-1" {
			t.Errorf("ListRooms does not show the new metadata: %v", r)
		}
	})

	t.Run("RemoveParticipant", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		if _, err := c.RemoveParticipant(rpcCtx(t), &livekit.RoomParticipantIdentity{Room: room, Identity: "bob"}); err != nil {
			t.Fatalf("RemoveParticipant: %v", err)
		}
		if reason := b.waitDisconnected(t, eventTimeout); reason != lksdk.ParticipantRemoved {
			t.Errorf("bob disconnected with reason %q, want %q (LeaveRequest reason PARTICIPANT_REMOVED)", reason, lksdk.ParticipantRemoved)
		}
		select {
		case who := <-a.Left:
			if who != "bob" {
				t.Errorf("alice saw %s leave, want bob", who)
			}
		case <-time.After(eventTimeout):
			t.Errorf("alice: no OnParticipantDisconnected(bob) within %s", eventTimeout)
		}
		res, err := c.ListParticipants(rpcCtx(t), &livekit.ListParticipantsRequest{Room: room})
		if err != nil {
			t.Fatalf("ListParticipants: %v", err)
		}
		for _, p := range res.Participants {
			if p.Identity == "bob" {
				t.Errorf("ListParticipants still lists bob after RemoveParticipant (state %s)", p.State)
			}
		}
		select {
		case <-a.Disconnected.C():
			t.Errorf("alice was disconnected too (%s)", a.DisconnectReason())
		default:
		}
	})

	t.Run("DeleteRoom", func(t *testing.T) {
		setup(t)
		room, a, b := joinPair(t)
		if _, err := c.DeleteRoom(rpcCtx(t), &livekit.DeleteRoomRequest{Room: room}); err != nil {
			t.Fatalf("DeleteRoom: %v", err)
		}
		if names := roomNames(t, c, &livekit.ListRoomsRequest{}); slices.Contains(names, room) {
			t.Errorf("ListRooms after DeleteRoom still shows %q", room)
		}
		for _, p := range []*peer{a, b} {
			// ROOM_DELETED maps to lksdk.OtherReason in 2.13.0, ROOM_CLOSED to RoomClosed.
			switch reason := p.waitDisconnected(t, eventTimeout); reason {
			case lksdk.RoomClosed, lksdk.OtherReason:
			default:
				t.Errorf("%s disconnected with reason %q, want a room-deleted/closed reason", p.Identity, reason)
			}
		}
		if names := roomNames(t, c, &livekit.ListRoomsRequest{Names: []string{room}}); len(names) != 0 {
			t.Errorf("ListRooms{Names: [%s]} after everyone left = %v", room, names)
		}
	})
}

// waitMetadata waits until p sees identity's metadata become want.
func waitMetadata(t *testing.T, p *peer, identity, want string) {
	t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case m := <-p.Metadata:
			if m.Identity == identity && m.Metadata == want {
				return
			}
		case <-timeout:
			t.Errorf("%s: no OnMetadataChanged(%s -> %q) within %s", p.Identity, identity, want, eventTimeout)
			return
		}
	}
}

// waitMute waits until p sees identity's track sid muted.
func waitMute(t *testing.T, p *peer, identity, sid string) {
	t.Helper()
	select {
	case m := <-p.Mutes:
		if m.Identity != identity || m.TrackSID != sid || !m.Muted {
			t.Errorf("%s: got %+v, want %s's track %s muted", p.Identity, m, identity, sid)
		}
	case <-time.After(eventTimeout):
		t.Errorf("%s: no OnTrackMuted(%s) within %s", p.Identity, sid, eventTimeout)
	}
}

// expectDataPayload waits for p's next data packet and checks its payload.
func expectDataPayload(t *testing.T, p *peer, payload []byte) {
	t.Helper()
	select {
	case m := <-p.Data:
		if !bytes.Equal(m.Payload, payload) {
			t.Errorf("%s got %q, want %q", p.Identity, m.Payload, payload)
		}
	case <-time.After(eventTimeout):
		t.Errorf("%s: no data packet %q within %s", p.Identity, payload, eventTimeout)
	}
}
