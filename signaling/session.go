package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Limits of one signal connection.
const (
	// MaxMessageSize is the default of Limits.MaxSignalMessageSize: the
	// largest signal frame accepted (larger closes the connection).
	MaxMessageSize = 1 << 20
	// sendQueueSize is how many responses may wait for a slow client.
	sendQueueSize = 1024
	writeTimeout  = 10 * time.Second
	// closeDrainTimeout bounds, all together, the writes of the messages
	// still queued when a session closes (the leave, say): a client that
	// stopped reading must not keep its connection and goroutine for
	// writeTimeout per queued message.
	closeDrainTimeout = time.Second
)

// session is one client's signal WebSocket. It implements sfu.SignalSink:
// SendSignal never blocks; a client that falls sendQueueSize messages
// behind is disconnected instead of stalling the room.
type session struct {
	conn *websocket.Conn
	log  *slog.Logger

	mu       sync.Mutex
	joined   bool
	early    []*livekit.SignalResponse
	useJSON  bool
	queue    chan *livekit.SignalResponse
	closing  bool
	closeBy  time.Time // when closing: the deadline of every write left
	closeErr error
	done     chan struct{}
	doneOnce sync.Once
}

func newSession(log *slog.Logger) *session {
	return &session{
		log:   log,
		queue: make(chan *livekit.SignalResponse, sendQueueSize),
		done:  make(chan struct{}),
	}
}

// setConn gives the session its upgraded connection (under s.mu: the
// participant may close the session from another goroutine meanwhile).
func (s *session) setConn(conn *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = conn
	if s.closing {
		_ = conn.NetConn().SetWriteDeadline(s.closeBy)
	}
}

// SendSignal queues a response. Before the join response went out,
// messages are held so that join is always the first message.
func (s *session) SendSignal(msg *livekit.SignalResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if !s.joined {
		s.early = append(s.early, msg)
		return
	}
	s.enqueueLocked(msg)
}

func (s *session) enqueueLocked(msg *livekit.SignalResponse) {
	if s.closing {
		return
	}
	select {
	case s.queue <- msg:
	default:
		s.log.Warn("signal queue full, disconnecting slow client")
		s.closeLocked(ErrSlowClient)
	}
}

// sendJoin queues the join response, then everything held before it.
func (s *session) sendJoin(join *livekit.SignalResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = true
	if s.closing {
		// Closed before the join went out (a later join replaced this
		// participant): the client still gets the join and the leave
		// telling it why, then the connection closes.
		for _, m := range append([]*livekit.SignalResponse{join}, s.early...) {
			select {
			case s.queue <- m:
			default:
			}
		}
		s.early = nil
		close(s.queue)
		return
	}
	s.enqueueLocked(join)
	for _, m := range s.early {
		s.enqueueLocked(m)
	}
	s.early = nil
}

// CloseSignal ends the connection once queued messages are written.
func (s *session) CloseSignal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(nil)
}

func (s *session) closeLocked(reason error) {
	if s.closing {
		return
	}
	s.closing = true
	s.closeBy = time.Now().Add(closeDrainTimeout)
	s.closeErr = reason
	if s.conn != nil {
		// A write under way (to a client that stopped reading) ends by
		// then too: net.Conn deadlines apply to writes in progress.
		_ = s.conn.NetConn().SetWriteDeadline(s.closeBy)
	}
	if !s.joined {
		return // sendJoin closes the queue after the join and the held messages
	}
	close(s.queue)
}

// setJSON switches responses to JSON text frames (the client spoke JSON).
func (s *session) setJSON() {
	s.mu.Lock()
	s.useJSON = true
	s.mu.Unlock()
}

// writeLoop writes queued responses and WebSocket pings until the queue is
// closed or a write fails; it then closes the connection.
func (s *session) writeLoop(pingInterval time.Duration) {
	ticker := time.NewTicker(pingInterval)
	defer ticker.Stop()
	defer s.finish()
	for {
		select {
		case msg, ok := <-s.queue:
			if !ok {
				return
			}
			if err := s.write(msg); err != nil {
				s.log.Debug("signal write failed", "err", err)
				return
			}
		case <-ticker.C:
			deadline := time.Now().Add(writeTimeout)
			if err := s.conn.WriteControl(websocket.PingMessage, nil, deadline); err != nil {
				return
			}
		case <-s.done:
			return
		}
	}
}

func (s *session) write(msg *livekit.SignalResponse) error {
	s.mu.Lock()
	useJSON := s.useJSON
	deadline := time.Now().Add(writeTimeout)
	if s.closing && s.closeBy.Before(deadline) {
		deadline = s.closeBy
	}
	s.mu.Unlock()
	var (
		data []byte
		err  error
		kind = websocket.BinaryMessage
	)
	if useJSON {
		data, err = protojson.Marshal(msg)
		kind = websocket.TextMessage
	} else {
		data, err = proto.Marshal(msg)
	}
	if err != nil {
		return fmt.Errorf("marshal signal response: %w", err)
	}
	_ = s.conn.SetWriteDeadline(deadline)
	return s.conn.WriteMessage(kind, data)
}

// finish sends a close frame with the reason, if any, and closes the socket.
func (s *session) finish() {
	s.mu.Lock()
	reason := s.closeErr
	if !s.closing {
		s.closing = true
		s.closeBy = time.Now().Add(closeDrainTimeout)
		close(s.queue)
	}
	s.mu.Unlock()
	s.closeWith(reason)
}

// closeWith sends a close frame (policy violation with the reason when
// there is one) and closes the socket; safe to call more than once.
func (s *session) closeWith(reason error) {
	s.doneOnce.Do(func() {
		code, text := websocket.CloseNormalClosure, ""
		if reason != nil {
			code, text = closeCodeFor(reason), reason.Error()
		}
		if len(text) > 120 {
			text = text[:120]
		}
		deadline := time.Now().Add(closeDrainTimeout)
		s.mu.Lock()
		if s.closing && s.closeBy.Before(deadline) {
			deadline = s.closeBy // the drain's time is all a stalled client gets
		}
		s.mu.Unlock()
		_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), deadline)
		close(s.done)
		_ = s.conn.Close()
	})
}

func closeCodeFor(err error) int {
	switch {
	case errors.Is(err, ErrMalformedSignal):
		return websocket.CloseUnsupportedData
	case errors.Is(err, ErrSignalTooLarge):
		return websocket.CloseMessageTooBig
	case errors.Is(err, ErrSlowClient):
		return websocket.ClosePolicyViolation
	}
	return websocket.ClosePolicyViolation
}
