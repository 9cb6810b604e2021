package signaling

import "errors"

// Errors of the signaling layer; each becomes the reason of an HTTP
// rejection, a RequestResponse or a WebSocket close.
var (
	ErrNoToken         = errors.New("no access token: pass access_token or an Authorization: Bearer header")
	ErrMalformedToken  = errors.New("malformed access token")
	ErrUnknownAPIKey   = errors.New("unknown API key")
	ErrInvalidToken    = errors.New("invalid token")
	ErrTokenExpired    = errors.New("token expired")
	ErrNoIdentity      = errors.New("token has no identity")
	ErrNoRoomJoin      = errors.New("token lacks the roomJoin grant")
	ErrNoRoom          = errors.New("token names no room")
	ErrNoCanPublish    = errors.New("token lacks the canPublish grant")
	ErrNoCanSubscribe  = errors.New("token lacks the canSubscribe grant")
	ErrWrongRoom       = errors.New("token is for another room")
	ErrNotAllowed      = errors.New("permission denied")
	ErrMalformedSignal = errors.New("malformed signal message")
	ErrUnknownSignal   = errors.New("unsupported signal message")
	ErrSlowClient      = errors.New("client too slow to read signal messages")
)

// Errors of a request past one of the node's limits (Limits).
var (
	ErrSignalRateLimited = errors.New("signal messages sent too fast")
	ErrSignalTooLarge    = errors.New("signal message too large")
	ErrBodyTooLarge      = errors.New("request body too large")
	ErrBodyTimeout       = errors.New("request body not received in time")
	ErrTooManySessions   = errors.New("session limit reached")
	ErrTooManyEgresses   = errors.New("egress limit reached")
)
