package signaling_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"github.com/twitchtv/twirp"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// limitCase is one limit: a node set low on it, and what a client does
// to go past it and sees then.
type limitCase struct {
	key  string
	opts nodeOptions
	run  func(t *testing.T, n *node)
}

// TestLimitErrors goes past every limit of a node, one at a time, and
// checks the client's error names the limit (its YAML key) and value:
// the table in the README's configuration section.
func TestLimitErrors(t *testing.T) {
	cases := []limitCase{
		{"room.max_participants", nodeOptions{maxParticipants: 1}, limitParticipants},
		{"limits.max_rooms", nodeOptions{sfuLimits: sfu.Limits{MaxRooms: 1}}, limitRooms},
		{"limits.max_tracks_per_participant", nodeOptions{sfuLimits: sfu.Limits{MaxTracksPerParticipant: 2}}, limitTracks},
		{"limits.max_simulcast_layers", nodeOptions{sfuLimits: sfu.Limits{MaxSimulcastLayers: 2}}, limitLayers},
		{"limits.max_track_name_length", nodeOptions{sfuLimits: sfu.Limits{MaxTrackNameLength: 8}}, limitTrackName},
		{"limits.max_name_length etc. (RoomService, token)", nodeOptions{sfuLimits: sfu.Limits{MaxNameLength: 8, MaxMetadataSize: 16, MaxAttributesSize: 16}}, limitMetadataAPI},
		{"limits.max_signal_message_size", nodeOptions{limits: signaling.Limits{MaxSignalMessageSize: 32 << 10}}, limitSignalSize},
		{"limits.max_data_packet_size", nodeOptions{sfuLimits: sfu.Limits{MaxDataPacketSize: 1000}}, limitDataSize},
		{"limits.data_packet_rate", nodeOptions{sfuLimits: sfu.Limits{DataPacketRate: 2, DataPacketBurst: 3}}, limitDataRate},
		{"limits.data_byte_rate", nodeOptions{sfuLimits: sfu.Limits{MaxDataPacketSize: 1500, DataByteRate: 1500}}, limitDataBytes},
		{"limits.max_whip_sessions", nodeOptions{limits: signaling.Limits{MaxWHIPSessions: 1}}, limitWHIP},
		{"limits.max_whep_sessions", nodeOptions{limits: signaling.Limits{MaxWHEPSessions: 1}}, limitWHEP},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			checkLeaks(t)
			tc.run(t, startNode(t, tc.opts))
		})
	}
}

// expectTwirp checks a Twirp error's code and words.
func expectTwirp(t *testing.T, err error, code twirp.ErrorCode, msg string) {
	t.Helper()
	var te twirp.Error
	if !errors.As(err, &te) || te.Code() != code || !strings.Contains(te.Msg(), msg) {
		t.Fatalf("got %v, want %s containing %q", err, code, msg)
	}
}

// expectJoinRefused checks /rtc refuses a token with status and words.
func expectJoinRefused(t *testing.T, n *node, tok string, status int, msg string) {
	t.Helper()
	_, err := client.Connect(ctxTimeout(t, 5*time.Second), n.wsURL, tok, client.Options{})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.Status != status || !strings.Contains(he.Body, msg) {
		t.Fatalf("join: got %v, want HTTP %d containing %q", err, status, msg)
	}
}

// expectRefused sends a request and waits for its LIMIT_EXCEEDED answer.
func expectRefused(t *testing.T, c *client.Client, req *livekit.SignalRequest, msg string) {
	t.Helper()
	mark := c.Mark()
	if err := c.Send(req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAfter(ctxTimeout(t, 3*time.Second), mark, requestRejected(livekit.RequestResponse_LIMIT_EXCEEDED, msg)); err != nil {
		t.Fatalf("not refused with %q: %v", msg, err)
	}
}

func addTrack(cid, name string, layers int) *livekit.SignalRequest {
	req := &livekit.AddTrackRequest{Cid: cid, Name: name, Type: livekit.TrackType_AUDIO}
	if layers > 0 {
		req.Type = livekit.TrackType_VIDEO
		for q := range layers {
			req.Layers = append(req.Layers, &livekit.VideoLayer{Quality: livekit.VideoQuality(q % 3)})
		}
	}
	return &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: req}}
}

func limitParticipants(t *testing.T, n *node) {
	n.join(t, "a", "alice", client.Options{})
	expectJoinRefused(t, n, token(t, "a", "bob", nil), http.StatusForbidden, "room is full")
}

func limitRooms(t *testing.T, n *node) {
	n.join(t, "a", "alice", client.Options{})
	expectJoinRefused(t, n, token(t, "b", "bob", nil), http.StatusServiceUnavailable, "too many rooms on this node: 2 > limits.max_rooms 1")
	create := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomCreate: true})
	_, err := roomService(n).CreateRoom(withToken(t, create), &livekit.CreateRoomRequest{Name: "b"})
	expectTwirp(t, err, twirp.ResourceExhausted, "limits.max_rooms 1")
}

func limitTracks(t *testing.T, n *node) {
	c := n.join(t, "a", "alice", client.Options{})
	for _, cid := range []string{"one", "two"} {
		mark := c.Mark()
		if err := c.Send(addTrack(cid, cid, 0)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitAfter(ctxTimeout(t, 3*time.Second), mark, func(m *livekit.SignalResponse) bool { return m.GetTrackPublished() != nil }); err != nil {
			t.Fatalf("track %s: %v", cid, err)
		}
	}
	expectRefused(t, c, addTrack("three", "three", 0), "too many tracks published by this participant: 3 > limits.max_tracks_per_participant 2")
}

func limitLayers(t *testing.T, n *node) {
	c := n.join(t, "a", "alice", client.Options{})
	expectRefused(t, c, addTrack("v", "cam", 3), "too many simulcast layers: 3 > limits.max_simulcast_layers 2")
}

func limitTrackName(t *testing.T, n *node) {
	c := n.join(t, "a", "alice", client.Options{})
	expectRefused(t, c, addTrack("v", "a-long-name", 0), "track name too long: 11 > limits.max_track_name_length 8")
}

// limitMetadataAPI: name, metadata and attributes past their limits from
// a token at join (400), RoomService (invalid_argument), and room
// metadata (CreateRoom, UpdateRoomMetadata).
func limitMetadataAPI(t *testing.T, n *node) {
	n.join(t, "a", "alice", client.Options{})
	long := strings.Repeat("m", 17)
	tok, err := auth.NewAccessToken(testKey, testSecret).SetIdentity("bob").SetMetadata(long).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "a"}).SetValidFor(time.Hour).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	expectJoinRefused(t, n, tok, http.StatusBadRequest, "metadata too large: 17 > limits.max_metadata_size 16")
	rs := roomService(n)
	ctx := withToken(t, signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true, Room: "a", RoomCreate: true}))
	for _, tc := range []struct {
		req *livekit.UpdateParticipantRequest
		msg string
	}{
		{&livekit.UpdateParticipantRequest{Name: "a-long-name"}, "name too long: 11 > limits.max_name_length 8"},
		{&livekit.UpdateParticipantRequest{Metadata: long}, "metadata too large: 17 > limits.max_metadata_size 16"},
		{&livekit.UpdateParticipantRequest{Attributes: map[string]string{"key": long}}, "attributes too large: 20 > limits.max_attributes_size 16"},
	} {
		tc.req.Room, tc.req.Identity = "a", "alice"
		_, err := rs.UpdateParticipant(ctx, tc.req)
		expectTwirp(t, err, twirp.InvalidArgument, tc.msg)
	}
	_, err = rs.UpdateRoomMetadata(ctx, &livekit.UpdateRoomMetadataRequest{Room: "a", Metadata: long})
	expectTwirp(t, err, twirp.InvalidArgument, "limits.max_metadata_size 16")
	_, err = rs.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: "b", Metadata: long})
	expectTwirp(t, err, twirp.InvalidArgument, "limits.max_metadata_size 16")
}

func limitSignalSize(t *testing.T, n *node) {
	c := n.join(t, "a", "alice", client.Options{})
	_ = c.SendRaw(websocket.BinaryMessage, make([]byte, 40<<10))
	expectClose(t, c, []int{websocket.CloseMessageTooBig}, "larger than limits.max_signal_message_size 32768 bytes")
	expectRemoved(t, n, "a", "alice")
}

// dataPair is a sender with its data channel open and a receiver.
func dataPair(t *testing.T, n *node) (from, to *client.Client) {
	from = n.join(t, "a", "sender", client.Options{})
	to = n.join(t, "a", "receiver", client.Options{})
	if err := from.NegotiatePublisher(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitDataOpen(t, from)
	return from, to
}

// receivedPayloads counts the packets to received whose payload starts with prefix.
func receivedPayloads(to *client.Client, prefix string) int {
	n := 0
	for _, p := range to.ReceivedData() {
		if strings.HasPrefix(string(p.GetUser().GetPayload()), prefix) {
			n++
		}
	}
	return n
}

func waitDataRefused(t *testing.T, c *client.Client, msg string) {
	t.Helper()
	if _, err := c.WaitFor(ctxTimeout(t, 3*time.Second), requestRejected(livekit.RequestResponse_LIMIT_EXCEEDED, msg)); err != nil {
		t.Fatalf("sender not told %q: %v", msg, err)
	}
}

func limitDataSize(t *testing.T, n *node) {
	from, to := dataPair(t, n)
	sendUser(t, from, "big"+strings.Repeat("x", 2000))
	sendUser(t, from, "small")
	if _, err := to.WaitData(ctxTimeout(t, 5*time.Second), userPayload("small")); err != nil {
		t.Fatal(err)
	}
	waitDataRefused(t, from, "data packet too large")
	waitDataRefused(t, from, "> limits.max_data_packet_size 1000")
	if receivedPayloads(to, "big") != 0 {
		t.Fatal("a packet over limits.max_data_packet_size was relayed")
	}
	admin := withToken(t, signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true, Room: "a"}))
	_, err := roomService(n).SendData(admin, &livekit.SendDataRequest{Room: "a", Data: make([]byte, 2000)})
	expectTwirp(t, err, twirp.InvalidArgument, "2000 > limits.max_data_packet_size 1000")
}

func limitDataRate(t *testing.T, n *node) {
	from, to := dataPair(t, n)
	start := time.Now()
	for range 20 {
		sendUser(t, from, "burst")
	}
	waitDataRefused(t, from, "data packets sent too fast: more than limits.data_packet_rate 2 packets/s (burst 3)")
	eventually(t, 5*time.Second, "the burst relayed", func() bool { return receivedPayloads(to, "burst") >= 3 })
	time.Sleep(300 * time.Millisecond)
	// The bucket's 3, and what 2/s refilled since the first was sent.
	elapsed := time.Since(start)
	if got, most := receivedPayloads(to, "burst"), 3+int(2*elapsed.Seconds()); got > most {
		t.Fatalf("%d of 20 packets relayed within %v, want at most %d", got, elapsed, most)
	}
}

func limitDataBytes(t *testing.T, n *node) {
	from, to := dataPair(t, n)
	start := time.Now()
	for range 5 {
		sendUser(t, from, "kb"+strings.Repeat("x", 1000))
	}
	waitDataRefused(t, from, "more than limits.data_byte_rate 1500 bytes/s")
	eventually(t, 5*time.Second, "the first packet relayed", func() bool { return receivedPayloads(to, "kb") >= 1 })
	time.Sleep(300 * time.Millisecond)
	// One ~1 kB packet fits the 1500-byte bucket, and another for each
	// ~1 kB that 1500 bytes/s refilled since the first was sent.
	elapsed := time.Since(start)
	if got, most := receivedPayloads(to, "kb"), 1+int(1.5*elapsed.Seconds()); got > most || got == 5 {
		t.Fatalf("%d of 5 packets of ~1 kB relayed within %v, want at most %d", got, elapsed, most)
	}
}

func limitWHIP(t *testing.T, n *node) {
	first := newHTTPPeer(t, n, whipToken(t, "a", "obs1"))
	if _, err := first.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if status, body := first.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("first WHIP session: %d %s", status, body)
	}
	offer := testOffer(t, n, webrtc.RTPTransceiverDirectionSendonly, webrtc.RTPCodecTypeAudio)
	status, body, hdr := doHTTP(t, http.MethodPost, n.http.URL+"/whip", whipToken(t, "a", "obs2"), "application/sdp", offer, nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "session limit reached: 1 whip sessions on this node, limits.max_whip_sessions is 1") || hdr.Get("Retry-After") == "" {
		t.Fatalf("second WHIP session: %d %q", status, body)
	}
	// The slot comes back when the session ends.
	if status, _, _ := first.request(http.MethodDelete, "", "", nil); status != http.StatusOK {
		t.Fatalf("DELETE: %d", status)
	}
	status, body, _ = doHTTP(t, http.MethodPost, n.http.URL+"/whip", whipToken(t, "a", "obs2"), "application/sdp", offer, nil)
	if status != http.StatusCreated {
		t.Fatalf("WHIP after the first session ended: %d %s", status, body)
	}
}

func limitWHEP(t *testing.T, n *node) {
	alice := n.join(t, "a", "alice", client.Options{})
	video := newVideoTrack(t, "cam")
	if _, _, err := alice.Publish(ctxTimeout(t, 10*time.Second), video, &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA}); err != nil {
		t.Fatal(err)
	}
	startSource(t, video, true)
	eventually(t, 10*time.Second, "alice publishes", func() bool { return len(n.rooms.Room("a").Participant("alice").Info().Tracks) == 1 })
	fan := token(t, "a", "fan", func(g *auth.VideoGrant) { g.SetCanSubscribe(true) })
	startWHEPViewer(t, n, fan, "alice")
	offer := testOffer(t, n, webrtc.RTPTransceiverDirectionRecvonly, webrtc.RTPCodecTypeVideo)
	status, body, _ := doHTTP(t, http.MethodPost, n.http.URL+"/whep?participant=alice", fan, "application/sdp", offer, nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "limits.max_whep_sessions is 1") {
		t.Fatalf("second WHEP session: %d %q", status, body)
	}
}
