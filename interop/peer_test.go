package interop

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

const (
	// eventTimeout bounds every wait for one signaling-driven event.
	eventTimeout = 5 * time.Second
	// mediaTimeout bounds waits that need ICE/DTLS or media to flow first.
	mediaTimeout = 10 * time.Second
	// leakTimeout is how long the SDK gets to wind down its goroutines after Disconnect
	// (RTCEngine.Close tears the peer connections down on a goroutine of its own).
	leakTimeout = 5 * time.Second
)

// knownLongLived lists goroutines that outlive a disconnected Room by design. None are
// known for server-sdk-go v2.13.0 with pion/webrtc v4.2.11: every goroutine the SDK starts
// (signal reader, RTCP readers, sample writers, the async RTCEngine.Close) ends once the
// peer connections and the WebSocket are closed. Add an entry here, with the reason, only
// after seeing it persist against a correct server.
var knownLongLived = []goleak.Option{}

// checkLeaks fails t if goroutines started during t are still running after t's other
// cleanups. It must be registered before anything that starts goroutines (setup does it).
func checkLeaks(t *testing.T) {
	t.Helper()
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// RoomServiceClient uses http.DefaultTransport: its idle keep-alive connections
		// each hold a read and a write goroutine.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		opts := append([]goleak.Option{current}, knownLongLived...)
		deadline := time.Now().Add(leakTimeout)
		for {
			err := goleak.Find(opts...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines still running %s after %s ended: %v", leakTimeout, t.Name(), err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// subTrack is one remote track a peer subscribed to, with a goroutine reading its RTP.
type subTrack struct {
	SID          string // track SID (TR_...)
	From         string // publisher identity
	FromSID      string // publisher SID (PA_...)
	Kind         lksdk.TrackKind
	Track        *webrtc.TrackRemote
	SubscribedAt time.Time

	Packets atomic.Int64
	ended   *once // closed when ReadRTP failed (the receiver was stopped or the PC closed)
	readErr atomic.Value
}

// Ended is closed when reading the track's RTP stopped.
func (s *subTrack) Ended() <-chan struct{} { return s.ended.C() }

// dataMsg is one user data packet a peer received.
type dataMsg struct {
	Payload []byte
	Topic   string
	Sender  string
}

// metaChange is one OnMetadataChanged callback.
type metaChange struct {
	Identity string
	Metadata string
}

// muteChange is one OnTrackMuted/OnTrackUnmuted callback.
type muteChange struct {
	Identity string
	TrackSID string
	Muted    bool
}

// peer is one SDK participant plus channels fed by its callbacks. Channel sends never
// block an SDK goroutine: buffers are large and an overflow is reported as a test error.
type peer struct {
	t        *testing.T
	Identity string
	Room     *lksdk.Room

	// onPacket, if set before connecting, sees every RTP packet of every subscribed track
	// on that track's reader goroutine.
	onPacket func(st *subTrack, pkt *rtp.Packet)

	Subscribed      chan *subTrack
	Unsubscribed    chan string // track SID
	Published       chan string // remote track SID (OnTrackPublished)
	Data            chan dataMsg
	Metadata        chan metaChange
	Mutes           chan muteChange
	RoomMetadata    chan string
	Joined          chan string // remote identity (OnParticipantConnected)
	Left            chan string // remote identity (OnParticipantDisconnected)
	Disconnected    *once
	disconnectMu    sync.Mutex
	disconnectCause lksdk.DisconnectionReason
}

// DisconnectReason returns the reason given to OnDisconnectedWithReason.
func (p *peer) DisconnectReason() lksdk.DisconnectionReason {
	p.disconnectMu.Lock()
	defer p.disconnectMu.Unlock()
	return p.disconnectCause
}

func newPeer(t *testing.T, identity string) *peer {
	return &peer{
		t:            t,
		Identity:     identity,
		Subscribed:   make(chan *subTrack, 16),
		Unsubscribed: make(chan string, 16),
		Published:    make(chan string, 16),
		Data:         make(chan dataMsg, 64),
		Metadata:     make(chan metaChange, 16),
		Mutes:        make(chan muteChange, 16),
		RoomMetadata: make(chan string, 16),
		Joined:       make(chan string, 16),
		Left:         make(chan string, 16),
		Disconnected: newOnce(),
	}
}

func send[T any](t *testing.T, ch chan T, v T, what string) {
	select {
	case ch <- v:
	default:
		t.Errorf("event buffer full, dropped %s event", what)
	}
}

func (p *peer) callbacks() *lksdk.RoomCallback {
	return &lksdk.RoomCallback{
		OnDisconnectedWithReason: func(reason lksdk.DisconnectionReason) {
			p.disconnectMu.Lock()
			p.disconnectCause = reason
			p.disconnectMu.Unlock()
			p.Disconnected.Fire()
		},
		OnParticipantConnected: func(rp *lksdk.RemoteParticipant) {
			send(p.t, p.Joined, rp.Identity(), "participant connected")
		},
		OnParticipantDisconnected: func(rp *lksdk.RemoteParticipant) {
			send(p.t, p.Left, rp.Identity(), "participant disconnected")
		},
		OnRoomMetadataChanged: func(metadata string) {
			send(p.t, p.RoomMetadata, metadata, "room metadata")
		},
		ParticipantCallback: lksdk.ParticipantCallback{
			OnTrackSubscribed: p.onTrackSubscribed,
			OnTrackUnsubscribed: func(_ *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
				send(p.t, p.Unsubscribed, pub.SID(), "track unsubscribed")
			},
			OnTrackPublished: func(pub *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
				send(p.t, p.Published, pub.SID(), "track published")
			},
			OnDataPacket: func(data lksdk.DataPacket, params lksdk.DataReceiveParams) {
				if u, ok := data.(*lksdk.UserDataPacket); ok {
					send(p.t, p.Data, dataMsg{Payload: u.Payload, Topic: u.Topic, Sender: params.SenderIdentity}, "data")
				}
			},
			OnMetadataChanged: func(_ string, part lksdk.Participant) {
				send(p.t, p.Metadata, metaChange{Identity: part.Identity(), Metadata: part.Metadata()}, "metadata")
			},
			OnTrackMuted: func(pub lksdk.TrackPublication, part lksdk.Participant) {
				send(p.t, p.Mutes, muteChange{Identity: part.Identity(), TrackSID: pub.SID(), Muted: true}, "track muted")
			},
			OnTrackUnmuted: func(pub lksdk.TrackPublication, part lksdk.Participant) {
				send(p.t, p.Mutes, muteChange{Identity: part.Identity(), TrackSID: pub.SID(), Muted: false}, "track unmuted")
			},
		},
	}
}

func (p *peer) onTrackSubscribed(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	st := &subTrack{
		SID:          pub.SID(),
		From:         rp.Identity(),
		FromSID:      rp.SID(),
		Kind:         pub.Kind(),
		Track:        track,
		SubscribedAt: time.Now(),
		ended:        newOnce(),
	}
	go func() {
		defer st.ended.Fire()
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				st.readErr.Store(err)
				return
			}
			st.Packets.Add(1)
			if p.onPacket != nil {
				p.onPacket(st, pkt)
			}
		}
	}()
	send(p.t, p.Subscribed, st, "track subscribed")
}

// connect joins room as identity with a token minted from the dev key (roomJoin grant,
// auto-subscribe on). The peer is disconnected when the test ends.
func connect(t *testing.T, room, identity string) *peer {
	t.Helper()
	return connectPeer(t, newPeer(t, identity), room)
}

// connectPeer joins room with a peer prepared by newPeer (e.g. with onPacket set).
func connectPeer(t *testing.T, p *peer, room string) *peer {
	t.Helper()
	r, err := lksdk.ConnectToRoom(srv.wsURL, lksdk.ConnectInfo{
		APIKey:              apiKey,
		APISecret:           apiSecret,
		RoomName:            room,
		ParticipantIdentity: p.Identity,
		ParticipantName:     p.Identity,
	}, p.callbacks())
	if err != nil {
		t.Fatalf("%s: ConnectToRoom(%s, room %q): %v", p.Identity, srv.wsURL, room, err)
	}
	p.Room = r
	t.Cleanup(r.Disconnect)

	if got := r.LocalParticipant.Identity(); got != p.Identity {
		t.Errorf("%s: JoinResponse participant identity = %q", p.Identity, got)
	}
	if sid := r.LocalParticipant.SID(); !strings.HasPrefix(sid, "PA_") {
		t.Errorf("%s: JoinResponse participant sid = %q, want prefix PA_", p.Identity, sid)
	}
	if got := r.Name(); got != room {
		t.Errorf("%s: JoinResponse room name = %q, want %q", p.Identity, got, room)
	}
	return p
}

// waitSees waits until p knows every identity in others as a remote participant.
func (p *peer) waitSees(t *testing.T, others ...string) {
	t.Helper()
	ok := waitUntil(eventTimeout, func() bool {
		for _, o := range others {
			if p.Room.GetParticipantByIdentity(o) == nil {
				return false
			}
		}
		return true
	})
	if !ok {
		var have []string
		for _, rp := range p.Room.GetRemoteParticipants() {
			have = append(have, rp.Identity())
		}
		t.Fatalf("%s does not see %v within %s (sees %v)", p.Identity, others, eventTimeout, have)
	}
}

// nextSubscribed waits for p's next subscribed track.
func (p *peer) nextSubscribed(t *testing.T, timeout time.Duration) *subTrack {
	t.Helper()
	select {
	case st := <-p.Subscribed:
		return st
	case <-time.After(timeout):
		t.Fatalf("%s: no OnTrackSubscribed within %s", p.Identity, timeout)
		return nil
	}
}

// waitDisconnected waits for the server to disconnect p (OnDisconnectedWithReason).
func (p *peer) waitDisconnected(t *testing.T, timeout time.Duration) lksdk.DisconnectionReason {
	t.Helper()
	select {
	case <-p.Disconnected.C():
		return p.DisconnectReason()
	case <-time.After(timeout):
		t.Fatalf("%s: OnDisconnected did not fire within %s", p.Identity, timeout)
		return ""
	}
}

// dataChannelOpen reports whether pc has an open data channel with this label.
func dataChannelOpen(pc *webrtc.PeerConnection, label string) bool {
	if pc == nil {
		return false
	}
	for _, s := range pc.GetStats() {
		if dc, ok := s.(webrtc.DataChannelStats); ok && dc.Label == label && dc.State == webrtc.DataChannelStateOpen {
			return true
		}
	}
	return false
}

// waitDataReady waits until every peer's reliable data channels that exist so far are open.
// Sending: if the publisher connection was negotiated at join (JoinResponse
// subscriber_primary false), its "_reliable" channel must be open, since the SDK then drops
// packets sent before that; with subscriber_primary true the SDK negotiates the publisher
// on the first PublishDataPacket and waits for the channel itself. Receiving: if the server
// offered a subscriber connection with an m=application section, the server-created
// "_reliable" channel there must be open.
func waitDataReady(t *testing.T, peers ...*peer) {
	t.Helper()
	negotiatedOpen := func(pc *webrtc.PeerConnection) bool {
		if pc == nil {
			return true
		}
		rd := pc.RemoteDescription()
		if rd == nil || !strings.Contains(rd.SDP, "m=application") {
			return true
		}
		return dataChannelOpen(pc, "_reliable")
	}
	for _, p := range peers {
		lp := p.Room.LocalParticipant
		ok := waitUntil(mediaTimeout, func() bool {
			return negotiatedOpen(lp.GetPublisherPeerConnection()) && negotiatedOpen(lp.GetSubscriberPeerConnection())
		})
		if !ok {
			t.Fatalf("%s: reliable data channel(s) not open within %s", p.Identity, mediaTimeout)
		}
	}
}
