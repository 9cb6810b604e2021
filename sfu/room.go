package sfu

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// RoomParams configures a room.
type RoomParams struct {
	Name               livekit.RoomName
	Transport          *Transport
	ServerInfo         *livekit.ServerInfo
	ICEServers         []*livekit.ICEServer
	EmptyTimeout       time.Duration // close if nobody joined within this
	DepartureTimeout   time.Duration // close this long after the last participant left
	ParticipantTimeout time.Duration // remove a participant whose signal vanished
	MaxParticipants    int
	QualityInterval    time.Duration // connectionQuality updates (default 5 s)
	Metadata           string
	Limits             Limits // what a client may send (zero fields: defaults)
	Logger             *slog.Logger
	// OnClose is called once when the room closes.
	OnClose func(*Room)
}

// Room is a set of participants that see and hear each other.
type Room struct {
	params     RoomParams
	sid        livekit.RoomID
	serverInfo *livekit.ServerInfo
	created    time.Time
	log        *slog.Logger
	speakers   *SpeakerDetector

	mu           sync.Mutex
	metadata     string
	participants map[livekit.ParticipantID]*Participant
	byIdentity   map[livekit.ParticipantIdentity]*Participant
	closed       bool
	idleTimer    *time.Timer
	done         chan struct{}
}

func newRoom(p RoomParams) *Room {
	r := &Room{
		params:       p,
		sid:          livekit.RoomID(NewID(RoomPrefix)),
		serverInfo:   p.ServerInfo,
		created:      time.Now(),
		metadata:     p.Metadata,
		participants: map[livekit.ParticipantID]*Participant{},
		byIdentity:   map[livekit.ParticipantIdentity]*Participant{},
		done:         make(chan struct{}),
		speakers:     NewSpeakerDetector(SpeakerParams{}, time.Now),
	}
	r.log = p.Logger.With("room", p.Name)
	r.armIdleTimer(p.EmptyTimeout)
	go r.speakerLoop()
	go r.qualityLoop()
	return r
}

// Name returns the room's name.
func (r *Room) Name() livekit.RoomName { return r.params.Name }

// ID returns the room's sid (RM_...).
func (r *Room) ID() livekit.RoomID { return r.sid }

// Done is closed when the room has closed.
func (r *Room) Done() <-chan struct{} { return r.done }

// Info returns the room as the API and clients see it.
// The participants are asked after the room's mutex is released: no lock
// of a participant is ever taken under the room's.
func (r *Room) Info() *livekit.Room {
	r.mu.Lock()
	parts := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		parts = append(parts, p)
	}
	metadata := r.metadata
	r.mu.Unlock()
	publishers := 0
	for _, p := range parts {
		if p.pub.trackCount() > 0 {
			publishers++
		}
	}
	return &livekit.Room{
		Sid: string(r.sid), Name: string(r.params.Name),
		EmptyTimeout:     uint32(r.params.EmptyTimeout / time.Second),
		DepartureTimeout: uint32(r.params.DepartureTimeout / time.Second),
		MaxParticipants:  uint32(r.params.MaxParticipants),
		CreationTime:     r.created.Unix(), CreationTimeMs: r.created.UnixMilli(),
		Metadata: metadata, NumParticipants: uint32(len(parts)),
		NumPublishers: uint32(publishers),
	}
}

// Join adds a participant and returns it with the join response to send
// first; call Start on the participant once that response is on its way.
// A participant with the same identity is replaced.
func (r *Room) Join(params ParticipantParams) (*Participant, *livekit.JoinResponse, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, ErrRoomClosed
	}
	old := r.byIdentity[params.Identity]
	count := len(r.participants)
	if old != nil {
		count--
	}
	if r.params.MaxParticipants > 0 && count >= r.params.MaxParticipants {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("%d participants: %w", count, ErrRoomFull)
	}
	r.mu.Unlock()
	if old != nil {
		old.Close(livekit.DisconnectReason_DUPLICATE_IDENTITY, true)
	}
	p, err := newParticipant(r, params)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		p.Close(livekit.DisconnectReason_ROOM_DELETED, false)
		return nil, nil, ErrRoomClosed
	}
	// Another join of this identity may have completed while p was being
	// created: the latest join wins, as for old above.
	raced := r.byIdentity[p.identity]
	if raced == nil && r.params.MaxParticipants > 0 && len(r.participants) >= r.params.MaxParticipants {
		r.mu.Unlock()
		p.Close(livekit.DisconnectReason_JOIN_FAILURE, false)
		return nil, nil, fmt.Errorf("%d participants: %w", len(r.participants), ErrRoomFull)
	}
	r.participants[p.id] = p
	r.byIdentity[p.identity] = p
	r.stopIdleTimerLocked()
	others := make([]*Participant, 0, len(r.participants))
	for _, o := range r.participants {
		if o != p && o != raced {
			others = append(others, o)
		}
	}
	r.mu.Unlock()
	if raced != nil {
		raced.Close(livekit.DisconnectReason_DUPLICATE_IDENTITY, true)
	}
	return p, r.joinResponse(p, others), nil
}

func (r *Room) joinResponse(p *Participant, others []*Participant) *livekit.JoinResponse {
	infos := make([]*livekit.ParticipantInfo, 0, len(others))
	for _, o := range others {
		if !o.hidden() {
			infos = append(infos, o.Info())
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].JoinedAtMs < infos[j].JoinedAtMs })
	return &livekit.JoinResponse{
		Room:              r.Info(),
		Participant:       p.Info(),
		OtherParticipants: infos,
		ServerVersion:     r.serverInfo.Version,
		ServerRegion:      r.serverInfo.Region,
		ServerInfo:        proto.Clone(r.serverInfo).(*livekit.ServerInfo),
		IceServers:        r.params.ICEServers,
		SubscriberPrimary: true,
		PingTimeout:       int32(PingTimeout / time.Second),
		PingInterval:      int32(PingInterval / time.Second),
		ClientConfiguration: &livekit.ClientConfiguration{
			ResumeConnection: livekit.ClientConfigSetting_DISABLED,
		},
	}
}

// Start is called once the join response is queued for the client.
func (p *Participant) Start() { p.start() }

// Participants returns the room's participants.
func (r *Room) Participants() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].joinedAt.Before(out[j].joinedAt) })
	return out
}

// Participant finds a participant by identity.
func (r *Room) Participant(identity livekit.ParticipantIdentity) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byIdentity[identity]
}

func (r *Room) removeParticipant(p *Participant) {
	r.mu.Lock()
	if r.participants[p.id] != p {
		r.mu.Unlock()
		return
	}
	delete(r.participants, p.id)
	if r.byIdentity[p.identity] == p {
		delete(r.byIdentity, p.identity)
	}
	empty := len(r.participants) == 0
	if empty && !r.closed {
		r.armIdleTimerLocked(r.params.DepartureTimeout)
	}
	r.mu.Unlock()
	r.speakers.Remove(string(p.id))
	r.broadcastParticipant(p)
}

// broadcastParticipant sends a participant's current state to everyone in
// the room (hidden participants only to themselves).
func (r *Room) broadcastParticipant(p *Participant) {
	// Snapshot and queueing happen under the participant's update lock, so
	// every client sees its versions in increasing order.
	p.updateMu.Lock()
	defer p.updateMu.Unlock()
	info := p.Info()
	msg := &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{
		Update: &livekit.ParticipantUpdate{Participants: []*livekit.ParticipantInfo{info}},
	}}
	hidden := info.Permission.GetHidden()
	for _, o := range r.Participants() {
		if hidden && o != p {
			continue
		}
		o.send(msg)
	}
}

// broadcast sends a message to every participant.
func (r *Room) broadcast(msg *livekit.SignalResponse) {
	for _, o := range r.Participants() {
		o.send(msg)
	}
}

func (r *Room) armIdleTimer(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armIdleTimerLocked(d)
}

func (r *Room) armIdleTimerLocked(d time.Duration) {
	r.stopIdleTimerLocked()
	if d <= 0 {
		return
	}
	r.idleTimer = time.AfterFunc(d, func() {
		r.mu.Lock()
		idle := len(r.participants) == 0
		r.mu.Unlock()
		if idle {
			r.log.Info("closing idle room")
			r.Close(livekit.DisconnectReason_ROOM_CLOSED)
		}
	})
}

func (r *Room) stopIdleTimerLocked() {
	if r.idleTimer != nil {
		r.idleTimer.Stop()
		r.idleTimer = nil
	}
}

// SetMetadata changes the room's metadata and tells every participant.
func (r *Room) SetMetadata(md string) *livekit.Room {
	r.mu.Lock()
	r.metadata = md
	r.mu.Unlock()
	info := r.Info()
	r.broadcast(&livekit.SignalResponse{Message: &livekit.SignalResponse_RoomUpdate{
		RoomUpdate: &livekit.RoomUpdate{Room: info},
	}})
	return info
}

// Close disconnects everyone and closes the room.
func (r *Room) Close(reason livekit.DisconnectReason) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.stopIdleTimerLocked()
	r.mu.Unlock()
	for _, p := range r.Participants() {
		p.Close(reason, true)
	}
	close(r.done)
	if r.params.OnClose != nil {
		r.params.OnClose(r)
	}
}
