package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/twitchtv/twirp"
)

// HTTPTimeouts are the HTTP server's deadlines. A signal WebSocket is not
// bound by them: the upgrade clears the connection's deadlines, and the
// signal connection keeps its own (pings, PingTimeout). A blocking HLS
// playlist reload extends its write deadline (hlsWriteTimeout).
type HTTPTimeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included: a body trickled
	// in slowly (slowloris) is cut off.
	Read time.Duration
	// Write bounds writing a response, from the end of its headers' read.
	Write time.Duration
	// Idle bounds a keep-alive connection's wait for its next request.
	Idle time.Duration
}

// DefaultHTTPTimeouts suit every endpoint: the slowest answers (a WHIP or
// WHEP answer waits up to answerTimeout for candidates, a WHEP offer up to
// 2 s for tracks) come well within Write.
func DefaultHTTPTimeouts() HTTPTimeouts {
	return HTTPTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 2 * time.Minute}
}

// NewHTTPServer returns the HTTP server to serve h (the mux Register
// filled) with the given timeouts (zero fields: DefaultHTTPTimeouts).
func NewHTTPServer(h http.Handler, t HTTPTimeouts) *http.Server {
	d := DefaultHTTPTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.ReadHeader, &d.ReadHeader}, {&t.Read, &d.Read}, {&t.Write, &d.Write}, {&t.Idle, &d.Idle},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}

// grantCheck is the grant a Twirp method needs, checked before its body
// is read (the room a roomAdmin grant names is checked by the method).
type grantCheck struct {
	name string
	ok   func(*auth.VideoGrant) bool
}

var (
	needRoomCreate = grantCheck{"roomCreate", func(g *auth.VideoGrant) bool { return g.RoomCreate }}
	needRoomList   = grantCheck{"roomList", func(g *auth.VideoGrant) bool { return g.RoomList }}
	needRoomAdmin  = grantCheck{"roomAdmin", func(g *auth.VideoGrant) bool { return g.RoomAdmin }}
	needRoomRecord = grantCheck{"roomRecord", func(g *auth.VideoGrant) bool { return g.RoomRecord }}
)

// roomServiceGrants: CreateRoom, DeleteRoom and ListRooms are node-wide
// (roomCreate, roomList); every other method administers one room.
func roomServiceGrants(method string) grantCheck {
	switch method {
	case "CreateRoom", "DeleteRoom":
		return needRoomCreate
	case "ListRooms":
		return needRoomList
	}
	return needRoomAdmin
}

// egressGrants: every Egress method needs roomRecord.
func egressGrants(string) grantCheck { return needRoomRecord }

// withGrants guards a Twirp service: the token is verified (401) and the
// method's grant checked (403) before a byte of the body is read; the
// body is then read whole, up to limits.max_api_body_size (413), and the
// grants put in the context for the methods (grantsFrom).
func (s *Server) withGrants(grants func(method string) grantCheck, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := verifyToken(s.p.Keys, tokenFromRequest(r))
		if err != nil {
			writeTwirpError(w, http.StatusUnauthorized, twirp.Unauthenticated, err.Error())
			return
		}
		need := grants(path.Base(r.URL.Path))
		if g.Video == nil || !need.ok(g.Video) {
			writeTwirpError(w, http.StatusForbidden, twirp.PermissionDenied,
				fmt.Sprintf("%s: token lacks the %s grant", ErrNotAllowed, need.name))
			return
		}
		body, status, err := readAPIBody(w, r, int64(s.p.Limits.MaxAPIBodySize))
		if err != nil {
			writeTwirpError(w, status, twirp.Malformed, err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grantsKey{}, g)))
	})
}

// readAPIBody reads a request body of at most limit bytes: a larger one
// is refused from its Content-Length, unread, or once limit bytes came.
func readAPIBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	tooLarge := fmt.Errorf("%w: limits.max_api_body_size is %d bytes", ErrBodyTooLarge, limit)
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, ErrBodyTimeout
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	}
	return body, 0, nil
}

// writeTwirpError answers with a Twirp error body (which Twirp clients
// decode whatever the status) and the given HTTP status. The connection
// is closed after it: an unread body is not drained.
func writeTwirpError(w http.ResponseWriter, status int, code twirp.ErrorCode, msg string) {
	body, _ := json.Marshal(map[string]string{"code": string(code), "msg": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
