package signaling

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/sfu"
)

// handleRTC authenticates a client, joins it to its room and serves its
// signal WebSocket until it leaves or disconnects.
func (s *Server) handleRTC(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	grants, err := verifyJoin(s.p.Keys, tokenFromRequest(r))
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	q := r.URL.Query()
	if q.Get("reconnect") == "1" {
		s.refuseResume(w, r, grants)
		return
	}
	room, _, err := s.p.Rooms.GetOrCreateRoom(livekit.RoomName(grants.Video.Room), sfu.RoomOptions{})
	if err != nil {
		http.Error(w, "room unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	log := s.p.Logger.With("room", grants.Video.Room, "identity", grants.Identity)
	sess := newSession(log)
	protocol, _ := strconv.Atoi(q.Get("protocol"))
	part, join, err := room.Join(participantParams(grants, q.Get("auto_subscribe") != "0" && q.Get("auto_subscribe") != "false", int32(protocol), sess))
	if err != nil {
		http.Error(w, "join failed: "+err.Error(), joinStatus(err))
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Debug("websocket upgrade failed", "err", err)
		part.Close(livekit.DisconnectReason_SIGNAL_CLOSE, false)
		return
	}
	sess.setConn(conn)
	sess.log = log.With("participant", part.ID())
	sess.sendJoin(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: join}})
	part.Start()
	go sess.writeLoop(s.p.PingInterval)
	left := s.readLoop(sess, part)
	if left {
		part.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
	} else if !part.Closed() {
		part.SignalLost()
	}
	sess.CloseSignal()
}

// participantParams turns token grants into the SFU's participant description.
func participantParams(g *auth.ClaimGrants, autoSubscribe bool, protocol int32, sink sfu.SignalSink) sfu.ParticipantParams {
	perm := g.Video.ToPermission()
	perm.CanUpdateMetadata = g.Video.GetCanUpdateOwnMetadata()
	return sfu.ParticipantParams{
		Identity: livekit.ParticipantIdentity(g.Identity), Name: g.Name, Metadata: g.Metadata,
		Attributes: g.Attributes, Kind: g.GetParticipantKind(), Permission: perm,
		AutoSubscribe: autoSubscribe, ClientProtocol: protocol, Signal: sink,
	}
}

// refuseResume answers a resume attempt with a leave that asks for a full
// rejoin: Fanout never restores half a session.
func (s *Server) refuseResume(w http.ResponseWriter, r *http.Request, g *auth.ClaimGrants) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	msg := &livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{Leave: &livekit.LeaveRequest{
		CanReconnect: true, Reason: livekit.DisconnectReason_STATE_MISMATCH, Action: livekit.LeaveRequest_RECONNECT,
	}}}
	data, err := proto.Marshal(msg)
	if err != nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_ = conn.WriteMessage(websocket.BinaryMessage, data)
	s.p.Logger.Info("resume refused, client asked to rejoin", "identity", g.Identity)
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, "resume not supported: rejoin"),
		time.Now().Add(time.Second))
}

// readLoop reads and dispatches requests; it returns true when the client
// left with a leave request.
func (s *Server) readLoop(sess *session, part *sfu.Participant) bool {
	conn := sess.conn
	extend := func() { _ = conn.SetReadDeadline(time.Now().Add(s.p.PingTimeout)) }
	extend()
	conn.SetPongHandler(func(string) error { extend(); return nil })
	limiter := newSignalLimiter(s.p.Limits)
	for {
		kind, data, err := readMessage(conn, s.p.Limits.MaxSignalMessageSize)
		if err != nil && !errors.Is(err, ErrMalformedSignal) && !errors.Is(err, ErrSignalTooLarge) {
			sess.log.Debug("signal read ended", "err", err)
			return false
		}
		var req *livekit.SignalRequest
		if err == nil {
			extend()
			req, err = decodeRequest(sess, kind, data)
		}
		if err == nil {
			err = s.limitRate(sess, limiter, req)
		}
		if errors.Is(err, errDropped) {
			continue
		}
		if err != nil {
			sess.log.Info("signal connection closed by the server", "err", err)
			sess.abort(err)
			part.Close(livekit.DisconnectReason_SIGNAL_CLOSE, false)
			return false
		}
		if leave := s.dispatch(sess, part, req); leave {
			return true
		}
	}
}

// errDropped marks a message dropped by the rate limit.
var errDropped = errors.New("dropped")

// limitRate applies the signal rate limit to one request: nil to handle
// it, errDropped to skip it (the client told why, now and then), or the
// error to disconnect the client with.
func (s *Server) limitRate(sess *session, limiter *signalLimiter, req *livekit.SignalRequest) error {
	v, warn := limiter.check(req, time.Now())
	switch v {
	case accept:
		return nil
	case disconnect:
		return fmt.Errorf("%w; too many dropped, disconnected", limiter.rateError())
	}
	if warn {
		reject(sess, "request dropped", livekit.RequestResponse_LIMIT_EXCEEDED, limiter.rateError(), nil)
	}
	return errDropped
}

// readMessage reads one message of at most limit bytes. It does not use
// gorilla's read limit, which closes the connection itself with an empty
// reason: the caller closes with one.
func readMessage(conn *websocket.Conn, limit int) (int, []byte, error) {
	kind, r, err := conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return 0, nil, err
	}
	if len(data) > limit {
		return 0, nil, fmt.Errorf("%w: frame larger than limits.max_signal_message_size %d bytes", ErrSignalTooLarge, limit)
	}
	return kind, data, nil
}

// decodeRequest parses a binary (protobuf) or text (JSON) frame.
func decodeRequest(sess *session, kind int, data []byte) (*livekit.SignalRequest, error) {
	req := &livekit.SignalRequest{}
	switch kind {
	case websocket.BinaryMessage:
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedSignal, err)
		}
	case websocket.TextMessage:
		sess.setJSON()
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedSignal, err)
		}
	default:
		return nil, fmt.Errorf("%w: frame type %d", ErrMalformedSignal, kind)
	}
	return req, nil
}

// abort closes the connection with a reason after queued messages.
func (s *session) abort(reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(reason)
}
