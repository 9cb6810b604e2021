package sfu

import "errors"

// Errors returned to signaling and the room API; each names a client mistake
// precisely enough to be sent back as the reason of a rejection.
var (
	ErrRoomClosed          = errors.New("room is closed")
	ErrRoomFull            = errors.New("room is full")
	ErrRoomNotFound        = errors.New("room not found")
	ErrParticipantNotFound = errors.New("participant not found")
	ErrTrackNotFound       = errors.New("track not found")
	ErrTrackEnded          = errors.New("track has ended")
	ErrLayerTaken          = errors.New("simulcast layer already received")
	ErrPublishNotAllowed   = errors.New("participant may not publish")
	ErrSourceNotAllowed    = errors.New("participant may not publish this source")
	ErrSubscribeNotAllowed = errors.New("participant may not subscribe")
	ErrMetadataNotAllowed  = errors.New("participant may not update its metadata")
	ErrDuplicateTrack      = errors.New("a track with this cid is already pending")
	ErrTooManyPending      = errors.New("too many tracks pending publication")
	ErrBadTrackType        = errors.New("track type must be AUDIO or VIDEO")
	ErrUnknownTarget       = errors.New("unknown signal target")
	ErrBadCandidate        = errors.New("malformed ICE candidate")
	ErrBadSDP              = errors.New("malformed session description")
	ErrNoRemoteDescription = errors.New("no remote description yet")
)

// Errors of a request past one of the node's limits (Limits).
var (
	ErrTooManyRooms       = errors.New("too many rooms on this node")
	ErrTooManyTracks      = errors.New("too many tracks published by this participant")
	ErrTooManyLayers      = errors.New("too many simulcast layers")
	ErrTrackNameTooLong   = errors.New("track name too long")
	ErrBadAddTrack        = errors.New("malformed addTrack request")
	ErrNameTooLong        = errors.New("name too long")
	ErrMetadataTooLarge   = errors.New("metadata too large")
	ErrAttributesTooLarge = errors.New("attributes too large")
	ErrDataTooLarge       = errors.New("data packet too large")
	ErrDataRateLimited    = errors.New("data packets sent too fast")
)

// ErrUnreachableAddress is a UDP destination the node's socket cannot send
// to (an IPv6 address from an IPv4 socket, or no UDP address at all).
var ErrUnreachableAddress = errors.New("address not reachable from the node's UDP socket")
