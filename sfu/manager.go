package sfu

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
)

// Room timeouts used where none is given (zero): a room with nobody in it
// always closes eventually, as in LiveKit.
const (
	DefaultEmptyTimeout     = 5 * time.Minute
	DefaultDepartureTimeout = 20 * time.Second
)

// ManagerParams configures the node's room manager.
type ManagerParams struct {
	Transport  *Transport
	ServerInfo *livekit.ServerInfo
	ICEServers []*livekit.ICEServer
	// Room defaults; a CreateRoom request may override the timeouts.
	// Zero (or negative) timeouts mean DefaultEmptyTimeout and
	// DefaultDepartureTimeout: there is no "never".
	EmptyTimeout       time.Duration
	DepartureTimeout   time.Duration
	ParticipantTimeout time.Duration
	MaxParticipants    int
	// QualityInterval is how often clients hear everyone's connection
	// quality (default 5 s).
	QualityInterval time.Duration
	// Limits bound what clients may send; zero fields take DefaultLimits.
	Limits Limits
	Logger *slog.Logger
}

// Manager holds the rooms of this node.
type Manager struct {
	params ManagerParams
	mu     sync.Mutex
	rooms  map[livekit.RoomName]*Room
	closed bool
}

// NewManager creates an empty room manager.
func NewManager(p ManagerParams) *Manager {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.EmptyTimeout <= 0 {
		p.EmptyTimeout = DefaultEmptyTimeout
	}
	if p.DepartureTimeout <= 0 {
		p.DepartureTimeout = DefaultDepartureTimeout
	}
	return &Manager{params: p, rooms: map[livekit.RoomName]*Room{}}
}

// RoomOptions overrides room defaults when a room is created.
type RoomOptions struct {
	EmptyTimeout     time.Duration
	DepartureTimeout time.Duration
	MaxParticipants  int
	Metadata         string
}

// GetOrCreateRoom returns the room with that name, creating it with the
// given options (zero values keep the defaults) if it does not exist.
func (m *Manager) GetOrCreateRoom(name livekit.RoomName, opts RoomOptions) (*Room, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrRoomClosed
	}
	if r := m.rooms[name]; r != nil {
		return r, false, nil
	}
	if err := m.params.Limits.checkRooms(len(m.rooms)); err != nil {
		return nil, false, err
	}
	if err := m.params.Limits.CheckMetadata(nil, &opts.Metadata, nil); err != nil {
		return nil, false, err
	}
	p := RoomParams{
		Name: name, Transport: m.params.Transport, ServerInfo: m.params.ServerInfo,
		ICEServers: m.params.ICEServers, EmptyTimeout: m.params.EmptyTimeout,
		DepartureTimeout: m.params.DepartureTimeout, ParticipantTimeout: m.params.ParticipantTimeout,
		MaxParticipants: m.params.MaxParticipants, Metadata: opts.Metadata, Logger: m.params.Logger,
		QualityInterval: m.params.QualityInterval, Limits: m.params.Limits,
	}
	if opts.EmptyTimeout > 0 {
		p.EmptyTimeout = opts.EmptyTimeout
	}
	if opts.DepartureTimeout > 0 {
		p.DepartureTimeout = opts.DepartureTimeout
	}
	if opts.MaxParticipants > 0 {
		p.MaxParticipants = opts.MaxParticipants
	}
	p.OnClose = m.forget
	r := newRoom(p)
	m.rooms[name] = r
	m.params.Logger.Info("room created", "room", name, "sid", r.sid)
	return r, true, nil
}

func (m *Manager) forget(r *Room) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rooms[r.params.Name] == r {
		delete(m.rooms, r.params.Name)
	}
	m.params.Logger.Info("room closed", "room", r.params.Name)
}

// Room returns the room with that name, or nil.
func (m *Manager) Room(name livekit.RoomName) *Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rooms[name]
}

// Rooms lists the rooms, all of them or those named, sorted by name.
func (m *Manager) Rooms(names []string) []*Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Room, 0, len(m.rooms))
	for name, r := range m.rooms {
		if len(names) > 0 && !contains(names, string(name)) {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].params.Name < out[j].params.Name })
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// DeleteRoom disconnects everyone in the room and closes it.
func (m *Manager) DeleteRoom(name livekit.RoomName) error {
	r := m.Room(name)
	if r == nil {
		return fmt.Errorf("room %q: %w", name, ErrRoomNotFound)
	}
	r.Close(livekit.DisconnectReason_ROOM_DELETED)
	return nil
}

// Close closes every room; no room can be created afterwards.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	rooms := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	for _, r := range rooms {
		r.Close(livekit.DisconnectReason_SERVER_SHUTDOWN)
	}
}
