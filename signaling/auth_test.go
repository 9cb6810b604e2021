package signaling_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/fanout-sfu/fanout/signaling/client"
)

func signToken(t *testing.T, key, secret, identity string, validFor time.Duration, g *auth.VideoGrant) string {
	t.Helper()
	at := auth.NewAccessToken(key, secret).SetVideoGrant(g).SetValidFor(validFor)
	if identity != "" {
		at.SetIdentity(identity)
	}
	tok, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJoinRejections covers the tokens /rtc refuses before any WebSocket.
func TestJoinRejections(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	join := &auth.VideoGrant{RoomJoin: true, Room: "r"}
	cases := []struct {
		name   string
		token  string
		status int
		msg    string
	}{
		{"no token", "", http.StatusUnauthorized, "no access token"},
		{"garbage token", "not-a-jwt", http.StatusUnauthorized, "malformed access token"},
		{"wrong secret", signToken(t, testKey, "another-secret-another-secret-0000", "a", time.Hour, join), http.StatusUnauthorized, "invalid token"},
		{"unknown key", signToken(t, "nokey", testSecret, "a", time.Hour, join), http.StatusUnauthorized, "unknown API key"},
		{"expired", expiredToken(t, join), http.StatusUnauthorized, "token expired"},
		{"no identity", signToken(t, testKey, testSecret, "", time.Hour, join), http.StatusUnauthorized, "no identity"},
		{"no roomJoin grant", signToken(t, testKey, testSecret, "a", time.Hour, &auth.VideoGrant{Room: "r"}), http.StatusForbidden, "roomJoin"},
		{"no room", signToken(t, testKey, testSecret, "a", time.Hour, &auth.VideoGrant{RoomJoin: true}), http.StatusForbidden, "names no room"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Connect(ctxTimeout(t, 5*time.Second), n.wsURL, tc.token, client.Options{})
			var he *client.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("want HTTP rejection, got %v", err)
			}
			if he.Status != tc.status || !strings.Contains(he.Body, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", he.Status, he.Body, tc.status, tc.msg)
			}
			// /rtc/validate gives clients the same answer.
			resp, err := http.Get(n.http.URL + "/rtc/validate?access_token=" + tc.token)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.msg) {
				t.Fatalf("validate: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func expiredToken(t *testing.T, g *auth.VideoGrant) string {
	// Expired two minutes ago: beyond the one-minute clock-skew leeway.
	// auth.AccessToken cannot mint an expired token, so sign the claims here.
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": testKey, "sub": "a", "nbf": now.Add(-time.Hour).Unix(), "exp": now.Add(-2 * time.Minute).Unix(),
		"video": map[string]any{"roomJoin": g.RoomJoin, "room": g.Room},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestV1PathsAnswer404WithCORS(t *testing.T) {
	n := startNode(t, nodeOptions{})
	for _, p := range []string{"/rtc/v1", "/rtc/v1/validate"} {
		resp, err := http.Get(n.http.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %v", p, resp.StatusCode, resp.Header)
		}
		if strings.Contains(strings.ToLower(string(body)), "room") {
			t.Fatalf("%s body must not mention the room: %q", p, body)
		}
	}
}

// requestRejected waits for a RequestResponse with that reason whose message contains msg.
func requestRejected(reason livekit.RequestResponse_Reason, msg string) func(*livekit.SignalResponse) bool {
	return func(m *livekit.SignalResponse) bool {
		rr := m.GetRequestResponse()
		return rr != nil && rr.Reason == reason && strings.Contains(rr.Message, msg)
	}
}

func joinWith(t *testing.T, n *node, room, identity string, edit func(*auth.VideoGrant), opts client.Options) *client.Client {
	t.Helper()
	c, err := client.Connect(ctxTimeout(t, 10*time.Second), n.wsURL, token(t, room, identity, edit), opts)
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestGrantCanPublishEnforced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	no := false
	c := joinWith(t, n, "g", "viewer", func(g *auth.VideoGrant) { g.CanPublish = &no }, client.Options{})
	if c.Join.Participant.Permission.CanPublish {
		t.Fatal("join response claims canPublish")
	}
	_, _, err := c.Publish(ctxTimeout(t, 5*time.Second), newVideoTrack(t, "v"), &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA})
	if err == nil || !strings.Contains(err.Error(), "NOT_ALLOWED") || !strings.Contains(err.Error(), "may not publish") {
		t.Fatalf("publish without canPublish: %v", err)
	}
}

func TestGrantCanPublishSourcesEnforced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	c := joinWith(t, n, "g", "mic-only", func(g *auth.VideoGrant) {
		g.SetCanPublishSources([]livekit.TrackSource{livekit.TrackSource_MICROPHONE})
	}, client.Options{})
	_, _, err := c.Publish(ctxTimeout(t, 5*time.Second), newVideoTrack(t, "v"), &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA})
	if err == nil || !strings.Contains(err.Error(), "may not publish this source") {
		t.Fatalf("camera with microphone-only grant: %v", err)
	}
	if _, _, err := c.Publish(ctxTimeout(t, 5*time.Second), newAudioTrack(t, "a"), &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE}); err != nil {
		t.Fatalf("microphone should be allowed: %v", err)
	}
}

func TestGrantCanSubscribeEnforced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "g", "alice", client.Options{})
	no := false
	sub := joinWith(t, n, "g", "blind", func(g *auth.VideoGrant) { g.CanSubscribe = &no }, client.Options{})
	tc := watchTracks(sub)
	info, _ := publishVideo(t, pub, "cam")
	if err := sub.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{
		Subscription: &livekit.UpdateSubscription{TrackSids: []string{info.Sid}, Subscribe: true},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.WaitFor(ctxTimeout(t, 5*time.Second), requestRejected(livekit.RequestResponse_NOT_ALLOWED, "may not subscribe")); err != nil {
		t.Fatalf("explicit subscribe not refused: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if tc.packets(info.Sid) != 0 {
		t.Fatal("media reached a participant without canSubscribe")
	}
}

func TestGrantCanPublishDataEnforced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	no := false
	mute := joinWith(t, n, "d", "quiet", func(g *auth.VideoGrant) { g.CanPublishData = &no }, client.Options{})
	talker := n.join(t, "d", "talker", client.Options{})
	recv := n.join(t, "d", "recv", client.Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	for _, c := range []*client.Client{mute, talker} {
		if err := c.NegotiatePublisher(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitDataOpen(t, mute, talker)
	sendUser(t, mute, "forbidden")
	sendUser(t, talker, "allowed")
	if _, err := recv.WaitData(ctx, userPayload("allowed")); err != nil {
		t.Fatalf("allowed data missing: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range recv.ReceivedData() {
		if string(p.GetUser().GetPayload()) == "forbidden" {
			t.Fatal("data from a participant without canPublishData was relayed")
		}
	}
}

func TestGrantHiddenNotAnnounced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	watcher := n.join(t, "h", "watcher", client.Options{})
	joinWith(t, n, "h", "ghost", func(g *auth.VideoGrant) { g.Hidden = true }, client.Options{})
	late := n.join(t, "h", "late", client.Options{})
	for _, p := range late.Join.OtherParticipants {
		if p.Identity == "ghost" {
			t.Fatal("hidden participant listed in join response")
		}
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := watcher.WaitFor(ctxTimeout(t, 100*time.Millisecond), participantUpdate("ghost", func(*livekit.ParticipantInfo) bool { return true })); err == nil {
		t.Fatal("hidden participant announced in an update")
	}
}

func TestGrantUpdateOwnMetadataEnforced(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	c := n.join(t, "m", "plain", client.Options{})
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{
		UpdateMetadata: &livekit.UpdateParticipantMetadata{Metadata: "x", RequestId: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctxTimeout(t, 5*time.Second), requestRejected(livekit.RequestResponse_NOT_ALLOWED, "may not update its metadata")); err != nil {
		t.Fatalf("metadata update without grant not refused: %v", err)
	}
	yes := true
	ok := joinWith(t, n, "m", "editor", func(g *auth.VideoGrant) { g.CanUpdateOwnMetadata = &yes }, client.Options{})
	if err := ok.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{
		UpdateMetadata: &livekit.UpdateParticipantMetadata{Metadata: "hello", RequestId: 8},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctxTimeout(t, 5*time.Second), participantUpdate("editor", func(p *livekit.ParticipantInfo) bool { return p.Metadata == "hello" })); err != nil {
		t.Fatalf("metadata update not broadcast: %v", err)
	}
}

// roomService returns a RoomService client whose calls carry tok.
func roomService(n *node) livekit.RoomService {
	return livekit.NewRoomServiceProtobufClient(n.http.URL, http.DefaultClient)
}

func withToken(t *testing.T, tok string) context.Context {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	ctx, err := twirp.WithHTTPRequestHeaders(ctxTimeout(t, 5*time.Second), h)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestRoomServiceGrants(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	n.join(t, "api", "alice", client.Options{})
	rs := roomService(n)
	admin := func(room string) string {
		return signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true, Room: room})
	}
	cases := []struct {
		name string
		call func(ctx context.Context) error
		tok  string
		code twirp.ErrorCode
		msg  string
	}{
		{"no token", func(ctx context.Context) error { _, err := rs.ListRooms(ctx, &livekit.ListRoomsRequest{}); return err }, "", twirp.Unauthenticated, "no access token"},
		{"wrong secret", func(ctx context.Context) error { _, err := rs.ListRooms(ctx, &livekit.ListRoomsRequest{}); return err },
			signToken(t, testKey, "wrong-wrong-wrong-wrong-wrong-wrong", "", time.Hour, &auth.VideoGrant{RoomList: true}), twirp.Unauthenticated, "invalid token"},
		{"no roomList", func(ctx context.Context) error { _, err := rs.ListRooms(ctx, &livekit.ListRoomsRequest{}); return err }, admin("api"), twirp.PermissionDenied, "roomList"},
		{"no roomCreate", func(ctx context.Context) error {
			_, err := rs.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: "x"})
			return err
		}, admin("api"), twirp.PermissionDenied, "roomCreate"},
		{"no roomAdmin", func(ctx context.Context) error {
			_, err := rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: "api"})
			return err
		}, signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomList: true}), twirp.PermissionDenied, "roomAdmin"},
		{"admin of another room", func(ctx context.Context) error {
			_, err := rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: "api"})
			return err
		}, admin("other"), twirp.PermissionDenied, "another room"},
		{"unknown room", func(ctx context.Context) error {
			_, err := rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: "nope"})
			return err
		}, admin("nope"), twirp.NotFound, "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(withToken(t, tc.tok))
			var te twirp.Error
			if !errors.As(err, &te) || te.Code() != tc.code || !strings.Contains(te.Msg(), tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
	if _, err := rs.ListParticipants(withToken(t, admin("api")), &livekit.ListParticipantsRequest{Room: "api"}); err != nil {
		t.Fatalf("admin of the room refused: %v", err)
	}
}
