package sfu

import (
	"fmt"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/simulcast"
)

// Ping settings announced in the join response.
const (
	PingInterval = 10 * time.Second
	PingTimeout  = 30 * time.Second
)

// permissions is a publisher's subscription permission: who may receive
// which of its tracks. The zero value allows everyone.
type permissions struct {
	mu         sync.Mutex
	restricted bool
	// allowed maps a subscriber (sid or identity) to the tracks it may
	// receive; a nil set means all tracks.
	allowed map[string]map[livekit.TrackID]bool
}

func (pm *permissions) allows(sub *Participant, track livekit.TrackID) bool {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if !pm.restricted {
		return true
	}
	for _, key := range []string{string(sub.id), string(sub.identity)} {
		if tracks, ok := pm.allowed[key]; ok {
			return tracks == nil || tracks[track]
		}
	}
	return false
}

func (pm *permissions) set(req *livekit.SubscriptionPermission) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.restricted = !req.AllParticipants
	pm.allowed = map[string]map[livekit.TrackID]bool{}
	for _, tp := range req.TrackPermissions {
		var tracks map[livekit.TrackID]bool
		if !tp.AllTracks {
			tracks = map[livekit.TrackID]bool{}
			for _, t := range tp.TrackSids {
				tracks[livekit.TrackID(t)] = true
			}
		}
		for _, key := range []string{tp.ParticipantSid, tp.ParticipantIdentity} {
			if key != "" {
				pm.allowed[key] = tracks
			}
		}
	}
}

// shouldReceive decides whether sub gets pub's track: it may subscribe, the
// publisher allows it, and it asked for the track or auto-subscribes.
func (r *Room) shouldReceive(sub, pub *Participant, track livekit.TrackID) bool {
	if sub == pub || sub.Closed() || pub.Closed() {
		return false
	}
	if !sub.Permission().CanSubscribe || !pub.perms.allows(sub, track) {
		return false
	}
	if want, set := sub.sub.wantsExplicit(track); set {
		return want
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.autoSubscribe
}

// onTrackPublished subscribes everyone who should receive a new track.
func (r *Room) onTrackPublished(pub *Participant, t *publishedTrack) {
	for _, sub := range r.Participants() {
		if r.shouldReceive(sub, pub, t.up.ID()) {
			if err := sub.sub.subscribe(pub, t); err != nil {
				sub.log.Warn("subscribe failed", "track", t.up.ID(), "err", err)
			}
		}
	}
}

// subscribeToExisting subscribes a newcomer to the tracks already published.
func (r *Room) subscribeToExisting(sub *Participant) {
	for _, pub := range r.Participants() {
		for _, t := range pub.pub.publishedTracks() {
			if r.shouldReceive(sub, pub, t.up.ID()) {
				if err := sub.sub.subscribe(pub, t); err != nil {
					sub.log.Warn("subscribe failed", "track", t.up.ID(), "err", err)
				}
			}
		}
	}
}

// onTrackMuted pauses or resumes a track for everyone receiving it.
func (r *Room) onTrackMuted(t *publishedTrack, muted bool) {
	for _, sub := range r.Participants() {
		sub.sub.setMuted(t.up.ID(), muted)
	}
}

// findTrack locates a published track in the room.
func (r *Room) findTrack(id livekit.TrackID) (*Participant, *publishedTrack) {
	for _, p := range r.Participants() {
		if t := p.pub.track(id); t != nil {
			return p, t
		}
	}
	return nil, nil
}

// UpdateSubscriptions subscribes the participant to tracks or unsubscribes
// it; the choice overrides auto-subscribe for those tracks.
func (p *Participant) UpdateSubscriptions(trackIDs []livekit.TrackID, subscribe bool) error {
	if subscribe && !p.Permission().CanSubscribe {
		return ErrSubscribeNotAllowed
	}
	var missing []livekit.TrackID
	for _, id := range trackIDs {
		// Choices are kept only for tracks that exist (ids are the
		// server's), so a client cannot grow the map without bound.
		pub, t := p.room.findTrack(id)
		if t == nil {
			if subscribe {
				missing = append(missing, id)
			}
			continue
		}
		if !p.sub.rememberExplicit(pub, id, subscribe) {
			if subscribe {
				missing = append(missing, id) // unpublished meanwhile
			}
			continue
		}
		if !subscribe {
			p.sub.unsubscribe(id)
			continue
		}
		if !pub.perms.allows(p, id) {
			p.send(permissionUpdate(pub, id, false))
			continue
		}
		if err := p.sub.subscribe(pub, t); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("tracks %v: %w", missing, ErrTrackNotFound)
	}
	return nil
}

// SetSubscriptionPermission changes who may receive this participant's
// tracks, revoking and granting subscriptions accordingly.
func (p *Participant) SetSubscriptionPermission(req *livekit.SubscriptionPermission) {
	type before struct {
		sub     *Participant
		track   *publishedTrack
		allowed bool
	}
	var states []before
	tracks := p.pub.publishedTracks()
	others := p.room.Participants()
	for _, sub := range others {
		for _, t := range tracks {
			states = append(states, before{sub, t, p.perms.allows(sub, t.up.ID())})
		}
	}
	p.perms.set(req)
	for _, s := range states {
		if s.sub == p {
			continue
		}
		id := s.track.up.ID()
		now := p.perms.allows(s.sub, id)
		if now == s.allowed {
			continue
		}
		if !now {
			s.sub.sub.unsubscribe(id)
		} else if p.room.shouldReceive(s.sub, p, id) {
			_ = s.sub.sub.subscribe(p, s.track)
		}
		s.sub.send(permissionUpdate(p, id, now))
	}
}

func permissionUpdate(pub *Participant, id livekit.TrackID, allowed bool) *livekit.SignalResponse {
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_SubscriptionPermissionUpdate{
		SubscriptionPermissionUpdate: &livekit.SubscriptionPermissionUpdate{
			ParticipantSid: string(pub.id), TrackSid: string(id), Allowed: allowed,
		},
	}}
}

// UpdateMetadata changes the participant's name, metadata and attributes
// (nil fields unchanged) and tells the room.
func (p *Participant) UpdateMetadata(name, metadata *string, attrs map[string]string, byClient bool) error {
	p.mu.Lock()
	if byClient && !p.permission.CanUpdateMetadata {
		p.mu.Unlock()
		return ErrMetadataNotAllowed
	}
	if err := p.room.params.Limits.CheckMetadata(name, metadata, mergedAttributes(p.attributes, attrs)); err != nil {
		p.mu.Unlock()
		return err
	}
	if name != nil {
		p.name = *name
	}
	if metadata != nil {
		p.metadata = *metadata
	}
	if len(attrs) > 0 {
		if p.attributes == nil {
			p.attributes = map[string]string{}
		}
		for k, v := range attrs {
			if v == "" {
				delete(p.attributes, k)
			} else {
				p.attributes[k] = v
			}
		}
	}
	p.version++
	p.mu.Unlock()
	p.room.broadcastParticipant(p)
	return nil
}

// SetPermission replaces the participant's permissions (RoomService); a
// lost subscribe permission ends its subscriptions.
func (p *Participant) SetPermission(perm *livekit.ParticipantPermission) {
	p.mu.Lock()
	p.permission = perm
	p.version++
	p.mu.Unlock()
	if !perm.CanSubscribe {
		for _, id := range p.SubscribedTracks() {
			p.sub.unsubscribe(id)
		}
	} else {
		p.room.subscribeToExisting(p)
	}
	p.room.broadcastParticipant(p)
}

// PublishedTrack returns a track published in the room, to attach a sink
// of another package (an egress). A sink added through it wants the top
// simulcast layer, which an egress muxes, kept encoded (dynacast) until it
// is removed: without a WebRTC subscriber the publisher would otherwise be
// told to stop every layer.
func (r *Room) PublishedTrack(id livekit.TrackID) (Track, bool) {
	if _, t := r.findTrack(id); t != nil {
		return wantingTrack{UpTrack: t.up, pt: t}, true
	}
	return nil, false
}

// wantingTrack is a published track whose sinks record the layer they
// want with its dynacast.
type wantingTrack struct {
	*UpTrack
	pt *publishedTrack
}

// AddSink starts forwarding to s and wants the top layer for it.
func (w wantingTrack) AddSink(s Sink) {
	w.UpTrack.AddSink(s)
	w.pt.wantLayer(s.SinkID(), simulcast.MaxSpatial-1)
}

// RemoveSink stops forwarding to the sink and forgets its want.
func (w wantingTrack) RemoveSink(id string) {
	w.UpTrack.RemoveSink(id)
	w.pt.dropWant(id)
}
