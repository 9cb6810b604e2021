package signaling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// WHIP (RFC 9725) and WHEP sessions: a participant whose client negotiates
// with one HTTP POST of its offer, then PATCHes ICE candidates or an ICE
// restart to the session's resource and DELETEs it to leave.

// Limits of the HTTP negotiation.
const (
	// maxOfferSize bounds an SDP offer (a large simulcast offer is ~10 KB).
	maxOfferSize = 64 << 10
	// maxFragSize bounds a trickle-ice-sdpfrag body.
	maxFragSize = 16 << 10
	// answerTimeout bounds gathering the server's candidates for an answer.
	answerTimeout = 10 * time.Second
)

// Content types of the HTTP negotiation.
const (
	contentSDP     = "application/sdp"
	contentSDPFrag = "application/trickle-ice-sdpfrag"
)

// httpSession is one WHIP or WHEP session. It is the participant's
// SignalSink: signal messages have nowhere to go (the answer carries every
// candidate), and CloseSignal, called whenever the participant leaves,
// ends the session.
type httpSession struct {
	id     string
	kind   string // "whip" or "whep", also the resource path's prefix
	target livekit.SignalTarget
	part   *sfu.Participant
	reg    *httpSessions

	mu   sync.Mutex
	etag string // identifies the ICE session: the server's ufrag, quoted
}

// SendSignal drops the message: an HTTP-negotiated client has no signal
// connection (trickled server candidates are in the answer already).
func (s *httpSession) SendSignal(*livekit.SignalResponse) {}

// CloseSignal ends the session: its resource answers 404 from now on.
func (s *httpSession) CloseSignal() { s.reg.remove(s) }

func (s *httpSession) location() string { return "/" + s.kind + "/" + s.id }

func (s *httpSession) currentETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

func (s *httpSession) setETag(ufrag string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etag = `"` + ufrag + `"`
	return s.etag
}

// httpSessions is the registry of live sessions by resource id.
type httpSessions struct {
	mu       sync.Mutex
	sessions map[string]*httpSession
	// live and pending count sessions by kind, registered and being
	// set up, against limits.max_whip_sessions and max_whep_sessions.
	live    map[string]int
	pending map[string]int
}

func newHTTPSessions() *httpSessions {
	return &httpSessions{sessions: map[string]*httpSession{}, live: map[string]int{}, pending: map[string]int{}}
}

// newSession creates a session (not yet registered: add does that once
// its participant answered).
func (r *httpSessions) newSession(kind string, target livekit.SignalTarget) *httpSession {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return &httpSession{id: hex.EncodeToString(b[:]), kind: kind, target: target, reg: r}
}

func (r *httpSessions) add(s *httpSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.id] == nil {
		r.live[s.kind]++
	}
	r.sessions[s.id] = s
}

func (r *httpSessions) remove(s *httpSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.id] == s {
		delete(r.sessions, s.id)
		r.live[s.kind]--
	}
}

func (r *httpSessions) get(kind, id string) *httpSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sessions[id]; s != nil && s.kind == kind {
		return s
	}
	return nil
}

// setSessionCORS lets browser WHIP and WHEP clients on other origins in.
func setSessionCORS(w http.ResponseWriter, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch")
	h.Set("Access-Control-Max-Age", "86400")
}

// httpError answers with a status and a plain-text reason the client can act on.
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, format+"\n", args...)
}

// hasContentType reports whether the request's body is of media type want.
func hasContentType(r *http.Request, want string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && strings.EqualFold(mt, want)
}

// readBody reads a body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the body: %v", err)
		return nil, false
	}
	if int64(len(body)) > limit {
		httpError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
		return nil, false
	}
	return body, true
}

// statusForAnswer maps an error from answering an offer to an HTTP status.
func statusForAnswer(err error) int {
	switch {
	case errors.Is(err, sfu.ErrBadSDP), errors.Is(err, sfu.ErrCodecNotNegotiated), errors.Is(err, sfu.ErrBadTrackType):
		return http.StatusBadRequest
	case errors.Is(err, sfu.ErrParticipantNotFound), errors.Is(err, sfu.ErrTrackNotFound), errors.Is(err, sfu.ErrRoomNotFound):
		return http.StatusNotFound
	case errors.Is(err, sfu.ErrPublishNotAllowed), errors.Is(err, sfu.ErrSourceNotAllowed), errors.Is(err, sfu.ErrSubscribeNotAllowed),
		errors.Is(err, sfu.ErrRoomFull):
		return http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case isLimitError(err):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// isLimitError reports whether err is a request past one of the SFU's
// per-request limits (its own size: a client error).
func isLimitError(err error) bool {
	for _, e := range []error{sfu.ErrNameTooLong, sfu.ErrMetadataTooLarge, sfu.ErrAttributesTooLarge,
		sfu.ErrTooManyTracks, sfu.ErrTooManyLayers, sfu.ErrTrackNameTooLong, sfu.ErrBadAddTrack} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// joinStatus maps an error from joining a room over /rtc to an HTTP status.
func joinStatus(err error) int {
	switch {
	case errors.Is(err, sfu.ErrRoomFull):
		return http.StatusForbidden
	case isLimitError(err):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// writeAnswer sends the 201 of a session whose participant answered: the
// answer, the resource, its ICE session's ETag and the ICE servers.
func (s *Server) writeAnswer(w http.ResponseWriter, sess *httpSession, answer string) {
	creds, _ := sfu.ICECredentialsOf(answer) // our own answer: it parses
	h := w.Header()
	h.Set("Content-Type", contentSDP)
	h.Set("Location", sess.location())
	h.Set("ETag", sess.setETag(creds.Ufrag))
	h.Set("Accept-Patch", contentSDPFrag)
	h.Set("Cache-Control", "no-store")
	for _, link := range iceServerLinks(s.p.ICEServers) {
		h.Add("Link", link)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// iceServerLinks are the Link headers announcing ICE servers (RFC 9725 4.6).
func iceServerLinks(servers []*livekit.ICEServer) []string {
	var out []string
	for _, srv := range servers {
		for _, u := range srv.Urls {
			link := "<" + u + `>; rel="ice-server"`
			if srv.Username != "" {
				link += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, srv.Username, srv.Credential)
			}
			out = append(out, link)
		}
	}
	return out
}

// handleResource serves a session resource: PATCH (trickle or ICE
// restart), DELETE (leave) and OPTIONS.
func (s *Server) handleResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setSessionCORS(w, "PATCH, DELETE, OPTIONS")
		id := strings.TrimPrefix(r.URL.Path, "/"+kind+"/")
		switch r.Method {
		case http.MethodOptions:
			w.Header().Set("Accept-Patch", contentSDPFrag)
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPatch, http.MethodDelete:
		default:
			w.Header().Set("Allow", "PATCH, DELETE, OPTIONS")
			httpError(w, http.StatusMethodNotAllowed, "%s resources take PATCH (trickle ICE, ICE restart) and DELETE", strings.ToUpper(kind))
			return
		}
		sess := s.sessions.get(kind, id)
		if sess == nil {
			httpError(w, http.StatusNotFound, "no %s session %q: it ended, or never existed", strings.ToUpper(kind), id)
			return
		}
		if r.Method == http.MethodDelete {
			sess.part.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
			s.sessions.remove(sess)
			w.WriteHeader(http.StatusOK)
			return
		}
		s.patch(w, r, sess)
	}
}

// patch applies a trickle-ice-sdpfrag: candidates, or an ICE restart when
// it carries new credentials.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, sess *httpSession) {
	if !hasContentType(r, contentSDPFrag) {
		httpError(w, http.StatusUnsupportedMediaType, "Content-Type must be %s, not %q", contentSDPFrag, r.Header.Get("Content-Type"))
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != sess.currentETag() {
		httpError(w, http.StatusPreconditionFailed, "If-Match %s does not name the current ICE session %s", m, sess.currentETag())
		return
	}
	body, ok := readBody(w, r, maxFragSize)
	if !ok {
		return
	}
	frag, err := parseSDPFrag(string(body))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if frag.ufrag != "" && frag.ufrag != sess.part.RemoteICEUfrag(sess.target) {
		s.restartICE(w, r, sess, frag)
		return
	}
	for _, c := range frag.candidates {
		if err := sess.part.AddICECandidate(sess.target, c.candidate, c.mid); err != nil {
			httpError(w, http.StatusBadRequest, "candidate %q: %v", c.candidate, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// restartICE restarts the session's ICE with the client's new credentials
// and answers with the server's.
func (s *Server) restartICE(w http.ResponseWriter, r *http.Request, sess *httpSession, frag sdpFrag) {
	if frag.pwd == "" {
		httpError(w, http.StatusBadRequest, "an ICE restart needs a=ice-pwd with the new a=ice-ufrag")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	creds, err := sess.part.RestartICE(ctx, sess.target, frag.ufrag, frag.pwd)
	if err != nil {
		httpError(w, statusForAnswer(err), "ICE restart: %v", err)
		return
	}
	for _, c := range frag.candidates {
		_ = sess.part.AddICECandidate(sess.target, c.candidate, c.mid)
	}
	s.p.Logger.Debug("ICE restarted", "session", sess.id, "kind", sess.kind)
	w.Header().Set("Content-Type", contentSDPFrag)
	w.Header().Set("ETag", sess.setETag(creds.Ufrag))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, creds.Fragment())
}
