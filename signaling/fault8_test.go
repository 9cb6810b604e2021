package signaling_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/signaling/client"
)

func pingReq(i int) *livekit.SignalRequest {
	return &livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: int64(i)}}}
}

// countPongs counts the pong responses received after mark, waiting d.
func countPongs(t *testing.T, c *client.Client, mark int, d time.Duration) int {
	pongs := 0
	_, _ = c.WaitAfter(ctxTimeout(t, d), mark, func(m *livekit.SignalResponse) bool {
		if m.GetPongResp() != nil {
			pongs++
		}
		return false
	})
	return pongs
}

// TestFault8SignalRateLimited: a participant's signal messages pass a
// token bucket (limits.signal_rate, limits.signal_burst). A burst past it
// is dropped, and the client told so once with LIMIT_EXCEEDED; a client
// that keeps sending past it is disconnected (close 1008 with the
// reason), and the room goes on. Before the fix every message was
// handled, however fast they came.
func TestFault8SignalRateLimited(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{limits: signaling.Limits{SignalRate: 5, SignalBurst: 20}})
	by := n.join(t, "rate", "bystander", client.Options{})
	c := n.join(t, "rate", "flooder", client.Options{})
	time.Sleep(500 * time.Millisecond) // the join's own messages refill
	mark := c.Mark()
	for i := range 30 {
		if err := c.Send(pingReq(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitAfter(ctxTimeout(t, 3*time.Second), mark, requestRejected(livekit.RequestResponse_LIMIT_EXCEEDED, "limits.signal_rate 5/s (burst 20)")); err != nil {
		t.Fatalf("a burst past the bucket was not refused: %v", err)
	}
	if pongs := countPongs(t, c, mark, 300*time.Millisecond); pongs >= 30 {
		t.Fatalf("%d of 30 pings answered past a bucket of 20", pongs)
	}
	// Sustained: more than signal_burst dropped within 10 s disconnects.
	for i := range 100 {
		if c.Send(pingReq(100+i)) != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	expectClose(t, c, []int{websocket.ClosePolicyViolation}, "too many dropped, disconnected")
	expectRemoved(t, n, "rate", "flooder")
	mark = by.Mark()
	if err := by.Send(pingReq(1)); err != nil {
		t.Fatal(err)
	}
	if countPongs(t, by, mark, time.Second) != 1 {
		t.Fatal("the bystander lost its signal connection")
	}
}

// TestFault8MetadataAndTrackSizesLimited: what the server re-sends to
// every participant (metadata, attributes, names, track names, layer
// lists) is bounded: past a limit the request is refused with
// LIMIT_EXCEEDED and nothing is broadcast. Before the fix a 500 KB
// metadata or a 10,000-layer track was accepted and re-marshalled once
// per participant.
func TestFault8MetadataAndTrackSizesLimited(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	yes := true
	c := joinWith(t, n, "amp", "amp", func(g *auth.VideoGrant) { g.CanUpdateOwnMetadata = &yes }, client.Options{})
	watcher := n.join(t, "amp", "watcher", client.Options{})
	big := strings.Repeat("x", 500<<10)
	manyLayers := make([]*livekit.VideoLayer, 10000)
	for i := range manyLayers {
		manyLayers[i] = &livekit.VideoLayer{Quality: livekit.VideoQuality_HIGH, Width: 1, Height: 1}
	}
	cases := []struct {
		name string
		req  *livekit.SignalRequest
		msg  string
	}{
		{"metadata", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{UpdateMetadata: &livekit.UpdateParticipantMetadata{
			Metadata: big, RequestId: 1}}}, "limits.max_metadata_size 65536"},
		{"attributes", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{UpdateMetadata: &livekit.UpdateParticipantMetadata{
			Attributes: map[string]string{"k": big}, RequestId: 2}}}, "limits.max_attributes_size 65536"},
		{"name", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{UpdateMetadata: &livekit.UpdateParticipantMetadata{
			Name: strings.Repeat("n", 1000), RequestId: 3}}}, "limits.max_name_length 256"},
		{"track name", &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
			Cid: "a", Type: livekit.TrackType_AUDIO, Name: big}}}, "limits.max_track_name_length 256"},
		{"layers", &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
			Cid: "v", Type: livekit.TrackType_VIDEO, Layers: manyLayers}}}, "limits.max_simulcast_layers 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mark, wmark := c.Mark(), watcher.Mark()
			if err := c.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitAfter(ctxTimeout(t, 3*time.Second), mark, requestRejected(livekit.RequestResponse_LIMIT_EXCEEDED, tc.msg)); err != nil {
				t.Fatalf("not refused with %q: %v", tc.msg, err)
			}
			if _, err := watcher.WaitAfter(ctxTimeout(t, 300*time.Millisecond), wmark, participantUpdate("amp", func(p *livekit.ParticipantInfo) bool { return proto.Size(p) > 10000 })); err == nil {
				t.Fatal("the refused update was broadcast")
			}
		})
	}
}
