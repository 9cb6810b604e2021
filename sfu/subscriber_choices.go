package sfu

import "github.com/livekit/protocol/livekit"

// maxTrackChoices caps how many tracks one subscriber's choices (explicit
// subscribe/unsubscribe, trackSetting disable and quality) are remembered
// for. Choices are recorded only for tracks that exist and forgotten when
// a track is unpublished, so the maps hold at most the room's tracks; the
// cap keeps a bound on them whatever the room holds. Past it, a choice
// still applies to a live subscription but is not remembered.
const maxTrackChoices = 1024

// rememberExplicit records a subscribe (or unsubscribe) choice for a track
// that pub publishes (unless the cap is reached), and reports whether the
// track is still published: it may have been unpublished, and its choices
// forgotten, before this one was recorded.
func (s *subscriber) rememberExplicit(pub *Participant, id livekit.TrackID, subscribe bool) bool {
	s.mu.Lock()
	_, known := s.explicit[id]
	full := !known && len(s.explicit) >= maxTrackChoices
	if !full {
		s.explicit[id] = subscribe
	}
	s.mu.Unlock()
	if full {
		s.p.log.Debug("too many track choices, this one is not remembered", "track", id)
	}
	return s.stillPublished(pub, id)
}

// roomForChoiceLocked reports whether a trackSetting choice for a track
// may be recorded under the cap. Callers hold s.mu.
func (s *subscriber) roomForChoiceLocked(id livekit.TrackID) bool {
	_, disabled := s.disabled[id]
	_, layer := s.maxLayer[id]
	return disabled || layer || max(len(s.disabled), len(s.maxLayer)) < maxTrackChoices
}

// stillPublished checks, after a choice for a track was recorded, that
// the track is still published, and forgets the choice if it is not.
func (s *subscriber) stillPublished(pub *Participant, id livekit.TrackID) bool {
	if pub.pub.track(id) != nil {
		return true
	}
	s.forgetTrack(id)
	return false
}

// forgetTrack drops the choices recorded for a track.
func (s *subscriber) forgetTrack(id livekit.TrackID) {
	s.mu.Lock()
	delete(s.explicit, id)
	delete(s.disabled, id)
	delete(s.maxLayer, id)
	s.mu.Unlock()
}

// forgetTrackChoices drops every participant's choices for a track that
// was unpublished, subscribed or not: they would never be used again
// (track ids are not reused).
func (r *Room) forgetTrackChoices(id livekit.TrackID) {
	for _, p := range r.Participants() {
		p.sub.forgetTrack(id)
	}
}
