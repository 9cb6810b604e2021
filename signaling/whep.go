package signaling

import (
	"context"
	"net/http"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// handleWHEP serves POST /whep?participant=IDENTITY: a viewer plays what
// that participant publishes (its microphone and camera first), under the
// same layer selection and congestion control as any subscriber. Each
// viewer is a hidden participant of its own, identity "<token
// identity>#whep-<session>", so many viewers may share one token.
func (s *Server) handleWHEP(w http.ResponseWriter, r *http.Request) {
	grants, offer, ok := s.acceptOffer(w, r, "WHEP", func(g *auth.ClaimGrants) error {
		if !g.Video.GetCanSubscribe() {
			return forbidden(ErrNoCanSubscribe)
		}
		return nil
	})
	if !ok {
		return
	}
	if err := s.sessions.reserve("whep", s.p.Limits.MaxWHEPSessions); err != nil {
		refuseSession(w, err)
		return
	}
	defer s.sessions.unreserve("whep")
	from := r.URL.Query().Get("participant")
	if from == "" {
		httpError(w, http.StatusBadRequest, "name the participant to play: POST /whep?participant=IDENTITY")
		return
	}
	room := s.p.Rooms.Room(livekit.RoomName(grants.Video.Room))
	if room == nil {
		httpError(w, http.StatusNotFound, "room %q does not exist (nobody is in it)", grants.Video.Room)
		return
	}
	sess := s.sessions.newSession("whep", livekit.SignalTarget_SUBSCRIBER)
	params := participantParams(grants, false, 0, sess)
	params.Identity = livekit.ParticipantIdentity(grants.Identity + "#whep-" + sess.id[:8])
	params.Offerless, params.ConnectTimeout = true, s.p.ConnectTimeout
	params.Permission.Hidden, params.Permission.CanPublish, params.Permission.CanPublishData = true, false, false
	s.join(w, r, room, sess, params, func(ctx context.Context, p *sfu.Participant) (string, error) {
		return p.AnswerPlayback(ctx, offer, livekit.ParticipantIdentity(from))
	})
}
