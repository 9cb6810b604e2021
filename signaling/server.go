// Package signaling serves LiveKit's client protocol (the /rtc WebSocket),
// token auth and the Twirp RoomService in front of the SFU.
package signaling

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// RoomManager is what signaling needs of the node's rooms.
type RoomManager interface {
	GetOrCreateRoom(name livekit.RoomName, opts sfu.RoomOptions) (*sfu.Room, bool, error)
	Room(name livekit.RoomName) *sfu.Room
	Rooms(names []string) []*sfu.Room
	DeleteRoom(name livekit.RoomName) error
}

// ServerParams configures the signaling server.
type ServerParams struct {
	Rooms RoomManager
	Keys  KeyProvider
	// PingInterval is how often WebSocket pings go out; a client silent
	// for PingTimeout is disconnected.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// ICEServers are announced to WHIP and WHEP clients in Link headers.
	ICEServers []*livekit.ICEServer
	// HLSForIngress gives every WHIP broadcaster an HLS egress, linked
	// from the WHIP response (the egress.hls_for_ingress setting).
	HLSForIngress bool
	// ConnectTimeout: a WHIP or WHEP session whose connection is not up
	// this long after its answer ends (default sfu.DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Limits bound what clients may send; zero fields take DefaultLimits.
	Limits Limits
	Logger *slog.Logger
}

// Server handles the client-facing HTTP endpoints.
type Server struct {
	p        ServerParams
	upgrader websocket.Upgrader
	sessions *httpSessions // WHIP and WHEP
	egress   *egressService
}

// NewServer creates a signaling server.
func NewServer(p ServerParams) *Server {
	if p.PingInterval == 0 {
		p.PingInterval = sfu.PingInterval
	}
	if p.PingTimeout == 0 {
		p.PingTimeout = sfu.PingTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	p.Limits = p.Limits.withDefaults()
	s := &Server{p: p, sessions: newHTTPSessions(), upgrader: websocket.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 4096,
		CheckOrigin: func(*http.Request) bool { return true },
	}}
	s.egress = newEgressService(s)
	return s
}

// Register adds the signaling, RoomService, WHIP, WHEP, Egress and HLS
// routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/rtc", s.handleRTC)
	mux.HandleFunc("/rtc/validate", s.handleValidate)
	mux.HandleFunc("/rtc/v1", s.handleV1)
	mux.HandleFunc("/rtc/v1/validate", s.handleV1)
	mux.Handle(livekit.RoomServicePathPrefix, withCORS(s.roomServiceHandler()))
	mux.HandleFunc("/whip", s.handleWHIP)
	mux.HandleFunc("/whip/", s.handleResource("whip"))
	mux.HandleFunc("/whep", s.handleWHEP)
	mux.HandleFunc("/whep/", s.handleResource("whep"))
	mux.Handle(livekit.EgressPathPrefix, withCORS(s.egress.handler()))
	mux.HandleFunc("/hls/", s.egress.serveHLS)
}

// withCORS lets browser clients on other origins call the API.
func withCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setCORS(w)
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func setCORS(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Twirp-Version, X-Requested-With")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Expose-Headers", "*")
}

// handleV1 answers the v1 signaling paths with a plain 404 so clients fall
// back to /rtc (the body must not claim the room is missing).
func (s *Server) handleV1(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Error(w, "signal protocol v1 is not served here; use /rtc", http.StatusNotFound)
}

// handleValidate tells a client why its join failed (or that it would work).
func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, err := verifyJoin(s.p.Keys, tokenFromRequest(r)); err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	_, _ = w.Write([]byte("success"))
}
