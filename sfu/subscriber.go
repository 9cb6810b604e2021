package sfu

import (
	"fmt"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// negotiationDelay coalesces track changes into one subscriber offer.
const negotiationDelay = 20 * time.Millisecond

// subscription is one track a participant receives.
type subscription struct {
	dt          *DownTrack
	track       *publishedTrack
	transceiver *webrtc.RTPTransceiver
	// sender is the transceiver's sender as added (RemoveTrack clears the
	// transceiver's): stopping it ends the DownTrack's RTCP reader.
	sender    *webrtc.RTPSender
	publisher livekit.ParticipantID
	muted     bool // publisher muted the track
	disabled  bool // subscriber disabled it with trackSetting
	screen    bool // a screen share: served before cameras
}

// reservation is a subscribe under way.
type reservation struct {
	cancelled bool          // unsubscribed meanwhile: the subscribe undoes itself (under mu)
	done      chan struct{} // closed when the subscribe has finished
}

// subscriber is the sending side of a participant: the peer connection the
// server offers, its DownTracks and the server-to-client data channels.
type subscriber struct {
	p  *Participant
	pc *peerConn

	reliable *dataChannel
	lossy    *dataChannel
	cc       *congestion
	alloc    *allocation

	mu   sync.Mutex
	subs map[livekit.TrackID]*subscription
	// reserved are subscribes under way (adding their transceiver, which
	// happens without mu).
	reserved map[livekit.TrackID]*reservation
	explicit map[livekit.TrackID]bool // subscribe/unsubscribe choices, overriding auto-subscribe
	disabled map[livekit.TrackID]bool // trackSetting disabled, kept across resubscribe
	maxLayer map[livekit.TrackID]int8 // trackSetting quality or size, kept across resubscribe

	// negMu guards the negotiation state below. It is never held across a
	// pion call: the room asks for negotiations from other participants'
	// publish paths, which must not wait for this connection's SDP work.
	// Offers are made one at a time on the negotiation timer's goroutine
	// (negotiating), answers applied one at a time (answering).
	negMu       sync.Mutex
	offerID     uint32
	inFlight    bool // an offer awaits its answer
	negotiating bool // an offer is being made
	answering   bool // an answer is being applied
	renegotiate bool // changes arrived while an offer was made or in flight
	negTimer    *time.Timer
	closed      bool // written under both negMu and mu

	// addTransceiver adds a DownTrack's transceiver (the connection's
	// AddTransceiverFromTrack); beforeOffer, if set, runs before an offer
	// is made. Tests hold the pion steps with them.
	addTransceiver func(webrtc.TrackLocal, ...webrtc.RTPTransceiverInit) (*webrtc.RTPTransceiver, error)
	beforeOffer    func()

	// dtls is the connection's DTLS transport (one, bundled): media written
	// before it is connected is dropped by pion without an error.
	dtls *webrtc.DTLSTransport
}

// transportUp reports whether the connection's DTLS-SRTP transport is up,
// so that media written now reaches the subscriber.
func (s *subscriber) transportUp() bool {
	return s.dtls == nil || s.dtls.State() == webrtc.DTLSTransportStateConnected
}

// startStreams lets the DownTracks bound while the transport was coming up
// start now that it is up, each asking for its keyframe at once rather
// than at its track's next packet (up to a frame later).
func (s *subscriber) startStreams() {
	s.mu.Lock()
	dts := make([]*DownTrack, 0, len(s.subs))
	for _, sub := range s.subs {
		dts = append(dts, sub.dt)
	}
	s.mu.Unlock()
	for _, dt := range dts {
		if dt.bound.Load() != nil {
			dt.transportReady()
		}
	}
}

func newSubscriber(p *Participant) (*subscriber, error) {
	cc := newCongestion(p.log)
	pc, err := p.room.params.Transport.NewSubscriberPC(cc.factory())
	if err != nil {
		return nil, err
	}
	s := &subscriber{
		p: p, pc: newPeerConn(pc), cc: cc, dtls: pc.SCTP().Transport(),
		subs: map[livekit.TrackID]*subscription{}, reserved: map[livekit.TrackID]*reservation{},
		explicit: map[livekit.TrackID]bool{}, addTransceiver: pc.AddTransceiverFromTrack,
		disabled: map[livekit.TrackID]bool{}, maxLayer: map[livekit.TrackID]int8{},
	}
	ordered := true
	reliable, err := pc.CreateDataChannel(ReliableLabel, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("create reliable data channel: %w", err)
	}
	unordered, retransmits := false, uint16(0)
	lossy, err := pc.CreateDataChannel(LossyLabel, &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &retransmits})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("create lossy data channel: %w", err)
	}
	s.reliable, s.lossy = newDataChannel(reliable), newDataChannel(lossy)
	s.alloc = newAllocation(s, p.log)
	cc.onDrop(s.alloc.trigger)
	s.alloc.start()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.sendTrickle(livekit.SignalTarget_SUBSCRIBER, c) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		p.log.Debug("subscriber pc state", "state", st.String())
		if st == webrtc.PeerConnectionStateConnected {
			p.setActive()
			s.startStreams()
		}
		p.connectionEnded(st)
	})
	return s, nil
}

// HandleAnswer applies the client's answer to the server's subscriber offer.
func (p *Participant) HandleAnswer(sdpText string, id uint32) error {
	if err := validateSDP(sdpText); err != nil {
		return err
	}
	s := p.sub
	s.negMu.Lock()
	if !s.inFlight || s.answering {
		s.negMu.Unlock()
		return fmt.Errorf("answer %d without an offer: %w", id, ErrBadSDP)
	}
	s.answering = true
	s.negMu.Unlock()
	err := s.pc.setRemote(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdpText})
	s.negMu.Lock()
	defer s.negMu.Unlock()
	s.answering = false
	if err != nil {
		return err
	}
	s.inFlight = false
	if s.renegotiate {
		s.renegotiate = false
		s.scheduleLocked()
	}
	return nil
}

// requestNegotiation schedules a new subscriber offer. It never waits for
// an offer being made or answered: it only notes that another is needed.
func (s *subscriber) requestNegotiation() {
	s.negMu.Lock()
	defer s.negMu.Unlock()
	if s.inFlight || s.negotiating {
		s.renegotiate = true
		return
	}
	s.scheduleLocked()
}

func (s *subscriber) scheduleLocked() {
	if s.negTimer != nil || s.closed || s.p.offerless {
		return
	}
	s.negTimer = time.AfterFunc(negotiationDelay, s.negotiate)
}

// negotiate makes and sends an offer, unless one is being made or awaits
// its answer (then another follows that answer). It runs on the timer's
// goroutine, with negMu released during the pion calls.
func (s *subscriber) negotiate() {
	s.negMu.Lock()
	s.negTimer = nil
	if s.closed {
		s.negMu.Unlock()
		return
	}
	if s.inFlight || s.negotiating {
		s.renegotiate = true
		s.negMu.Unlock()
		return
	}
	s.negotiating, s.renegotiate = true, false
	s.negMu.Unlock()
	offer, err := s.makeOffer()
	s.negMu.Lock()
	s.negotiating = false
	if err != nil || s.closed {
		if err != nil && !s.closed {
			s.p.log.Warn("subscriber offer", "err", err)
		}
		if s.renegotiate && !s.closed {
			s.renegotiate = false
			s.scheduleLocked() // changes arrived meanwhile: they need an offer of their own
		}
		s.negMu.Unlock()
		return
	}
	s.inFlight = true
	s.offerID++
	id := s.offerID
	s.negMu.Unlock()
	s.p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: offer.SDP, Id: id, MidToTrackId: s.midToTrack(),
	}}})
}

// makeOffer creates the subscriber offer and sets it as local description.
func (s *subscriber) makeOffer() (webrtc.SessionDescription, error) {
	if s.beforeOffer != nil {
		s.beforeOffer()
	}
	pc := s.pc.pc
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return offer, fmt.Errorf("create offer: %w", err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return offer, fmt.Errorf("set local offer: %w", err)
	}
	return offer, nil
}

func (s *subscriber) midToTrack() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for id, sub := range s.subs {
		if mid := sub.transceiver.Mid(); mid != "" {
			out[mid] = string(id)
		}
	}
	return out
}

// subscribe starts forwarding a published track to this participant. The
// track id is reserved under s.mu, and the transceiver added without it:
// pion's AddTransceiverFromTrack may wait for a negotiation of the
// connection, and the room must not wait with it.
func (s *subscriber) subscribe(from *Participant, t *publishedTrack) error {
	id := t.up.ID()
	codecs, ok := SubscriberCodecs(t.up.Codec())
	if !ok {
		return fmt.Errorf("track %s codec %s: %w", id, t.up.Codec().MimeType, ErrCodecNotNegotiated)
	}
	s.mu.Lock()
	if r := s.reserved[id]; r != nil {
		// Under way: the latest choice, to subscribe, stands. Wait for
		// it (no lock held), so that the track is there on return, as
		// a WHEP answer made next expects.
		r.cancelled = false
		s.mu.Unlock()
		<-r.done
		return nil
	}
	if s.closed || s.subs[id] != nil {
		s.mu.Unlock()
		return nil
	}
	r := &reservation{done: make(chan struct{})}
	defer close(r.done)
	s.reserved[id] = r
	maxLayer, hasMax := s.maxLayer[id]
	s.mu.Unlock()

	dt := NewDownTrack(DownTrackParams{
		Track: t.up, StreamID: string(from.ID()) + "|" + string(id), Subscriber: s.p.id,
		OnTrackClosed: func(d *DownTrack) { s.trackEnded(id) },
		OnStreamState: func(d *DownTrack, active bool) { s.sendStreamState(from.ID(), id, active) },
		Logger:        s.p.log,
		twcc:          s.cc.rec,
		transportUp:   s.transportUp,
	})
	if hasMax {
		dt.SetMaxLayer(simulcast.Layer{Spatial: maxLayer, Temporal: simulcast.AllTemporal})
	}
	tr, err := s.addTransceiver(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		s.mu.Lock()
		delete(s.reserved, id)
		s.mu.Unlock()
		return fmt.Errorf("add transceiver for %s: %w", id, err)
	}
	if err := tr.SetCodecPreferences(codecs); err != nil {
		s.p.log.Debug("codec preferences", "track", id, "err", err)
	}
	// Taken now: a track that ends as its sink is added unsubscribes at
	// once, and removing the track clears the transceiver's sender.
	sender := tr.Sender()
	sub, ok := s.install(from, t, id, r, dt, tr, sender)
	if !ok {
		return nil
	}
	t.up.AddSink(dt)
	if dt.closed.Load() {
		return nil // the track had ended: trackEnded undid the subscription
	}
	s.mu.Lock() // sub.disabled changes under s.mu (updateTrackSetting)
	want := sub.wantedLayer()
	s.mu.Unlock()
	t.wantLayer(dt.SinkID(), want)
	go dt.ReadRTCP(sender)
	s.alloc.trigger()
	s.p.log.Debug("subscribed", "track", id, "publisher", from.ID())
	s.requestNegotiation()
	return nil
}

// install makes a subscription whose transceiver was added visible, unless
// it was unsubscribed or the subscriber closed meanwhile (then the
// transceiver goes again).
func (s *subscriber) install(from *Participant, t *publishedTrack, id livekit.TrackID, r *reservation, dt *DownTrack, tr *webrtc.RTPTransceiver, sender *webrtc.RTPSender) (*subscription, bool) {
	s.mu.Lock()
	cancelled := r.cancelled
	delete(s.reserved, id)
	if s.closed || cancelled {
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			if err := s.pc.pc.RemoveTrack(tr.Sender()); err != nil {
				s.p.log.Debug("remove track", "track", id, "err", err)
			}
		}
		// A transceiver added while the connection closed may have come
		// after pion stopped the others: stop its sender here.
		_ = sender.Stop()
		return nil, false
	}
	// The mute state is read under s.mu, before sub is visible: a mute
	// racing with this subscribe then either is seen here or finds sub in
	// setMuted.
	from.pub.mu.Lock()
	muted, screen := t.info.Muted, isScreenShare(t.info)
	from.pub.mu.Unlock()
	sub := &subscription{dt: dt, track: t, transceiver: tr, sender: sender, publisher: from.ID(), muted: muted, disabled: s.disabled[id], screen: screen}
	dt.SetPaused(sub.muted || sub.disabled)
	s.subs[id] = sub
	s.mu.Unlock()
	return sub, true
}

// unsubscribe stops forwarding a track to this participant.
func (s *subscriber) unsubscribe(id livekit.TrackID) {
	s.mu.Lock()
	sub := s.subs[id]
	delete(s.subs, id)
	if r := s.reserved[id]; r != nil && sub == nil {
		r.cancelled = true // the subscribe under way undoes itself
	}
	closed := s.closed
	s.mu.Unlock()
	if sub == nil {
		return
	}
	sub.dt.Track().RemoveSink(sub.dt.SinkID())
	sub.track.dropWant(sub.dt.SinkID())
	if !closed {
		if err := s.pc.pc.RemoveTrack(sub.sender); err != nil {
			s.p.log.Debug("remove track", "track", id, "err", err)
		}
	}
	// RemoveTrack stops the sender, but not when the connection is
	// closing meanwhile: the DownTrack's RTCP reader must end either way.
	_ = sub.sender.Stop()
	if !closed {
		s.requestNegotiation()
	}
}

// trackEnded drops a subscription whose track was unpublished, and the
// choices recorded for it.
func (s *subscriber) trackEnded(id livekit.TrackID) {
	s.forgetTrack(id)
	s.unsubscribe(id)
	s.mu.Lock()
	empty := len(s.subs) == 0 && !s.closed
	s.mu.Unlock()
	if empty && s.p.offerless {
		// A WHEP viewer whose tracks all ended (its broadcaster left or
		// reconnected as a new session) cannot be given new ones: end the
		// session, so that its client sees it and plays afresh.
		s.p.log.Info("played tracks ended, ending the session")
		go s.p.Close(livekit.DisconnectReason_PARTICIPANT_REMOVED, false)
	}
}

// subscription returns the subscription of a track, or nil.
func (s *subscriber) subscription(id livekit.TrackID) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[id]
}

// setMuted records the publisher's mute of a track this participant receives.
func (s *subscriber) setMuted(id livekit.TrackID, muted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.subs[id]; sub != nil {
		sub.muted = muted
		sub.dt.SetPaused(sub.muted || sub.disabled)
	}
}

// UpdateTrackSettings applies a subscriber's trackSetting request: disable
// or enable tracks, and for video the highest quality wanted (its viewport
// size when width and height are given, for adaptive stream).
func (p *Participant) UpdateTrackSettings(req *livekit.UpdateTrackSettings) {
	for _, sid := range req.TrackSids {
		id := livekit.TrackID(sid)
		owner, t := p.room.findTrack(id)
		if t == nil {
			continue // unknown ids are not recorded
		}
		p.updateTrackSetting(owner, t, id, req)
	}
}

func (p *Participant) updateTrackSetting(owner *Participant, t *publishedTrack, id livekit.TrackID, req *livekit.UpdateTrackSettings) {
	s := p.sub
	layer := int8(-1)
	if !req.Disabled && t.up.Kind() == webrtc.RTPCodecTypeVideo {
		// A disable leaves the quality as it was; an enable says it again.
		t.up.p.Logger.Debug("track setting", "track", id, "subscriber", p.id, "quality", req.Quality.String(), "width", req.Width, "height", req.Height)
		layer = maxLayerFor(owner.pub.layers(t), req.Quality, req.Width, req.Height)
	}
	s.mu.Lock()
	remember := s.roomForChoiceLocked(id)
	if remember {
		s.disabled[id] = req.Disabled
	}
	if remember && layer >= 0 {
		s.maxLayer[id] = layer
	}
	sub := s.subs[id]
	want := int8(-1)
	if sub != nil {
		sub.disabled = req.Disabled
		sub.dt.SetPaused(sub.muted || sub.disabled)
		if layer >= 0 {
			sub.dt.SetMaxLayer(simulcast.Layer{Spatial: layer, Temporal: simulcast.AllTemporal})
		}
		want = sub.wantedLayer()
	}
	s.mu.Unlock()
	if remember {
		s.stillPublished(owner, id) // forgets the choice if the track just went
	}
	if sub != nil {
		t.wantLayer(sub.dt.SinkID(), want)
		s.alloc.trigger()
	}
}

// wantedLayer is the highest layer this subscription needs encoded: none
// when the subscriber disabled it. The caller holds the subscriber's mu.
func (sub *subscription) wantedLayer() int8 {
	if sub.disabled {
		return -1
	}
	return sub.dt.MaxLayer().Spatial
}

// sendStreamState tells the subscriber that a track's stream paused (no
// layer can be forwarded) or resumed.
func (s *subscriber) sendStreamState(publisher livekit.ParticipantID, id livekit.TrackID, active bool) {
	state := livekit.StreamState_ACTIVE
	if !active {
		state = livekit.StreamState_PAUSED
	}
	s.p.log.Debug("stream state", "track", id, "state", state.String())
	s.p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_StreamStateUpdate{StreamStateUpdate: &livekit.StreamStateUpdate{
		StreamStates: []*livekit.StreamStateInfo{{ParticipantSid: string(publisher), TrackSid: string(id), State: state}},
	}}})
}

// SubscribedTracks lists the ids of the tracks this participant receives.
func (p *Participant) SubscribedTracks() []livekit.TrackID {
	s := p.sub
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]livekit.TrackID, 0, len(s.subs))
	for id := range s.subs {
		out = append(out, id)
	}
	return out
}

// DownTrack returns this participant's DownTrack of a track, or nil.
func (p *Participant) DownTrack(id livekit.TrackID) *DownTrack {
	if sub := p.sub.subscription(id); sub != nil {
		return sub.dt
	}
	return nil
}

// wantsExplicit returns the participant's explicit choice for a track, if any.
func (s *subscriber) wantsExplicit(id livekit.TrackID) (want, set bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want, set = s.explicit[id]
	return want, set
}

func (s *subscriber) close() {
	// closed is written once under both locks (negMu, then mu, the order
	// negotiate takes them in): readers may hold either.
	s.negMu.Lock()
	s.mu.Lock()
	s.closed = true
	subs := s.subs
	s.subs = map[livekit.TrackID]*subscription{}
	s.mu.Unlock()
	if s.negTimer != nil {
		s.negTimer.Stop()
		s.negTimer = nil
	}
	s.negMu.Unlock()
	s.alloc.close()
	for _, sub := range subs {
		sub.dt.Track().RemoveSink(sub.dt.SinkID())
		sub.track.dropWant(sub.dt.SinkID())
		_ = sub.sender.Stop() // ends its RTCP reader even if pion's close does not reach it
	}
	s.pc.close()
}

// BandwidthEstimate is the current estimate (bits/s) of what the
// participant's subscriber connection can carry, from its feedback.
func (p *Participant) BandwidthEstimate() uint64 { return p.sub.cc.estimate() }

// ReceivedBitrate is the bitrate, in bits per second, the participant's
// subscriber connection received lately, as its transport-wide feedback
// reports it (0 until measured).
func (p *Participant) ReceivedBitrate() uint64 { return p.sub.cc.acked() }
