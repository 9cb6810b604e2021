package signaling

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/sfu"
)

type grantsKey struct{}

// roomServiceHandler serves livekit.RoomService over Twirp; the token in the
// Authorization header and the method's grant are checked before the
// body is read (withGrants).
func (s *Server) roomServiceHandler() http.Handler {
	return s.withGrants(roomServiceGrants, livekit.NewRoomServiceServer(&roomService{s: s}))
}

// roomService implements livekit.RoomService on the node's rooms.
type roomService struct{ s *Server }

var _ livekit.RoomService = (*roomService)(nil)

// grantsFrom returns the caller's grants or the Twirp error for a bad token.
func grantsFrom(ctx context.Context) (*auth.ClaimGrants, error) {
	switch v := ctx.Value(grantsKey{}).(type) {
	case *auth.ClaimGrants:
		return v, nil
	case error:
		return nil, twirp.NewError(twirp.Unauthenticated, v.Error())
	}
	return nil, twirp.NewError(twirp.Unauthenticated, ErrNoToken.Error())
}

// requireGrant checks a room-independent grant (roomCreate, roomList).
func requireGrant(ctx context.Context, name string, ok func(*auth.VideoGrant) bool) error {
	g, err := grantsFrom(ctx)
	if err != nil {
		return err
	}
	if g.Video == nil || !ok(g.Video) {
		return twirp.NewError(twirp.PermissionDenied, fmt.Sprintf("%s: token lacks the %s grant", ErrNotAllowed, name))
	}
	return nil
}

// requireAdmin checks roomAdmin for the named room and returns the room.
// As in LiveKit, roomAdmin applies to the token's own room only: a token
// that names no room administers none.
func (rs *roomService) requireAdmin(ctx context.Context, room string) (*sfu.Room, error) {
	g, err := grantsFrom(ctx)
	if err != nil {
		return nil, err
	}
	if g.Video == nil || !g.Video.RoomAdmin {
		return nil, twirp.NewError(twirp.PermissionDenied, ErrNotAllowed.Error()+": token lacks the roomAdmin grant")
	}
	if room == "" {
		return nil, twirp.RequiredArgumentError("room")
	}
	if g.Video.Room == "" {
		return nil, twirp.NewError(twirp.PermissionDenied,
			fmt.Sprintf("%s: the roomAdmin grant names no room; it applies to the token's own room only (set room %q in the token)", ErrWrongRoom, room))
	}
	if g.Video.Room != room {
		return nil, twirp.NewError(twirp.PermissionDenied,
			fmt.Sprintf("%s: token is for room %q, not %q", ErrWrongRoom, g.Video.Room, room))
	}
	r := rs.s.p.Rooms.Room(livekit.RoomName(room))
	if r == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("room %q not found", room))
	}
	return r, nil
}

// participant finds a participant by identity in a room the caller administers.
func (rs *roomService) participant(ctx context.Context, room, identity string) (*sfu.Participant, error) {
	r, err := rs.requireAdmin(ctx, room)
	if err != nil {
		return nil, err
	}
	p := r.Participant(livekit.ParticipantIdentity(identity))
	if p == nil {
		return nil, twirp.NotFoundError(fmt.Sprintf("participant %q not found in room %q", identity, room))
	}
	return p, nil
}

// CreateRoom creates a room (or returns the existing one).
func (rs *roomService) CreateRoom(ctx context.Context, req *livekit.CreateRoomRequest) (*livekit.Room, error) {
	if err := requireGrant(ctx, "roomCreate", func(v *auth.VideoGrant) bool { return v.RoomCreate }); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, twirp.RequiredArgumentError("name")
	}
	r, _, err := rs.s.p.Rooms.GetOrCreateRoom(livekit.RoomName(req.Name), sfu.RoomOptions{
		EmptyTimeout:     time.Duration(req.EmptyTimeout) * time.Second,
		DepartureTimeout: time.Duration(req.DepartureTimeout) * time.Second,
		MaxParticipants:  int(req.MaxParticipants),
		Metadata:         req.Metadata,
	})
	if err != nil {
		return nil, limitTwirpError(err)
	}
	return r.Info(), nil
}

// ListRooms lists active rooms, all or those named.
func (rs *roomService) ListRooms(ctx context.Context, req *livekit.ListRoomsRequest) (*livekit.ListRoomsResponse, error) {
	if err := requireGrant(ctx, "roomList", func(v *auth.VideoGrant) bool { return v.RoomList }); err != nil {
		return nil, err
	}
	out := &livekit.ListRoomsResponse{}
	for _, r := range rs.s.p.Rooms.Rooms(req.Names) {
		out.Rooms = append(out.Rooms, r.Info())
	}
	return out, nil
}

// DeleteRoom disconnects everyone and closes the room.
func (rs *roomService) DeleteRoom(ctx context.Context, req *livekit.DeleteRoomRequest) (*livekit.DeleteRoomResponse, error) {
	if err := requireGrant(ctx, "roomCreate", func(v *auth.VideoGrant) bool { return v.RoomCreate }); err != nil {
		return nil, err
	}
	if err := rs.s.p.Rooms.DeleteRoom(livekit.RoomName(req.Room)); err != nil {
		if errors.Is(err, sfu.ErrRoomNotFound) {
			return nil, twirp.NotFoundError(err.Error())
		}
		return nil, twirp.InternalErrorWith(err)
	}
	return &livekit.DeleteRoomResponse{}, nil
}

// ListParticipants lists a room's participants.
func (rs *roomService) ListParticipants(ctx context.Context, req *livekit.ListParticipantsRequest) (*livekit.ListParticipantsResponse, error) {
	r, err := rs.requireAdmin(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	out := &livekit.ListParticipantsResponse{}
	for _, p := range r.Participants() {
		out.Participants = append(out.Participants, p.Info())
	}
	return out, nil
}

// GetParticipant returns one participant.
func (rs *roomService) GetParticipant(ctx context.Context, req *livekit.RoomParticipantIdentity) (*livekit.ParticipantInfo, error) {
	p, err := rs.participant(ctx, req.Room, req.Identity)
	if err != nil {
		return nil, err
	}
	return p.Info(), nil
}

// RemoveParticipant disconnects a participant.
func (rs *roomService) RemoveParticipant(ctx context.Context, req *livekit.RoomParticipantIdentity) (*livekit.RemoveParticipantResponse, error) {
	p, err := rs.participant(ctx, req.Room, req.Identity)
	if err != nil {
		return nil, err
	}
	p.Close(livekit.DisconnectReason_PARTICIPANT_REMOVED, true)
	return &livekit.RemoveParticipantResponse{}, nil
}

// MutePublishedTrack mutes or unmutes a participant's track.
func (rs *roomService) MutePublishedTrack(ctx context.Context, req *livekit.MuteRoomTrackRequest) (*livekit.MuteRoomTrackResponse, error) {
	p, err := rs.participant(ctx, req.Room, req.Identity)
	if err != nil {
		return nil, err
	}
	info, err := p.SetTrackMuted(livekit.TrackID(req.TrackSid), req.Muted, true)
	if err != nil {
		return nil, twirp.NotFoundError(err.Error())
	}
	return &livekit.MuteRoomTrackResponse{Track: info}, nil
}

// UpdateParticipant changes a participant's metadata, name, attributes or permission.
func (rs *roomService) UpdateParticipant(ctx context.Context, req *livekit.UpdateParticipantRequest) (*livekit.ParticipantInfo, error) {
	p, err := rs.participant(ctx, req.Room, req.Identity)
	if err != nil {
		return nil, err
	}
	var name, md *string
	if req.Name != "" {
		name = &req.Name
	}
	if req.Metadata != "" {
		md = &req.Metadata
	}
	if name != nil || md != nil || len(req.Attributes) > 0 {
		if err := p.UpdateMetadata(name, md, req.Attributes, false); err != nil {
			return nil, limitTwirpError(err)
		}
	}
	if req.Permission != nil {
		p.SetPermission(proto.Clone(req.Permission).(*livekit.ParticipantPermission))
	}
	return p.Info(), nil
}

// UpdateSubscriptions subscribes or unsubscribes a participant to tracks.
func (rs *roomService) UpdateSubscriptions(ctx context.Context, req *livekit.UpdateSubscriptionsRequest) (*livekit.UpdateSubscriptionsResponse, error) {
	p, err := rs.participant(ctx, req.Room, req.Identity)
	if err != nil {
		return nil, err
	}
	ids := make([]livekit.TrackID, 0, len(req.TrackSids))
	for _, t := range req.TrackSids {
		ids = append(ids, livekit.TrackID(t))
	}
	for _, pt := range req.ParticipantTracks {
		for _, t := range pt.TrackSids {
			ids = append(ids, livekit.TrackID(t))
		}
	}
	if err := p.UpdateSubscriptions(ids, req.Subscribe); err != nil {
		if errors.Is(err, sfu.ErrTrackNotFound) {
			return nil, twirp.NotFoundError(err.Error())
		}
		return nil, twirp.NewError(twirp.PermissionDenied, err.Error())
	}
	return &livekit.UpdateSubscriptionsResponse{}, nil
}

// SendData sends a data packet from the server to the room or to some identities.
func (rs *roomService) SendData(ctx context.Context, req *livekit.SendDataRequest) (*livekit.SendDataResponse, error) {
	r, err := rs.requireAdmin(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	if maxSize := r.Limits().MaxDataPacketSize; len(req.Data) > maxSize {
		return nil, twirp.InvalidArgumentError("data", fmt.Sprintf("is too large: %d > limits.max_data_packet_size %d",
			len(req.Data), maxSize))
	}
	kind := req.Kind
	dests := append([]string{}, req.DestinationIdentities...)
	pkt := &livekit.DataPacket{
		Kind: kind, DestinationIdentities: dests,
		Value: &livekit.DataPacket_User{User: &livekit.UserPacket{
			Payload: req.Data, Topic: req.Topic, DestinationIdentities: dests, Nonce: req.Nonce,
		}},
	}
	r.SendData(pkt, dests)
	return &livekit.SendDataResponse{}, nil
}

// UpdateRoomMetadata changes the room's metadata.
func (rs *roomService) UpdateRoomMetadata(ctx context.Context, req *livekit.UpdateRoomMetadataRequest) (*livekit.Room, error) {
	r, err := rs.requireAdmin(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	info, err := r.UpdateMetadata(req.Metadata)
	if err != nil {
		return nil, limitTwirpError(err)
	}
	return info, nil
}

// limitTwirpError maps an error of the SFU to a Twirp error: a request
// past a limit is InvalidArgument (its own size) or ResourceExhausted
// (the node's capacity), anything else internal.
func limitTwirpError(err error) error {
	switch {
	case errors.Is(err, sfu.ErrNameTooLong), errors.Is(err, sfu.ErrMetadataTooLarge), errors.Is(err, sfu.ErrAttributesTooLarge):
		return twirp.NewError(twirp.InvalidArgument, err.Error())
	case errors.Is(err, sfu.ErrTooManyRooms):
		return twirp.NewError(twirp.ResourceExhausted, err.Error())
	}
	return twirp.InternalErrorWith(err)
}

// ForwardParticipant needs several nodes; not served by a single node.
func (rs *roomService) ForwardParticipant(context.Context, *livekit.ForwardParticipantRequest) (*livekit.ForwardParticipantResponse, error) {
	return nil, twirp.NewError(twirp.Unimplemented, "ForwardParticipant is not supported by Fanout")
}

// MoveParticipant is not supported.
func (rs *roomService) MoveParticipant(context.Context, *livekit.MoveParticipantRequest) (*livekit.MoveParticipantResponse, error) {
	return nil, twirp.NewError(twirp.Unimplemented, "MoveParticipant is not supported by Fanout")
}

// PerformRpc is not supported.
func (rs *roomService) PerformRpc(context.Context, *livekit.PerformRpcRequest) (*livekit.PerformRpcResponse, error) {
	return nil, twirp.NewError(twirp.Unimplemented, "PerformRpc is not supported by Fanout")
}
