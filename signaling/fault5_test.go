package signaling_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// TestFault5RoomAdminWithoutRoomAdministersNothing: a roomAdmin token
// that names no room is refused by every per-room RoomService method, as
// LiveKit refuses it (EnsureAdminPermission: the grant's room must be the
// request's). Before the fix it administered every room of the node.
// The node-wide methods keep their own grants (roomList, roomCreate).
func TestFault5RoomAdminWithoutRoomAdministersNothing(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	alice := n.join(t, "victim", "alice", client.Options{})
	rs := roomService(n)
	const room = "victim"
	calls := map[string]func(ctx context.Context) error{
		"ListParticipants": func(ctx context.Context) error {
			_, err := rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: room})
			return err
		},
		"GetParticipant": func(ctx context.Context) error {
			_, err := rs.GetParticipant(ctx, &livekit.RoomParticipantIdentity{Room: room, Identity: "alice"})
			return err
		},
		"UpdateParticipant": func(ctx context.Context) error {
			_, err := rs.UpdateParticipant(ctx, &livekit.UpdateParticipantRequest{Room: room, Identity: "alice", Metadata: "owned"})
			return err
		},
		"MutePublishedTrack": func(ctx context.Context) error {
			_, err := rs.MutePublishedTrack(ctx, &livekit.MuteRoomTrackRequest{Room: room, Identity: "alice", TrackSid: "TR_x"})
			return err
		},
		"UpdateSubscriptions": func(ctx context.Context) error {
			_, err := rs.UpdateSubscriptions(ctx, &livekit.UpdateSubscriptionsRequest{Room: room, Identity: "alice"})
			return err
		},
		"SendData": func(ctx context.Context) error {
			_, err := rs.SendData(ctx, &livekit.SendDataRequest{Room: room, Data: []byte("x")})
			return err
		},
		"UpdateRoomMetadata": func(ctx context.Context) error {
			_, err := rs.UpdateRoomMetadata(ctx, &livekit.UpdateRoomMetadataRequest{Room: room, Metadata: "owned"})
			return err
		},
		"RemoveParticipant": func(ctx context.Context) error {
			_, err := rs.RemoveParticipant(ctx, &livekit.RoomParticipantIdentity{Room: room, Identity: "alice"})
			return err
		},
	}
	roomless := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true})
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call(withToken(t, roomless))
			var te twirp.Error
			if !errors.As(err, &te) || te.Code() != twirp.PermissionDenied || !strings.Contains(te.Msg(), "token's own room only") {
				t.Fatalf("roomAdmin without a room: got %v, want permission_denied", err)
			}
		})
	}
	if alice.WaitClosed(ctxTimeout(t, 200*time.Millisecond)) == nil {
		t.Fatal("alice was removed by a token that names no room")
	}
	// What an operator uses instead: a roomAdmin token for the room
	// (what server-sdk-go mints per call), roomList and roomCreate for
	// the node-wide calls.
	own := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true, Room: room})
	if _, err := rs.ListParticipants(withToken(t, own), &livekit.ListParticipantsRequest{Room: room}); err != nil {
		t.Fatalf("roomAdmin of the room: %v", err)
	}
	nodeWide := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomList: true, RoomCreate: true})
	if res, err := rs.ListRooms(withToken(t, nodeWide), &livekit.ListRoomsRequest{}); err != nil || len(res.Rooms) != 1 {
		t.Fatalf("roomList: %v %v", res, err)
	}
	if _, err := rs.CreateRoom(withToken(t, nodeWide), &livekit.CreateRoomRequest{Name: "other"}); err != nil {
		t.Fatalf("roomCreate: %v", err)
	}
	if _, err := rs.DeleteRoom(withToken(t, nodeWide), &livekit.DeleteRoomRequest{Room: "other"}); err != nil {
		t.Fatalf("roomCreate deletes: %v", err)
	}
}
