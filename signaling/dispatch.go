package signaling

import (
	"errors"
	"fmt"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// dispatch handles one request; it returns true when the client leaves.
func (s *Server) dispatch(sess *session, p *sfu.Participant, req *livekit.SignalRequest) bool {
	switch m := req.Message.(type) {
	case *livekit.SignalRequest_Offer:
		if err := p.HandleOffer(m.Offer.GetSdp(), m.Offer.GetId()); err != nil {
			reject(sess, "offer", livekit.RequestResponse_INVALID_REQUEST, err, nil)
		}
	case *livekit.SignalRequest_Answer:
		if err := p.HandleAnswer(m.Answer.GetSdp(), m.Answer.GetId()); err != nil {
			reject(sess, "answer", livekit.RequestResponse_INVALID_REQUEST, err, nil)
		}
	case *livekit.SignalRequest_Trickle:
		if err := p.HandleTrickle(m.Trickle.GetTarget(), m.Trickle.GetCandidateInit()); err != nil {
			reject(sess, "trickle", livekit.RequestResponse_INVALID_REQUEST, err,
				&livekit.RequestResponse_Trickle{Trickle: m.Trickle})
		}
	case *livekit.SignalRequest_AddTrack:
		s.handleAddTrack(sess, p, m.AddTrack)
	case *livekit.SignalRequest_Mute:
		if _, err := p.SetTrackMuted(livekit.TrackID(m.Mute.GetSid()), m.Mute.GetMuted(), false); err != nil {
			reject(sess, "mute", livekit.RequestResponse_NOT_FOUND, err, &livekit.RequestResponse_Mute{Mute: m.Mute})
		}
	case *livekit.SignalRequest_Subscription:
		s.handleSubscription(sess, p, m.Subscription)
	case *livekit.SignalRequest_TrackSetting:
		p.UpdateTrackSettings(m.TrackSetting)
	case *livekit.SignalRequest_Leave:
		return true
	case *livekit.SignalRequest_UpdateMetadata:
		s.handleUpdateMetadata(sess, p, m.UpdateMetadata)
	case *livekit.SignalRequest_SubscriptionPermission:
		p.SetSubscriptionPermission(m.SubscriptionPermission)
	case *livekit.SignalRequest_Ping:
		sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: m.Ping}})
	case *livekit.SignalRequest_PingReq:
		sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_PongResp{PongResp: &livekit.Pong{
			LastPingTimestamp: m.PingReq.GetTimestamp(), Timestamp: time.Now().UnixMilli(),
		}}})
	case *livekit.SignalRequest_UpdateLayers, *livekit.SignalRequest_SyncState, *livekit.SignalRequest_Simulate,
		*livekit.SignalRequest_UpdateAudioTrack, *livekit.SignalRequest_UpdateVideoTrack:
		// Hints about features not served yet (layer and audio feature
		// updates, migration state): accepted and ignored, as clients send them routinely.
		sess.log.Debug("ignored signal message", "type", fmt.Sprintf("%T", m))
	case nil:
		reject(sess, "request", livekit.RequestResponse_UNSUPPORTED_TYPE,
			fmt.Errorf("%w: empty or unknown message type", ErrUnknownSignal), nil)
	default:
		reject(sess, "request", livekit.RequestResponse_UNSUPPORTED_TYPE,
			fmt.Errorf("%w: %T", ErrUnknownSignal, m), nil)
	}
	return false
}

// reject tells the client a request failed, and why.
func reject(sess *session, what string, reason livekit.RequestResponse_Reason, err error, req any) {
	sess.log.Debug("signal request rejected", "request", what, "err", err)
	rr := &livekit.RequestResponse{Reason: reason, Message: what + ": " + err.Error()}
	switch r := req.(type) {
	case *livekit.RequestResponse_Trickle:
		rr.Request = r
	case *livekit.RequestResponse_AddTrack:
		rr.Request = r
	case *livekit.RequestResponse_Mute:
		rr.Request = r
	case *livekit.RequestResponse_UpdateMetadata:
		rr.Request = r
		rr.RequestId = r.UpdateMetadata.GetRequestId()
	}
	sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{RequestResponse: rr}})
}

func (s *Server) handleAddTrack(sess *session, p *sfu.Participant, req *livekit.AddTrackRequest) {
	info, err := p.AddTrack(req)
	if err != nil {
		reason := livekit.RequestResponse_INVALID_REQUEST
		if errors.Is(err, sfu.ErrPublishNotAllowed) || errors.Is(err, sfu.ErrSourceNotAllowed) {
			reason = livekit.RequestResponse_NOT_ALLOWED
		} else if errors.Is(err, sfu.ErrTooManyPending) || isLimitError(err) {
			reason = livekit.RequestResponse_LIMIT_EXCEEDED
		}
		reject(sess, "addTrack", reason, err, &livekit.RequestResponse_AddTrack{AddTrack: req})
		return
	}
	sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackPublished{
		TrackPublished: &livekit.TrackPublishedResponse{Cid: req.Cid, Track: info},
	}})
}

func (s *Server) handleSubscription(sess *session, p *sfu.Participant, req *livekit.UpdateSubscription) {
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
		reason := livekit.RequestResponse_NOT_FOUND
		if errors.Is(err, sfu.ErrSubscribeNotAllowed) {
			reason = livekit.RequestResponse_NOT_ALLOWED
		}
		reject(sess, "subscription", reason, err, nil)
	}
}

func (s *Server) handleUpdateMetadata(sess *session, p *sfu.Participant, req *livekit.UpdateParticipantMetadata) {
	name, md := req.Name, req.Metadata
	var namePtr, mdPtr *string
	if name != "" {
		namePtr = &name
	}
	if md != "" {
		mdPtr = &md
	}
	err := p.UpdateMetadata(namePtr, mdPtr, req.Attributes, true)
	if err != nil {
		reason := livekit.RequestResponse_NOT_ALLOWED
		if isLimitError(err) {
			reason = livekit.RequestResponse_LIMIT_EXCEEDED
		}
		reject(sess, "updateMetadata", reason, err,
			&livekit.RequestResponse_UpdateMetadata{UpdateMetadata: req})
		return
	}
	if req.RequestId != 0 {
		sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{
			RequestResponse: &livekit.RequestResponse{RequestId: req.RequestId, Reason: livekit.RequestResponse_OK},
		}})
	}
}
