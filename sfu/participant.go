package sfu

import (
	"cmp"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"
)

// SignalSink is how the SFU talks to a participant's client. SendSignal must
// not block (the signaling layer queues, and drops a client that cannot keep
// up); CloseSignal ends the client's signal connection after queued messages.
type SignalSink interface {
	SendSignal(msg *livekit.SignalResponse)
	CloseSignal()
}

// ParticipantParams describes a participant joining a room.
type ParticipantParams struct {
	Identity      livekit.ParticipantIdentity
	Name          string
	Metadata      string
	Attributes    map[string]string
	Kind          livekit.ParticipantInfo_Kind
	Permission    *livekit.ParticipantPermission
	AutoSubscribe bool
	// ClientProtocol is the protocol version the client announced.
	ClientProtocol int32
	Signal         SignalSink
	// Offerless: the client negotiates over HTTP (WHIP, WHEP) with one
	// offer of its own (AnswerPublish, AnswerPlayback): the server never
	// offers to it, and it leaves when its connection fails or does not
	// come up within ConnectTimeout.
	Offerless bool
	// ConnectTimeout is how long an offerless participant's connection
	// has to come up before the participant is removed (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// DefaultConnectTimeout is how long an offerless participant's connection
// has to come up, by default.
const DefaultConnectTimeout = 20 * time.Second

// Participant is one client in a room: its two peer connections, what it
// publishes and what it receives.
type Participant struct {
	id     livekit.ParticipantID
	room   *Room
	signal SignalSink
	log    *slog.Logger

	mu             sync.Mutex
	identity       livekit.ParticipantIdentity
	name           string
	metadata       string
	attributes     map[string]string
	kind           livekit.ParticipantInfo_Kind
	permission     *livekit.ParticipantPermission
	autoSubscribe  bool
	offerless      bool
	connectTimeout time.Duration
	clientProtocol int32
	state          livekit.ParticipantInfo_State
	joinedAt       time.Time
	version        uint32
	disconnect     livekit.DisconnectReason

	pub        *publisher
	sub        *subscriber
	perms      permissions
	dataLimits *dataLimiter

	updateMu   sync.Mutex // orders this participant's broadcast updates
	closed     atomic.Bool
	closeOnce  sync.Once
	signalLost *time.Timer
}

func newParticipant(room *Room, p ParticipantParams) (*Participant, error) {
	if err := room.params.Limits.CheckMetadata(&p.Name, &p.Metadata, p.Attributes); err != nil {
		return nil, err
	}
	perm := p.Permission
	if perm == nil {
		perm = &livekit.ParticipantPermission{CanSubscribe: true, CanPublish: true, CanPublishData: true}
	}
	part := &Participant{
		id:             livekit.ParticipantID(NewID(ParticipantPrefix)),
		room:           room,
		signal:         p.Signal,
		identity:       p.Identity,
		name:           p.Name,
		metadata:       p.Metadata,
		attributes:     p.Attributes,
		kind:           p.Kind,
		permission:     proto.Clone(perm).(*livekit.ParticipantPermission),
		autoSubscribe:  p.AutoSubscribe,
		offerless:      p.Offerless,
		connectTimeout: cmp.Or(p.ConnectTimeout, DefaultConnectTimeout),
		clientProtocol: p.ClientProtocol,
		state:          livekit.ParticipantInfo_JOINING,
		joinedAt:       time.Now(),
		dataLimits:     newDataLimiter(room.params.Limits),
	}
	part.log = room.log.With("participant", part.id, "identity", p.Identity)
	pub, err := newPublisher(part)
	if err != nil {
		return nil, err
	}
	sub, err := newSubscriber(part)
	if err != nil {
		pub.close()
		return nil, err
	}
	part.pub, part.sub = pub, sub
	return part, nil
}

// ID returns the participant's sid (PA_...).
func (p *Participant) ID() livekit.ParticipantID { return p.id }

// Identity returns the identity from the participant's token.
func (p *Participant) Identity() livekit.ParticipantIdentity { return p.identity }

// Room returns the room the participant is in.
func (p *Participant) Room() *Room { return p.room }

// Closed reports whether the participant has left.
func (p *Participant) Closed() bool { return p.closed.Load() }

// Permission returns a copy of the participant's current permissions.
func (p *Participant) Permission() *livekit.ParticipantPermission {
	p.mu.Lock()
	defer p.mu.Unlock()
	return proto.Clone(p.permission).(*livekit.ParticipantPermission)
}

func (p *Participant) hidden() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.permission.Hidden
}

// Info returns the participant as clients see it.
func (p *Participant) Info() *livekit.ParticipantInfo {
	p.mu.Lock()
	info := &livekit.ParticipantInfo{
		Sid:              string(p.id),
		Identity:         string(p.identity),
		Name:             p.name,
		Metadata:         p.metadata,
		Attributes:       copyMap(p.attributes),
		State:            p.state,
		JoinedAt:         p.joinedAt.Unix(),
		JoinedAtMs:       p.joinedAt.UnixMilli(),
		Version:          p.version,
		Permission:       proto.Clone(p.permission).(*livekit.ParticipantPermission),
		Kind:             p.kind,
		Region:           p.room.serverInfo.Region,
		DisconnectReason: p.disconnect,
		ClientProtocol:   p.clientProtocol,
	}
	p.mu.Unlock()
	info.Tracks = p.pub.trackInfos()
	info.IsPublisher = len(info.Tracks) > 0
	return info
}

// bumpVersion marks a change of the participant's visible state.
func (p *Participant) bumpVersion() {
	p.mu.Lock()
	p.version++
	p.mu.Unlock()
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// send queues a message for the participant's client.
func (p *Participant) send(msg *livekit.SignalResponse) {
	if p.signal != nil && !p.closed.Load() {
		p.signal.SendSignal(msg)
	}
}

// start is called after the join response went out: it sets up
// subscriptions to tracks already published and sends the first offer.
func (p *Participant) start() {
	p.mu.Lock()
	if p.closed.Load() { // replaced before its join response went out
		p.mu.Unlock()
		return
	}
	p.state = livekit.ParticipantInfo_JOINED
	p.version++
	p.mu.Unlock()
	p.room.broadcastParticipant(p)
	p.room.subscribeToExisting(p)
	p.sub.requestNegotiation()
	if p.offerless {
		time.AfterFunc(p.connectTimeout, func() {
			p.mu.Lock()
			up := p.state == livekit.ParticipantInfo_ACTIVE
			p.mu.Unlock()
			if !up && !p.closed.Load() {
				p.log.Info("connection did not come up", "timeout", p.connectTimeout)
				p.Close(livekit.DisconnectReason_CONNECTION_TIMEOUT, false)
			}
		})
	}
}

// connectionEnded removes an offerless participant whose connection was
// silent for iceDisconnectedTimeout, failed or closed: a WHIP or WHEP
// client killed outright sends no DELETE, and one that lost its network
// sends a new offer (a new session) rather than an ICE restart, in practice.
func (p *Participant) connectionEnded(st webrtc.PeerConnectionState) {
	switch {
	case !p.offerless:
	case st == webrtc.PeerConnectionStateDisconnected, st == webrtc.PeerConnectionStateFailed, st == webrtc.PeerConnectionStateClosed:
		p.log.Info("connection ended", "state", st.String())
		go p.Close(livekit.DisconnectReason_CONNECTION_TIMEOUT, false)
	}
}

// setActive marks the participant ACTIVE once a peer connection is up.
func (p *Participant) setActive() {
	p.mu.Lock()
	if p.state != livekit.ParticipantInfo_JOINED {
		p.mu.Unlock()
		return
	}
	p.state = livekit.ParticipantInfo_ACTIVE
	p.version++
	p.mu.Unlock()
	p.room.broadcastParticipant(p)
}

// SignalLost is called by signaling when the client's connection dropped
// without a leave: the participant stays for the room's participant timeout
// (its media keeps flowing) and is removed unless it rejoins first.
func (p *Participant) SignalLost() {
	timeout := p.room.params.ParticipantTimeout
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signalLost != nil || p.closed.Load() {
		return
	}
	p.log.Info("signal connection lost, waiting for the client", "timeout", timeout)
	p.signalLost = time.AfterFunc(timeout, func() {
		p.Close(livekit.DisconnectReason_SIGNAL_CLOSE, false)
	})
}

// Close removes the participant from its room, ends its tracks and peer
// connections. With notify, the client is told to leave first.
func (p *Participant) Close(reason livekit.DisconnectReason, notify bool) {
	p.closeOnce.Do(func() {
		p.log.Info("participant leaving", "reason", reason.String())
		if notify && p.signal != nil {
			p.signal.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{
				Leave: leaveFor(reason),
			}})
		}
		p.closed.Store(true)
		p.mu.Lock()
		p.state = livekit.ParticipantInfo_DISCONNECTED
		p.disconnect = reason
		p.version++
		if p.signalLost != nil {
			p.signalLost.Stop()
		}
		p.mu.Unlock()
		p.sub.close()
		p.pub.close()
		p.room.removeParticipant(p)
		if p.signal != nil {
			p.signal.CloseSignal()
		}
	})
}

// leaveFor is the leave request a client gets when the server removes it:
// after a server shutdown it may come back (to this node once restarted, or
// another), otherwise it must not.
func leaveFor(reason livekit.DisconnectReason) *livekit.LeaveRequest {
	if reason == livekit.DisconnectReason_SERVER_SHUTDOWN {
		return &livekit.LeaveRequest{Reason: reason, Action: livekit.LeaveRequest_RECONNECT, CanReconnect: true}
	}
	return &livekit.LeaveRequest{Reason: reason, Action: livekit.LeaveRequest_DISCONNECT}
}

// HandleTrickle adds a remote ICE candidate (JSON RTCIceCandidateInit).
func (p *Participant) HandleTrickle(target livekit.SignalTarget, candidateJSON string) error {
	init, err := parseCandidate(candidateJSON)
	if err != nil {
		return err
	}
	c, err := p.conn(target)
	if err != nil {
		return err
	}
	return c.addCandidate(init)
}

// sendTrickle sends one of our candidates to the client.
func (p *Participant) sendTrickle(target livekit.SignalTarget, c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	js, err := marshalCandidate(c.ToJSON())
	if err != nil {
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Trickle{
		Trickle: &livekit.TrickleRequest{CandidateInit: js, Target: target},
	}})
}
