package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// RFC 6464 levels written by featLevelSource: loud speech with the V flag set,
// and digital silence.
const (
	featLoud   = 0x80 | 10
	featSilent = 127
)

// featAudioLevelOptions registers the RFC 6464 audio level extension for audio
// on the client's media engine, as browsers do.
func featAudioLevelOptions() client.Options {
	return client.Options{Configure: func(me *webrtc.MediaEngine, _ *interceptor.Registry) error {
		return me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio)
	}}
}

// featLevelSource sends Opus packets every 20 ms carrying an audio level
// extension whose byte can be changed while it runs.
type featLevelSource struct {
	track *webrtc.TrackLocalStaticRTP
	extID uint8
	level atomic.Uint32
	stop  chan struct{}
	done  chan struct{}
}

func featStartLevelSource(t *testing.T, track *webrtc.TrackLocalStaticRTP, extID uint8, level byte) *featLevelSource {
	s := &featLevelSource{track: track, extID: extID, stop: make(chan struct{}), done: make(chan struct{})}
	s.level.Store(uint32(level))
	go s.run()
	t.Cleanup(s.Stop)
	return s
}

func (s *featLevelSource) setLevel(level byte) { s.level.Store(uint32(level)) }

func (s *featLevelSource) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *featLevelSource) run() {
	defer close(s.done)
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	seq, ts := uint16(2000), uint32(9000)
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
		}
		hdr := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}
		if err := hdr.SetExtension(s.extID, []byte{byte(s.level.Load())}); err != nil {
			return
		}
		_ = s.track.WriteRTP(&rtp.Packet{Header: hdr, Payload: make([]byte, 60)})
		seq++
		ts += 960
	}
}

// featExtID returns the id the publisher connection negotiated for uri.
func featExtID(t *testing.T, sender *webrtc.RTPSender, uri string) uint8 {
	t.Helper()
	for _, ext := range sender.GetParameters().HeaderExtensions {
		if ext.URI == uri {
			return uint8(ext.ID)
		}
	}
	t.Fatalf("extension %s not negotiated: %+v", uri, sender.GetParameters().HeaderExtensions)
	return 0
}

// featMedia counts received packets per track id, summed over every
// remote track with that id (a resubscription yields a new remote track).
type featMedia struct {
	mu     sync.Mutex
	counts map[string]*atomic.Int64
}

func featCountMedia(c *client.Client) *featMedia {
	m := &featMedia{counts: map[string]*atomic.Int64{}}
	c.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		n := m.counter(tr.ID())
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	})
	return m
}

func (m *featMedia) counter(id string) *atomic.Int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.counts[id]
	if n == nil {
		n = &atomic.Int64{}
		m.counts[id] = n
	}
	return n
}

func (m *featMedia) packets(id string) int64 { return m.counter(id).Load() }

// expectStalled checks that no packet of track id arrives for a while
// (after a short settling delay for packets already in flight).
func (m *featMedia) expectStalled(t *testing.T, id, who string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	before := m.packets(id)
	time.Sleep(400 * time.Millisecond)
	if after := m.packets(id); after != before {
		t.Fatalf("%s still receives %s: %d -> %d packets", who, id, before, after)
	}
}

// expectFlowing checks that track id keeps arriving.
func (m *featMedia) expectFlowing(t *testing.T, id, who string, more int64) {
	t.Helper()
	before := m.packets(id)
	eventually(t, 10*time.Second, who+" receiving "+id, func() bool { return m.packets(id) >= before+more })
}

// featSend sends a signal request or fails the test.
func featSend(t *testing.T, c *client.Client, req *livekit.SignalRequest) {
	t.Helper()
	if err := c.Send(req); err != nil {
		t.Fatalf("send %T: %v", req.Message, err)
	}
}

// featRTCURL builds a /rtc URL as signaling/client does, plus extra parameters.
func featRTCURL(t *testing.T, n *node, tok string, extra url.Values) string {
	t.Helper()
	u, err := url.Parse(n.wsURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/rtc"
	q := u.Query()
	q.Set("protocol", "16")
	q.Set("sdk", "go-test")
	q.Set("access_token", tok)
	for k, vs := range extra {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// featDial opens a bare signal WebSocket; the test owns the connection.
func featDial(t *testing.T, rawURL string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.DialContext(ctxTimeout(t, 5*time.Second), rawURL, nil)
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// featExpectClosed reads until the server closes conn; it fails on a
// timeout or on a close that is not normal.
func featExpectClosed(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Fatalf("want a normal close frame, got %v", err)
		}
		return
	}
}

// featSpeaker finds a participant's entry in a SpeakersChanged message.
func featSpeaker(m *livekit.SignalResponse, sid string) *livekit.SpeakerInfo {
	for _, s := range m.GetSpeakersChanged().GetSpeakers() {
		if s.Sid == sid {
			return s
		}
	}
	return nil
}

func TestActiveSpeakers(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	alice := n.join(t, "speakers", "alice", featAudioLevelOptions())
	bob := n.join(t, "speakers", "bob", client.Options{})
	tr := newAudioTrack(t, "mic")
	_, sender, err := alice.Publish(ctxTimeout(t, 10*time.Second), tr, &livekit.AddTrackRequest{
		Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE,
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	src := featStartLevelSource(t, tr, featExtID(t, sender, sdp.AudioLevelURI), featLoud)
	sid := alice.Join.Participant.Sid

	ctx := ctxTimeout(t, 10*time.Second)
	msg, err := bob.WaitFor(ctx, func(m *livekit.SignalResponse) bool {
		s := featSpeaker(m, sid)
		return s != nil && s.Active
	})
	if err != nil {
		t.Fatalf("bob never saw alice speaking: %v", err)
	}
	if s := featSpeaker(msg, sid); s.Level <= 0 || s.Level > 1 {
		t.Fatalf("active speaker level %v, want in (0, 1]", s.Level)
	}
	mark := bob.Mark()
	src.setLevel(featSilent)
	if _, err := bob.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		s := featSpeaker(m, sid)
		return s != nil && !s.Active
	}); err != nil {
		t.Fatalf("bob never saw alice stop speaking: %v", err)
	}
}

func TestResumeRefusedThenRejoin(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "resume"
	old := n.join(t, room, "alice", client.Options{})
	bob := n.join(t, room, "bob", client.Options{})
	oldSid := old.Join.Participant.Sid
	old.Drop() // the network went away; alice tries to resume

	conn := featDial(t, featRTCURL(t, n, token(t, room, "alice", nil), url.Values{"reconnect": {"1"}, "sid": {oldSid}}))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	kind, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("no answer to the resume: %v", err)
	}
	msg := &livekit.SignalResponse{}
	if kind != websocket.BinaryMessage || proto.Unmarshal(data, msg) != nil {
		t.Fatalf("resume answer: frame type %d, %q", kind, data)
	}
	leave := msg.GetLeave()
	if leave == nil || leave.Action != livekit.LeaveRequest_RECONNECT || !leave.CanReconnect {
		t.Fatalf("resume answered with %v, want leave{action: RECONNECT, canReconnect: true}", msg)
	}
	featExpectClosed(t, conn)
	if got := n.rooms.Room(room).Participant("alice"); got == nil || string(got.ID()) != oldSid {
		t.Fatalf("the refused resume changed the room: alice is %v", got)
	}

	mark := bob.Mark()
	fresh := n.join(t, room, "alice", client.Options{})
	newSid := fresh.Join.Participant.Sid
	if newSid == oldSid {
		t.Fatal("the rejoin kept the old sid")
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := bob.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		for _, p := range m.GetUpdate().GetParticipants() {
			if p.Sid == oldSid && p.State == livekit.ParticipantInfo_DISCONNECTED {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("bob not told the old alice left: %v", err)
	}
	if _, err := bob.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		for _, p := range m.GetUpdate().GetParticipants() {
			if p.Sid == newSid && p.Identity == "alice" && p.State != livekit.ParticipantInfo_DISCONNECTED {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("bob not told the new alice joined: %v", err)
	}
	if got := n.rooms.Room(room).Participant("alice"); got == nil || string(got.ID()) != newSid {
		t.Fatalf("alice in the room is %v, want %s", got, newSid)
	}
}

func TestJSONSignalMode(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	conn := featDial(t, featRTCURL(t, n, token(t, "json", "jay", nil), nil))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	kind, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("no join response: %v", err)
	}
	join := &livekit.SignalResponse{}
	if kind != websocket.BinaryMessage || proto.Unmarshal(data, join) != nil || join.GetJoin() == nil {
		t.Fatalf("first frame: type %d %q, want a binary join response", kind, data)
	}
	// protojson writes int64 as a JSON string; JS clients send it that way.
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"ping": "123"}`)); err != nil {
		t.Fatal(err)
	}
	sawText := false
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("no pong: %v", err)
		}
		if kind == websocket.BinaryMessage {
			if sawText {
				t.Fatal("binary frame after the switch to JSON")
			}
			continue // queued before the ping was read
		}
		sawText = true
		resp := &livekit.SignalResponse{}
		if err := protojson.Unmarshal(data, resp); err != nil {
			t.Fatalf("text frame is not a JSON SignalResponse: %v: %s", err, data)
		}
		if resp.GetPong() == 0 {
			continue
		}
		if resp.GetPong() != 123 {
			t.Fatalf("pong %d, want 123", resp.GetPong())
		}
		var raw map[string]any
		if err := json.Unmarshal(data, &raw); err != nil || raw["pong"] != "123" {
			t.Fatalf("pong not written as protojson (int64 as a string): %s", data)
		}
		break
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"leave": {"reason": "CLIENT_INITIATED"}}`)); err != nil {
		t.Fatal(err)
	}
	featExpectClosed(t, conn)
	eventually(t, 3*time.Second, "jay removed", func() bool {
		r := n.rooms.Room("json")
		return r == nil || r.Participant("jay") == nil
	})
}

func TestDuplicateIdentityReplacesFirst(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "dup"
	first := n.join(t, room, "alice", client.Options{})
	n.join(t, room, "bob", client.Options{})
	second := n.join(t, room, "alice", client.Options{})

	ctx := ctxTimeout(t, 5*time.Second)
	msg, err := first.WaitFor(ctx, func(m *livekit.SignalResponse) bool { return m.GetLeave() != nil })
	if err != nil {
		t.Fatalf("first alice got no leave: %v", err)
	}
	if r := msg.GetLeave().Reason; r != livekit.DisconnectReason_DUPLICATE_IDENTITY {
		t.Fatalf("leave reason %s, want DUPLICATE_IDENTITY", r)
	}
	var ce *websocket.CloseError
	if err := first.WaitClosed(ctx); !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("first alice's socket not closed by the server: %v", err)
	}
	var alices []string
	for _, p := range n.rooms.Room(room).Participants() {
		if p.Identity() == "alice" {
			alices = append(alices, string(p.ID()))
		}
	}
	if len(alices) != 1 || alices[0] != second.Join.Participant.Sid {
		t.Fatalf("alices in the room %v, want only %s", alices, second.Join.Participant.Sid)
	}
	// The second connection is fully working.
	mark := second.Mark()
	featSend(t, second, &livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 42}})
	if _, err := second.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool { return m.GetPong() == 42 }); err != nil {
		t.Fatalf("second alice: %v", err)
	}
}

// TestDuplicateIdentityConcurrentJoins joins one identity several times at
// once: every join gets its join response, exactly one participant with the
// identity remains, and every other connection is told to leave and closed.
func TestDuplicateIdentityConcurrentJoins(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room, joins = "dup-concurrent", 4
	n.join(t, room, "bob", client.Options{})
	clients := make([]*client.Client, joins)
	errs := make([]error, joins)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = client.Connect(ctxTimeout(t, 10*time.Second), n.wsURL, token(t, room, "alice", nil), client.Options{})
		}()
	}
	wg.Wait()
	for i, c := range clients {
		if errs[i] != nil {
			t.Fatalf("join %d: %v", i, errs[i])
		}
		t.Cleanup(c.Close)
	}
	r := n.rooms.Room(room)
	var alices []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		alices = alices[:0]
		for _, p := range r.Participants() {
			if p.Identity() == "alice" {
				alices = append(alices, string(p.ID()))
			}
		}
		if len(alices) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d concurrent joins of alice left %d alices in the room: %v", joins, len(alices), alices)
		}
		time.Sleep(20 * time.Millisecond)
	}
	winner := r.Participant("alice")
	if winner == nil || string(winner.ID()) != alices[0] {
		t.Fatalf("room's alice by identity %v, in the list %v", winner, alices)
	}
	for _, c := range clients {
		if c.Join.Participant.Sid == alices[0] {
			continue
		}
		ctx := ctxTimeout(t, 5*time.Second)
		if _, err := c.WaitFor(ctx, func(m *livekit.SignalResponse) bool {
			return m.GetLeave().GetReason() == livekit.DisconnectReason_DUPLICATE_IDENTITY
		}); err != nil {
			t.Errorf("replaced alice %s got no DUPLICATE_IDENTITY leave: %v", c.Join.Participant.Sid, err)
		}
		if err := c.WaitClosed(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("replaced alice %s still connected: %v", c.Join.Participant.Sid, err)
		}
	}
}

func TestRoomClosesAfterLastDeparture(t *testing.T) {
	checkLeaks(t)
	const departure = 500 * time.Millisecond
	n := startNode(t, nodeOptions{departureTimeout: departure})
	cases := []struct {
		name   string
		stay   bool // bob stays while alice leaves
		closes bool
	}{
		{name: "everyone left", stay: false, closes: true},
		{name: "one still there", stay: true, closes: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			room := livekit.RoomName("lifecycle-" + tc.name)
			alice := n.join(t, string(room), "alice", client.Options{})
			bob := n.join(t, string(room), "bob", client.Options{})
			r := n.rooms.Room(room)
			alice.Close()
			if !tc.stay {
				bob.Close()
			}
			left := time.Now()
			if tc.closes {
				eventually(t, 3*time.Second, "the empty room to close", func() bool { return n.rooms.Room(room) == nil })
				if el := time.Since(left); el < departure/2 {
					t.Fatalf("room closed %s after the last departure, before the %s departure timeout", el, departure)
				}
				select {
				case <-r.Done():
				default:
					t.Fatal("room forgotten but not closed")
				}
				return
			}
			eventually(t, 3*time.Second, "alice gone", func() bool { return r.Participant("alice") == nil })
			time.Sleep(3 * departure)
			if n.rooms.Room(room) != r {
				t.Fatal("room with a participant was closed")
			}
			select {
			case <-r.Done():
				t.Fatal("room with a participant was closed")
			default:
			}
		})
	}
}

func TestTrackSettingDisablePausesSubscription(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	for _, video := range []bool{true, false} {
		kind := map[bool]string{true: "video", false: "audio"}[video]
		t.Run(kind, func(t *testing.T) {
			room := "settings-" + kind
			pub := n.join(t, room, "alice", client.Options{})
			bob := n.join(t, room, "bob", client.Options{})
			carol := n.join(t, room, "carol", client.Options{})
			bobMedia, carolMedia := featCountMedia(bob), featCountMedia(carol)
			tr := newAudioTrack(t, "mic")
			req := &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE}
			if video {
				tr = newVideoTrack(t, "cam")
				req = &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA}
			}
			info, _, err := pub.Publish(ctxTimeout(t, 10*time.Second), tr, req)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			startSource(t, tr, video)
			bobMedia.expectFlowing(t, info.Sid, "bob", 20)

			setting := func(disabled bool) {
				featSend(t, bob, &livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{
					TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{info.Sid}, Disabled: disabled},
				}})
			}
			serverBob := n.rooms.Room(livekit.RoomName(room)).Participant("bob")
			setting(true)
			eventually(t, 3*time.Second, "bob's downtrack paused", func() bool {
				dt := serverBob.DownTrack(livekit.TrackID(info.Sid))
				return dt != nil && dt.Paused()
			})
			up, ok := serverBob.DownTrack(livekit.TrackID(info.Sid)).Track().(*sfu.UpTrack)
			if !ok {
				t.Fatal("downtrack does not forward an UpTrack")
			}
			upBefore, _ := up.Stats()
			bobMedia.expectStalled(t, info.Sid, "bob (disabled)")
			carolMedia.expectFlowing(t, info.Sid, "carol", 10)
			if upAfter, _ := up.Stats(); upAfter <= upBefore {
				t.Fatalf("the publisher's track stalled while bob had it disabled: %d -> %d", upBefore, upAfter)
			}
			if len(serverBob.SubscribedTracks()) != 1 {
				t.Fatalf("disabling unsubscribed bob: %v", serverBob.SubscribedTracks())
			}
			setting(false)
			bobMedia.expectFlowing(t, info.Sid, "bob (enabled again)", 20)
		})
	}
}

func TestSubscriptionPermission(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "perms"
	alice := n.join(t, room, "alice", client.Options{})
	bob := n.join(t, room, "bob", client.Options{})
	carol := n.join(t, room, "carol", client.Options{})
	bobMedia, carolMedia := featCountMedia(bob), featCountMedia(carol)
	info, _ := publishVideo(t, alice, "cam")
	bobMedia.expectFlowing(t, info.Sid, "bob", 20)
	carolMedia.expectFlowing(t, info.Sid, "carol", 20)
	aliceSid := alice.Join.Participant.Sid
	serverCarol := n.rooms.Room(room).Participant("carol")

	permUpdate := func(allowed bool) func(*livekit.SignalResponse) bool {
		return func(m *livekit.SignalResponse) bool {
			u := m.GetSubscriptionPermissionUpdate()
			return u != nil && u.ParticipantSid == aliceSid && u.TrackSid == info.Sid && u.Allowed == allowed
		}
	}
	mark := carol.Mark()
	bobMark := bob.Mark()
	featSend(t, alice, &livekit.SignalRequest{Message: &livekit.SignalRequest_SubscriptionPermission{
		SubscriptionPermission: &livekit.SubscriptionPermission{
			AllParticipants:  false,
			TrackPermissions: []*livekit.TrackPermission{{ParticipantIdentity: "bob", AllTracks: true}},
		},
	}})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := carol.WaitAfter(ctx, mark, permUpdate(false)); err != nil {
		t.Fatalf("carol not told she lost the track: %v", err)
	}
	eventually(t, 3*time.Second, "carol's subscription removed", func() bool { return len(serverCarol.SubscribedTracks()) == 0 })
	carolMedia.expectStalled(t, info.Sid, "carol (not permitted)")
	bobMedia.expectFlowing(t, info.Sid, "bob (permitted)", 20)
	if _, err := bob.WaitAfter(ctxTimeout(t, 100*time.Millisecond), bobMark, func(m *livekit.SignalResponse) bool {
		return m.GetSubscriptionPermissionUpdate() != nil
	}); err == nil {
		t.Fatal("bob, still permitted, got a permission update")
	}

	mark = carol.Mark()
	featSend(t, alice, &livekit.SignalRequest{Message: &livekit.SignalRequest_SubscriptionPermission{
		SubscriptionPermission: &livekit.SubscriptionPermission{AllParticipants: true},
	}})
	if _, err := carol.WaitAfter(ctx, mark, permUpdate(true)); err != nil {
		t.Fatalf("carol not told she may subscribe again: %v", err)
	}
	carolMedia.expectFlowing(t, info.Sid, "carol (permitted again)", 20)
	bobMedia.expectFlowing(t, info.Sid, "bob", 10)
}

func TestParticipantVersionsIncrease(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "versions"
	bob := n.join(t, room, "bob", client.Options{})
	yes := true
	alice, err := client.Connect(ctxTimeout(t, 10*time.Second), n.wsURL,
		token(t, room, "alice", func(g *auth.VideoGrant) { g.CanUpdateOwnMetadata = &yes }), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alice.Close)
	ctx := ctxTimeout(t, 10*time.Second)
	seen := func(what string, pred func(*livekit.ParticipantInfo) bool) {
		t.Helper()
		if _, err := bob.WaitFor(ctx, participantUpdate("alice", pred)); err != nil {
			t.Fatalf("bob never saw alice %s: %v", what, err)
		}
	}

	info, _ := publishVideo(t, alice, "cam")
	seen("publish", func(p *livekit.ParticipantInfo) bool { return len(p.Tracks) == 1 })
	for _, muted := range []bool{true, false} {
		featSend(t, alice, &livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{
			Mute: &livekit.MuteTrackRequest{Sid: info.Sid, Muted: muted},
		}})
		seen("mute", func(p *livekit.ParticipantInfo) bool { return len(p.Tracks) == 1 && p.Tracks[0].Muted == muted })
	}
	for _, md := range []string{"one", "two"} {
		featSend(t, alice, &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{
			UpdateMetadata: &livekit.UpdateParticipantMetadata{Metadata: md},
		}})
		seen("metadata "+md, func(p *livekit.ParticipantInfo) bool { return p.Metadata == md })
	}

	var versions []uint32
	_, _ = bob.WaitFor(ctxTimeout(t, 10*time.Millisecond), participantUpdate("alice", func(p *livekit.ParticipantInfo) bool {
		versions = append(versions, p.Version)
		return false
	}))
	t.Logf("alice's versions as bob saw them: %v", versions)
	if len(versions) < 5 {
		t.Fatalf("only %d updates of alice: %v", len(versions), versions)
	}
	for i := 1; i < len(versions); i++ {
		if versions[i] <= versions[i-1] {
			t.Fatalf("alice's versions as bob saw them are not strictly increasing: %v", versions)
		}
	}
}
