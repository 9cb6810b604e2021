package sfu

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/simulcast"
)

// maxPendingTracks bounds addTrack requests waiting for their media.
const maxPendingTracks = 32

// publisher is the receiving side of a participant: the peer connection it
// publishes on and the tracks announced with addTrack.
type publisher struct {
	p  *Participant
	pc *peerConn

	mu      sync.Mutex
	pending []*pendingTrack
	tracks  map[livekit.TrackID]*publishedTrack
	order   []livekit.TrackID
	count   atomic.Int32 // len(tracks), readable without mu
	// layered are the simulcast transceivers by mid: pion reports each
	// layer in its own goroutine, so the first one creates the track and
	// the others wait for it and join it as layers.
	layered map[string]*layeredTrack
	// done is closed when the connection closes: simulcast layers
	// waiting for their track stop waiting.
	done      chan struct{}
	closeOnce sync.Once
}

// layeredTrack is a simulcast transceiver's track while its layers arrive.
// The fields are written once, before ready is closed, and read after.
type layeredTrack struct {
	ready    chan struct{} // closed once up is set (nil: no track)
	up       *UpTrack
	track    *publishedTrack
	receiver *webrtc.RTPReceiver
}

type pendingTrack struct {
	cid  string
	info *livekit.TrackInfo
	// claimed: its media arrived and the track is being created; it stays
	// listed (a mute still finds it) until the track replaces it.
	claimed bool
}

func newPublisher(p *Participant) (*publisher, error) {
	pc, err := p.room.params.Transport.NewPublisherPC()
	if err != nil {
		return nil, err
	}
	pub := &publisher{
		p: p, pc: newPeerConn(pc),
		tracks: map[livekit.TrackID]*publishedTrack{}, layered: map[string]*layeredTrack{},
		done: make(chan struct{}),
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.sendTrickle(livekit.SignalTarget_PUBLISHER, c) })
	pc.OnTrack(pub.onTrack)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		label := dc.Label()
		dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.room.handleData(p, label, msg.Data) })
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("publisher pc state", "state", s.String())
		if s == webrtc.PeerConnectionStateConnected {
			p.setActive()
		}
		p.connectionEnded(s)
	})
	return pub, nil
}

// AddTrack announces a track the client is about to publish.
func (p *Participant) AddTrack(req *livekit.AddTrackRequest) (*livekit.TrackInfo, error) {
	perm := p.Permission()
	if !perm.CanPublish || perm.Hidden {
		return nil, ErrPublishNotAllowed
	}
	if len(perm.CanPublishSources) > 0 && !slices.Contains(perm.CanPublishSources, req.Source) {
		return nil, fmt.Errorf("source %s: %w", req.Source, ErrSourceNotAllowed)
	}
	if req.Type != livekit.TrackType_AUDIO && req.Type != livekit.TrackType_VIDEO {
		return nil, fmt.Errorf("type %s: %w", req.Type, ErrBadTrackType)
	}
	if err := p.room.params.Limits.checkAddTrack(req); err != nil {
		return nil, err
	}
	info := &livekit.TrackInfo{
		Sid: NewID(TrackPrefix), Type: req.Type, Name: req.Name, Muted: req.Muted,
		Width: req.Width, Height: req.Height, Source: req.Source, Layers: req.Layers,
		DisableDtx: req.DisableDtx, Stereo: req.Stereo, DisableRed: req.DisableRed,
		Encryption: req.Encryption, Stream: req.Stream, AudioFeatures: req.AudioFeatures,
		Simulcast: len(req.Layers) > 1,
	}
	pub := p.pub
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, pt := range pub.pending {
		if pt.cid == req.Cid {
			return nil, fmt.Errorf("cid %q: %w", req.Cid, ErrDuplicateTrack)
		}
	}
	if len(pub.pending) >= maxPendingTracks {
		return nil, ErrTooManyPending
	}
	if err := p.room.params.Limits.checkTrackCount(len(pub.tracks) + len(pub.pending)); err != nil {
		return nil, err
	}
	pub.pending = append(pub.pending, &pendingTrack{cid: req.Cid, info: info})
	return proto.Clone(info).(*livekit.TrackInfo), nil
}

// HandleOffer answers the client's offer on the publisher connection.
func (p *Participant) HandleOffer(sdpText string, id uint32) error {
	if err := validateSDP(sdpText); err != nil {
		return err
	}
	pc := p.pub.pc
	if err := pc.setRemote(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdpText}); err != nil {
		return err
	}
	answer, err := pc.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	if err := pc.pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set local answer: %w", err)
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Answer{Answer: &livekit.SessionDescription{
		Type: "answer", Sdp: answer.SDP, Id: id,
	}}})
	return nil
}

// claimPending finds the addTrack entry for an incoming track: by cid (the
// msid track id), else the first pending track of the same kind. It stays
// in the pending list, claimed, until addPublished replaces it, so that
// the track is never in neither list. It returns a copy of the entry's
// info to build the track from.
func (pub *publisher) claimPending(cid string, kind webrtc.RTPCodecType) (*pendingTrack, *livekit.TrackInfo) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	idx := slices.IndexFunc(pub.pending, func(pt *pendingTrack) bool { return !pt.claimed && pt.cid == cid })
	if idx < 0 {
		want := livekit.TrackType_AUDIO
		if kind == webrtc.RTPCodecTypeVideo {
			want = livekit.TrackType_VIDEO
		}
		idx = slices.IndexFunc(pub.pending, func(pt *pendingTrack) bool { return !pt.claimed && pt.info.Type == want })
	}
	if idx < 0 {
		return nil, nil
	}
	pt := pub.pending[idx]
	pt.claimed = true
	return pt, proto.Clone(pt.info).(*livekit.TrackInfo)
}

func (pub *publisher) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	mid := midOf(pub.pc.pc, receiver)
	layer := layerIndex(remote, receiver)
	var lt *layeredTrack
	if remote.RID() != "" && mid != "" {
		var first bool
		if lt, first = pub.claimLayered(mid); !first {
			pub.addLayer(lt, remote, layer)
			return
		}
	}
	track := pub.publishRemote(remote, receiver, mid, layer)
	if lt != nil {
		// The other layers may join now, before the room hears of the
		// track (subscribing everyone may take a while).
		if track != nil {
			lt.up, lt.track = track.up, track
		}
		lt.receiver = receiver
		close(lt.ready)
		if track == nil {
			pub.releaseLayered(mid)
		}
	}
	if track != nil {
		pub.announce(track)
	}
}

// layerSource is a received simulcast layer: a *webrtc.TrackRemote.
type layerSource interface {
	PacketReader
	SSRC() webrtc.SSRC
	RID() string
}

// addLayer joins another simulcast layer to the track its transceiver's
// first layer created. It waits for that track however long it takes, or
// until the connection closes; a layer that cannot join is said so and
// read and discarded (see drain).
func (pub *publisher) addLayer(lt *layeredTrack, remote layerSource, layer int8) {
	select {
	case <-lt.ready:
	case <-pub.done:
		pub.p.log.Warn("simulcast layer not forwarded: the connection closed before its track was published", "rid", remote.RID())
		go drain(remote)
		return
	}
	if lt.up == nil {
		pub.p.log.Warn("simulcast layer not forwarded: its first layer was not published", "rid", remote.RID())
		go drain(remote)
		return
	}
	if err := lt.up.AddLayer(layer, remote, uint32(remote.SSRC())); err != nil {
		pub.p.log.Warn("simulcast layer not forwarded", "rid", remote.RID(), "err", err)
		go drain(remote)
		return
	}
	if lt.track != nil {
		pub.noteLayer(lt.track, layer, uint32(remote.SSRC()), true)
	}
	if lt.receiver != nil {
		go readSenderReports(lt.receiver, remote, lt.up, layer)
	}
	pub.p.log.Debug("simulcast layer added", "track", lt.up.ID(), "rid", remote.RID(), "layer", layer)
}

// publishRemote creates the published track for a remote track (the first
// layer of a simulcast one) and starts reading it; nil if no addTrack
// matches. The room hears of it with announce.
func (pub *publisher) publishRemote(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver, mid string, layer int8) *publishedTrack {
	p := pub.p
	pt, info := pub.claimPending(remote.ID(), remote.Kind())
	if pt == nil {
		p.log.Warn("track without addTrack, ignored", "msid_track", remote.ID(), "kind", remote.Kind().String())
		_ = receiver.Stop()
		return nil
	}
	info.MimeType = remote.Codec().MimeType
	info.Mid = mid
	var levelID uint8
	for _, ext := range receiver.GetParameters().HeaderExtensions {
		if ext.URI == sdp.AudioLevelURI {
			levelID = uint8(ext.ID)
		}
	}
	up := NewUpTrack(UpTrackParams{
		ID: livekit.TrackID(info.Sid), Reader: remote, Codec: remote.Codec(), Kind: remote.Kind(),
		SSRC: uint32(remote.SSRC()), Layer: layer, AudioLevelExtID: levelID,
		OnAudioLevel: p.room.speakerObserver(p.id),
		WriteRTCP:    pub.pc.pc.WriteRTCP,
		Logger:       p.log,
	})
	track := newPublishedTrack(info, up, pub.sendQualities)
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		pub.noteLayer(track, layer, uint32(remote.SSRC()), remote.RID() != "")
	}
	pub.register(pt, track)
	p.log.Info("track published", "track", up.ID(), "mime", info.MimeType, "source", info.Source.String(), "rid", remote.RID())
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		go readSenderReports(receiver, remote, up, layer)
	}
	return track
}

// announce tells the room of a newly published track.
func (pub *publisher) announce(track *publishedTrack) {
	p := pub.p
	p.bumpVersion()
	p.room.broadcastParticipant(p)
	p.room.onTrackPublished(p, track)
}

// register adds a published track to the publisher and starts reading it;
// it is unpublished once its reader ends. The track replaces its claimed
// pending entry (pt, nil for none) in the same step, so that it is never
// in neither list, and a mute that reached the entry meanwhile carries over.
func (pub *publisher) register(pt *pendingTrack, track *publishedTrack) {
	up := track.up
	pub.mu.Lock()
	if pt != nil {
		pub.pending = slices.DeleteFunc(pub.pending, func(o *pendingTrack) bool { return o == pt })
		track.info.Muted = pt.info.Muted
		up.SetMuted(pt.info.Muted)
	}
	pub.tracks[up.ID()] = track
	pub.order = append(pub.order, up.ID())
	pub.count.Store(int32(len(pub.tracks)))
	pub.mu.Unlock()
	go func() {
		up.Run()
		pub.unpublish(up.ID())
	}()
}

// readSenderReports hands a video layer's sender reports to its track (to
// align the timestamps of simulcast layers at switches) until the receiver
// stops.
func readSenderReports(receiver *webrtc.RTPReceiver, remote layerSource, up *UpTrack, layer int8) {
	ssrc := uint32(remote.SSRC())
	for {
		var pkts []rtcp.Packet
		var err error
		if rid := remote.RID(); rid != "" {
			pkts, _, err = receiver.ReadSimulcastRTCP(rid)
		} else {
			pkts, _, err = receiver.ReadRTCP()
		}
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == ssrc {
				up.SetSenderReport(layer, simulcast.SenderReport{NTP: sr.NTPTime, RTP: sr.RTPTime})
			}
		}
	}
}

// layerIndex is the spatial layer a remote track carries: from its RID
// (q/h/f and common names), else its position among the transceiver's
// encodings.
func layerIndex(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) int8 {
	rid := remote.RID()
	if rid == "" {
		return 0
	}
	if l, ok := simulcast.LayerForRID(rid); ok {
		return l
	}
	for i, tr := range receiver.Tracks() {
		if tr.RID() == rid {
			return int8(min(i, simulcast.MaxSpatial-1))
		}
	}
	return 0
}

// drain reads and discards a simulcast layer that is not forwarded until
// it ends. Unread, its packets would never pass the receive interceptors:
// the publisher would get no transport-cc feedback for them, count them as
// lost, and its bandwidth estimate would collapse (Chrome then turns its
// higher layers off).
func drain(r PacketReader) {
	buf := make([]byte, MaxPacketSize)
	for {
		if _, _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// claimLayered returns the entry of a simulcast transceiver, creating it
// when this layer is the first to arrive (first is then true).
func (pub *publisher) claimLayered(mid string) (lt *layeredTrack, first bool) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if lt := pub.layered[mid]; lt != nil {
		return lt, false
	}
	lt = &layeredTrack{ready: make(chan struct{})}
	pub.layered[mid] = lt
	return lt, true
}

// releaseLayered forgets a simulcast transceiver once its track ended, for
// a track the client may later publish on the same transceiver.
func (pub *publisher) releaseLayered(mid string) {
	pub.mu.Lock()
	delete(pub.layered, mid)
	pub.mu.Unlock()
}

func midOf(pc *webrtc.PeerConnection, receiver *webrtc.RTPReceiver) string {
	for _, tr := range pc.GetTransceivers() {
		if tr.Receiver() == receiver {
			return tr.Mid()
		}
	}
	return ""
}

// unpublish removes a track that ended and tells the room.
func (pub *publisher) unpublish(id livekit.TrackID) {
	pub.mu.Lock()
	t, ok := pub.tracks[id]
	if ok && t.info.Mid != "" {
		delete(pub.layered, t.info.Mid)
	}
	delete(pub.tracks, id)
	pub.order = slices.DeleteFunc(pub.order, func(t livekit.TrackID) bool { return t == id })
	pub.count.Store(int32(len(pub.tracks)))
	pub.mu.Unlock()
	if !ok {
		return
	}
	if t.dyn != nil {
		// Outside pub.mu: dynacast's sends take pub.mu.
		t.dyn.close()
	}
	p := pub.p
	p.log.Info("track unpublished", "track", id)
	p.room.forgetTrackChoices(id) // everyone's, subscribed or not
	if p.closed.Load() {
		return
	}
	p.bumpVersion()
	p.room.broadcastParticipant(p)
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackUnpublished{
		TrackUnpublished: &livekit.TrackUnpublishedResponse{TrackSid: string(id)},
	}})
}

// track returns a published track by id.
func (pub *publisher) track(id livekit.TrackID) *publishedTrack {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	return pub.tracks[id]
}

// trackCount is the number of tracks published; it takes no lock, so the
// room may ask it of every participant without waiting for a busy one.
func (pub *publisher) trackCount() int { return int(pub.count.Load()) }

// publishedTracks lists the participant's tracks in publication order.
func (pub *publisher) publishedTracks() []*publishedTrack {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	out := make([]*publishedTrack, 0, len(pub.order))
	for _, id := range pub.order {
		out = append(out, pub.tracks[id])
	}
	return out
}

func (pub *publisher) trackInfos() []*livekit.TrackInfo {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	out := make([]*livekit.TrackInfo, 0, len(pub.order))
	for _, id := range pub.order {
		out = append(out, proto.Clone(pub.tracks[id].info).(*livekit.TrackInfo))
	}
	return out
}

// SetTrackMuted mutes or unmutes one of the participant's tracks; with
// fromServer the client is told to mute too (RoomService).
func (p *Participant) SetTrackMuted(id livekit.TrackID, muted, fromServer bool) (*livekit.TrackInfo, error) {
	pub := p.pub
	pub.mu.Lock()
	t := pub.tracks[id]
	if t == nil {
		var pendingInfo *livekit.TrackInfo
		for _, pt := range pub.pending {
			if pt.info.Sid == string(id) {
				pt.info.Muted = muted
				pendingInfo = proto.Clone(pt.info).(*livekit.TrackInfo)
			}
		}
		pub.mu.Unlock()
		if pendingInfo == nil {
			return nil, fmt.Errorf("track %s: %w", id, ErrTrackNotFound)
		}
		return pendingInfo, nil
	}
	changed := t.info.Muted != muted
	t.info.Muted = muted
	t.up.SetMuted(muted)
	info := proto.Clone(t.info).(*livekit.TrackInfo)
	pub.mu.Unlock()
	if fromServer {
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Mute{
			Mute: &livekit.MuteTrackRequest{Sid: string(id), Muted: muted},
		}})
	}
	if changed {
		p.bumpVersion()
		p.room.onTrackMuted(t, muted)
		p.room.broadcastParticipant(p)
		if !muted && t.up.Kind() == webrtc.RTPCodecTypeVideo {
			t.up.RequestKeyframes()
		}
	}
	return info, nil
}

func (pub *publisher) close() {
	pub.closeOnce.Do(func() { close(pub.done) })
	pub.pc.close()
}
