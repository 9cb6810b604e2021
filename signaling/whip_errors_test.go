package signaling_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// testOffer is an offer of a fresh pion peer with one transceiver per kind
// given, in direction dir.
func testOffer(t *testing.T, n *node, dir webrtc.RTPTransceiverDirection, kinds ...webrtc.RTPCodecType) string {
	t.Helper()
	p := newHTTPPeer(t, n, "")
	for _, k := range kinds {
		if _, err := p.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// TestWHIPErrors checks every error a broadcaster or viewer can act on:
// its status and the words of its message.
func TestWHIPErrors(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whip-errors"
	n.join(t, room, "alice", client.Options{}) // in the room, publishing nothing
	audio, video := webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo
	sendOffer := testOffer(t, n, webrtc.RTPTransceiverDirectionSendonly, audio, video)
	recvOffer := testOffer(t, n, webrtc.RTPTransceiverDirectionRecvonly, audio, video)
	h265 := strings.NewReplacer("VP8/90000", "H265/90000", "H264/90000", "H265/90000", "VP9/90000", "H265/90000", "AV1/90000", "H265/90000").Replace(sendOffer)
	pub := whipToken(t, room, "obs")
	noPublish := token(t, room, "obs", func(g *auth.VideoGrant) { g.SetCanPublish(false) })
	noJoin := token(t, room, "obs", func(g *auth.VideoGrant) { g.RoomJoin = false; g.SetCanPublish(true) })
	viewer := token(t, room, "viewer", func(g *auth.VideoGrant) { g.SetCanSubscribe(true) })
	noSubscribe := token(t, room, "viewer", func(g *auth.VideoGrant) { g.SetCanSubscribe(false) })
	const sdpType = "application/sdp"
	cases := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		says                                   string
	}{
		{"WHIP without a token", "POST", "/whip", "", sdpType, sendOffer, 401, "no access token"},
		{"WHIP with a bad token", "POST", "/whip", "not-a-jwt", sdpType, sendOffer, 401, "malformed access token"},
		{"WHIP without canPublish", "POST", "/whip", noPublish, sdpType, sendOffer, 403, "canPublish"},
		{"WHIP without roomJoin", "POST", "/whip", noJoin, sdpType, sendOffer, 403, "roomJoin"},
		{"WHIP with the wrong content type", "POST", "/whip", pub, "application/json", sendOffer, 415, "application/sdp"},
		{"WHIP with an empty body", "POST", "/whip", pub, sdpType, "", 400, "body is empty"},
		{"WHIP with garbage", "POST", "/whip", pub, sdpType, "hello, this is not SDP", 400, "malformed session description"},
		{"WHIP with an unsupported codec", "POST", "/whip", pub, sdpType, h265, 400, "none of the codecs Fanout takes (VP8, VP9, H264, AV1)"},
		{"WHIP offer that sends nothing", "POST", "/whip", pub, sdpType, recvOffer, 400, "sends no audio or video"},
		{"WHIP oversized offer", "POST", "/whip", pub, sdpType, sendOffer + strings.Repeat("a=x:y\r\n", 20000), 413, "larger than"},
		{"WHIP GET", "GET", "/whip", pub, "", "", 405, "POST"},
		{"PATCH an unknown resource", "PATCH", "/whip/0123456789abcdef", pub, "application/trickle-ice-sdpfrag", "a=mid:0\r\n", 404, "no WHIP session"},
		{"DELETE an unknown resource", "DELETE", "/whip/0123456789abcdef", pub, "", "", 404, "no WHIP session"},
		{"WHEP without canSubscribe", "POST", "/whep?participant=alice", noSubscribe, sdpType, recvOffer, 403, "canSubscribe"},
		{"WHEP without a participant", "POST", "/whep", viewer, sdpType, recvOffer, 400, "?participant=IDENTITY"},
		{"WHEP of someone absent", "POST", "/whep?participant=nobody", viewer, sdpType, recvOffer, 404, `"nobody" is not in room`},
		{"WHEP of someone who publishes nothing", "POST", "/whep?participant=alice", viewer, sdpType, recvOffer, 404, "publishes no track"},
		{"WHEP with the wrong content type", "POST", "/whep?participant=alice", viewer, "text/plain", recvOffer, 415, "application/sdp"},
		{"DELETE an unknown WHEP resource", "DELETE", "/whep/0123456789abcdef", viewer, "", "", 404, "no WHEP session"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := doHTTP(t, c.method, n.http.URL+c.path, c.token, c.ctype, c.body, nil)
			if status != c.status || !strings.Contains(body, c.says) {
				t.Errorf("%s %s: %d %q, want %d saying %q", c.method, c.path, status, body, c.status, c.says)
			}
		})
	}
	if ps := n.rooms.Room(room).Participants(); len(ps) != 1 {
		t.Errorf("after the refusals the room has %d participants, want alice alone", len(ps))
	}
}

// TestWHIPResourceErrors covers the errors of a live session's resource,
// and a second session of the same identity replacing the first.
func TestWHIPResourceErrors(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whip-resource"
	first := newHTTPPeer(t, n, whipToken(t, room, "obs"))
	if _, err := first.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if status, body := first.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("POST: %d %s", status, body)
	}
	status, body, _ := first.request(http.MethodPatch, "a=mid:0\r\n", "text/plain", nil)
	if status != http.StatusUnsupportedMediaType || !strings.Contains(body, "application/trickle-ice-sdpfrag") {
		t.Errorf("PATCH text/plain: %d %q, want 415", status, body)
	}
	status, body, _ = first.request(http.MethodPatch, "a=mid:0\r\n", "application/trickle-ice-sdpfrag", http.Header{"If-Match": {`"stale"`}})
	if status != http.StatusPreconditionFailed || !strings.Contains(body, "ICE session") {
		t.Errorf("PATCH with a stale If-Match: %d %q, want 412", status, body)
	}
	status, body, _ = first.request(http.MethodPatch, "a=mid:0\r\na=candidate:garbage\r\n", "application/trickle-ice-sdpfrag", nil)
	if status != http.StatusBadRequest || !strings.Contains(body, "candidate") {
		t.Errorf("PATCH with a garbage candidate: %d %q, want 400", status, body)
	}
	status, body, _ = first.request(http.MethodPatch, "this is not sdp", "application/trickle-ice-sdpfrag", nil)
	if status != http.StatusBadRequest || !strings.Contains(body, "not an SDP line") {
		t.Errorf("PATCH with garbage: %d %q, want 400", status, body)
	}

	second := newHTTPPeer(t, n, whipToken(t, room, "obs"))
	if _, err := second.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if status, body := second.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("second POST: %d %s", status, body)
	}
	eventually(t, 5*time.Second, "the first session ends", func() bool {
		status, _, _ := first.request(http.MethodDelete, "", "", nil)
		return status == http.StatusNotFound
	})
	if ps := n.rooms.Room(room).Participants(); len(ps) != 1 {
		t.Errorf("%d participants, want the second obs alone", len(ps))
	}
	if status, _, _ := second.request(http.MethodDelete, "", "", nil); status != http.StatusOK {
		t.Errorf("DELETE the second: %d", status)
	}
}

// TestWHIPConnectTimeout: a session whose client never connects ends after
// the connect timeout, and its participant and resource go.
func TestWHIPConnectTimeout(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{connectTimeout: time.Second})
	const room = "whip-timeout"
	offer := testOffer(t, n, webrtc.RTPTransceiverDirectionSendonly, webrtc.RTPCodecTypeAudio)
	status, body, hdr := doHTTP(t, http.MethodPost, n.http.URL+"/whip", whipToken(t, room, "ghost"), "application/sdp", offer, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST: %d %s", status, body)
	}
	eventually(t, 5*time.Second, "the session that never connected ends", func() bool {
		r := n.rooms.Room(room)
		return r == nil || r.Participant("ghost") == nil
	})
	if status, _, _ := doHTTP(t, http.MethodDelete, n.http.URL+hdr.Get("Location"), "", "", "", nil); status != http.StatusNotFound {
		t.Errorf("DELETE after the timeout: %d, want 404", status)
	}
}

// TestWHIPCORS: browsers' preflights get the methods and headers a WHIP or
// WHEP client uses, and can read Location, ETag and Link.
func TestWHIPCORS(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	for _, c := range []struct{ path, methods string }{
		{"/whip", "POST"}, {"/whep", "POST"}, {"/whip/any", "PATCH, DELETE"}, {"/whep/any", "PATCH, DELETE"},
	} {
		status, _, hdr := doHTTP(t, http.MethodOptions, n.http.URL+c.path, "", "", "", http.Header{
			"Origin": {"https://studio.example"}, "Access-Control-Request-Method": {"POST"},
		})
		if status != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(hdr.Get("Access-Control-Allow-Methods"), c.methods) ||
			!strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(hdr.Get("Access-Control-Expose-Headers"), "Location") {
			t.Errorf("OPTIONS %s: %d %v", c.path, status, hdr)
		}
	}
	_, _, hdr := doHTTP(t, http.MethodOptions, n.http.URL+"/whip", "", "", "", nil)
	if hdr.Get("Accept-Post") != "application/sdp" {
		t.Errorf("OPTIONS /whip: Accept-Post %q", hdr.Get("Accept-Post"))
	}
}
