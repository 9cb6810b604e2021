package signaling

import (
	"context"
	"net/http"
	"strings"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// handleWHIP serves POST /whip: a broadcaster (OBS, GStreamer, FFmpeg, a
// browser) publishes into the room of its token, as the participant its
// identity names, of kind INGRESS. A second session of the same identity
// replaces the first, as a second join does.
func (s *Server) handleWHIP(w http.ResponseWriter, r *http.Request) {
	grants, offer, ok := s.acceptOffer(w, r, "WHIP", func(g *auth.ClaimGrants) error {
		if !g.Video.GetCanPublish() {
			return forbidden(ErrNoCanPublish)
		}
		return nil
	})
	if !ok {
		return
	}
	if err := s.sessions.reserve("whip", s.p.Limits.MaxWHIPSessions); err != nil {
		refuseSession(w, err)
		return
	}
	defer s.sessions.unreserve("whip")
	room, _, err := s.p.Rooms.GetOrCreateRoom(livekit.RoomName(grants.Video.Room), sfu.RoomOptions{})
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "room unavailable: %v", err)
		return
	}
	sess := s.sessions.newSession("whip", livekit.SignalTarget_PUBLISHER)
	params := participantParams(grants, false, 0, sess)
	params.Kind, params.Offerless, params.ConnectTimeout = livekit.ParticipantInfo_INGRESS, true, s.p.ConnectTimeout
	s.join(w, r, room, sess, params, func(ctx context.Context, p *sfu.Participant) (string, error) {
		answer, err := p.AnswerPublish(ctx, offer)
		if err == nil && s.p.HLSForIngress {
			id := s.egress.startForIngress(p)
			w.Header().Add("Link", `</hls/`+id+`/index.m3u8>; rel="alternate"; type="application/vnd.apple.mpegurl"`)
		}
		return answer, err
	})
}

// join adds the session's participant to the room and answers its offer.
func (s *Server) join(w http.ResponseWriter, r *http.Request, room *sfu.Room, sess *httpSession,
	params sfu.ParticipantParams, answer func(context.Context, *sfu.Participant) (string, error)) {
	part, _, err := room.Join(params)
	if err != nil {
		httpError(w, statusForAnswer(err), "join failed: %v", err)
		return
	}
	// Registered before the answer, so that whatever ends the participant
	// from now on (a failed answer, a replacing session) also ends the
	// session through CloseSignal; one closed already is not kept.
	sess.part = part
	s.sessions.add(sess)
	if part.Closed() {
		s.sessions.remove(sess)
	}
	part.Start()
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	sdp, err := answer(ctx, part)
	if err != nil {
		part.Close(livekit.DisconnectReason_JOIN_FAILURE, false)
		s.p.Logger.Info("offer refused", "kind", sess.kind, "room", room.Name(), "identity", params.Identity, "err", err)
		httpError(w, statusForAnswer(err), "%v", err)
		return
	}
	s.p.Logger.Info("session started", "kind", sess.kind, "room", room.Name(), "identity", params.Identity,
		"participant", part.ID(), "resource", sess.location())
	s.writeAnswer(w, sess, sdp)
}

// acceptOffer checks what every WHIP and WHEP POST needs: the method, a
// token with roomJoin and a room (and what grant checks), an SDP body.
func (s *Server) acceptOffer(w http.ResponseWriter, r *http.Request, kind string,
	grant func(*auth.ClaimGrants) error) (*auth.ClaimGrants, string, bool) {
	setSessionCORS(w, "POST, OPTIONS")
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Accept-Post", contentSDP)
		w.WriteHeader(http.StatusNoContent)
		return nil, "", false
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		httpError(w, http.StatusMethodNotAllowed, "%s takes POST with an SDP offer", kind)
		return nil, "", false
	}
	grants, err := verifyJoin(s.p.Keys, tokenFromRequest(r))
	if err == nil {
		err = grant(grants)
	}
	if err != nil {
		httpError(w, statusOf(err), "%v", err)
		return nil, "", false
	}
	if !hasContentType(r, contentSDP) {
		httpError(w, http.StatusUnsupportedMediaType, "Content-Type must be %s, not %q", contentSDP, r.Header.Get("Content-Type"))
		return nil, "", false
	}
	body, ok := readBody(w, r, maxOfferSize)
	if !ok {
		return nil, "", false
	}
	offer := string(body)
	if strings.TrimSpace(offer) == "" {
		httpError(w, http.StatusBadRequest, "the body is empty: POST the SDP offer")
		return nil, "", false
	}
	return grants, offer, true
}
