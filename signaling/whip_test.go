package signaling_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// httpPeer is a pion peer that negotiates over WHIP or WHEP the way an
// outside client does: it POSTs its offer before gathering ends and
// trickles its candidates by PATCH, held until the resource is known.
type httpPeer struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	base  string
	token string

	mu       sync.Mutex
	resource string
	etag     string
	held     []string
	patches  []int // statuses of the candidate PATCHes
}

func newHTTPPeer(t *testing.T, n *node, token string) *httpPeer {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &httpPeer{t: t, pc: pc, base: n.http.URL, token: token}
	pc.OnICECandidate(p.trickle)
	t.Cleanup(func() { _ = pc.Close() })
	return p
}

// trickle PATCHes a candidate to the resource, or holds it until known.
func (p *httpPeer) trickle(c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	frag := "a=mid:0\r\na=" + c.ToJSON().Candidate + "\r\n"
	p.mu.Lock()
	if p.resource == "" {
		p.held = append(p.held, frag)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	status, _, _ := p.request(http.MethodPatch, frag, "application/trickle-ice-sdpfrag", nil)
	p.mu.Lock()
	p.patches = append(p.patches, status)
	p.mu.Unlock()
}

// request sends a request to the resource and returns status, body and headers.
func (p *httpPeer) request(method, body, ctype string, hdr http.Header) (int, string, http.Header) {
	p.mu.Lock()
	url := p.base + p.resource
	p.mu.Unlock()
	return doHTTP(p.t, method, url, p.token, ctype, body, hdr)
}

// doHTTP sends one request; token "" sends none.
func doHTTP(t *testing.T, method, url, token, ctype, body string, hdr http.Header) (int, string, http.Header) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

// negotiate POSTs the offer to path and applies the answer; it returns the
// status and body of the POST (201 and the answer on success).
func (p *httpPeer) negotiate(path string) (int, string) {
	p.t.Helper()
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.t.Fatal(err)
	}
	status, body, hdr := doHTTP(p.t, http.MethodPost, p.base+path, p.token, "application/sdp", offer.SDP, nil)
	if status != http.StatusCreated {
		return status, body
	}
	if ct := hdr.Get("Content-Type"); ct != "application/sdp" {
		p.t.Errorf("answer Content-Type %q", ct)
	}
	p.mu.Lock()
	p.resource, p.etag = hdr.Get("Location"), hdr.Get("ETag")
	held := p.held
	p.held = nil
	p.mu.Unlock()
	if p.resource == "" || p.etag == "" {
		p.t.Errorf("201 without Location (%q) or ETag (%q)", p.resource, p.etag)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		p.t.Fatalf("apply answer: %v", err)
	}
	for _, frag := range held {
		status, _, _ := p.request(http.MethodPatch, frag, "application/trickle-ice-sdpfrag", nil)
		p.mu.Lock()
		p.patches = append(p.patches, status)
		p.mu.Unlock()
	}
	return status, body
}

// waitConnected waits for the peer connection to connect.
func (p *httpPeer) waitConnected(timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, "the WHIP/WHEP peer connection", func() bool {
		return p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
}

// patchStatuses returns the statuses of the candidate PATCHes so far.
func (p *httpPeer) patchStatuses() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.patches...)
}

func whipToken(t *testing.T, room, identity string) string {
	return token(t, room, identity, func(g *auth.VideoGrant) { g.SetCanPublish(true) })
}

// TestWHIPPublish publishes VP8 and Opus with a WHIP client that trickles
// by PATCH: a LiveKit-protocol subscriber receives both, the publisher is
// an INGRESS participant, and DELETE removes it.
func TestWHIPPublish(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whip-publish"
	bob := watchMedia(n.join(t, room, "bob", client.Options{}))
	pub := newHTTPPeer(t, n, whipToken(t, room, "obs"))
	video, audio := newVideoTrack(t, "v"), newAudioTrack(t, "a")
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		if _, err := pub.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	if status, body := pub.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, body)
	}
	pub.waitConnected(10 * time.Second)
	startSource(t, video, true)
	startSource(t, audio, false)

	r := n.rooms.Room(room)
	part := r.Participant("obs")
	if part == nil || part.Info().Kind != livekit.ParticipantInfo_INGRESS {
		t.Fatalf("obs is %v, want an INGRESS participant", part.Info())
	}
	eventually(t, 10*time.Second, "obs publishes audio and video", func() bool { return len(part.Info().Tracks) == 2 })
	tracks := part.Info().Tracks
	for _, tr := range tracks {
		eventually(t, 10*time.Second, "bob receives "+tr.Type.String(), func() bool { return bob.packets(tr.Sid) > 50 })
	}
	statuses := pub.patchStatuses()
	if len(statuses) == 0 {
		t.Error("no candidate was trickled by PATCH")
	}
	for _, s := range statuses {
		if s != http.StatusNoContent {
			t.Errorf("candidate PATCH answered %d, want 204", s)
		}
	}
	if status, _, _ := pub.request(http.MethodDelete, "", "", nil); status != http.StatusOK {
		t.Errorf("DELETE: %d, want 200", status)
	}
	eventually(t, 5*time.Second, "obs leaves the room", func() bool { return r.Participant("obs") == nil })
	if status, body, _ := pub.request(http.MethodDelete, "", "", nil); status != http.StatusNotFound || !strings.Contains(body, "no WHIP session") {
		t.Errorf("second DELETE: %d %q, want 404", status, body)
	}
}

// TestWHIPICERestart restarts ICE through PATCH: the answer carries new
// server credentials and a new ETag, and media flows over the new session.
func TestWHIPICERestart(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whip-restart"
	bob := watchMedia(n.join(t, room, "bob", client.Options{}))
	pub := newHTTPPeer(t, n, whipToken(t, room, "obs"))
	audio := newAudioTrack(t, "a")
	if _, err := pub.pc.AddTransceiverFromTrack(audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	status, answer := pub.negotiate("/whip")
	if status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, answer)
	}
	pub.waitConnected(10 * time.Second)
	startSource(t, audio, false)
	obs := n.rooms.Room(room).Participant("obs")
	eventually(t, 10*time.Second, "obs publishes its audio", func() bool { return len(obs.Info().Tracks) == 1 })
	sid := obs.Info().Tracks[0].Sid
	eventually(t, 10*time.Second, "bob receives the audio", func() bool { return bob.packets(sid) > 20 })

	// The client restarts: new credentials in a PATCH, the server's back.
	offer, err := pub.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ufrag, pwd := sdpValue(offer.SDP, "ice-ufrag"), sdpValue(offer.SDP, "ice-pwd")
	pub.mu.Lock()
	oldTag := pub.etag
	pub.mu.Unlock()
	frag := fmt.Sprintf("a=ice-ufrag:%s\r\na=ice-pwd:%s\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n", ufrag, pwd)
	status, body, hdr := pub.request(http.MethodPatch, frag, "application/trickle-ice-sdpfrag", http.Header{"If-Match": {oldTag}})
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("ICE restart PATCH: %d %q %q", status, hdr.Get("Content-Type"), body)
	}
	newUfrag, newPwd := sdpValue(body, "ice-ufrag"), sdpValue(body, "ice-pwd")
	if newUfrag == "" || newUfrag == sdpValue(answer, "ice-ufrag") || hdr.Get("ETag") == oldTag || !strings.Contains(body, "a=candidate:") {
		t.Fatalf("ICE restart answer %q (ETag %s, was %s): want new credentials, candidates and ETag", body, hdr.Get("ETag"), oldTag)
	}
	restarted := strings.ReplaceAll(strings.ReplaceAll(answer, sdpValue(answer, "ice-ufrag"), newUfrag), sdpValue(answer, "ice-pwd"), newPwd)
	var lines []string
	for _, l := range strings.Split(restarted, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			lines = append(lines, l)
		}
		if strings.HasPrefix(l, "a=mid:0") {
			for _, c := range strings.Split(body, "\r\n") {
				if strings.HasPrefix(c, "a=candidate:") {
					lines = append(lines, c)
				}
			}
		}
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: strings.Join(lines, "\r\n")}); err != nil {
		t.Fatalf("apply restarted answer: %v", err)
	}
	if status, _, _ := pub.request(http.MethodPatch, "a=mid:0\r\n", "application/trickle-ice-sdpfrag", http.Header{"If-Match": {oldTag}}); status != http.StatusPreconditionFailed {
		t.Errorf("PATCH with the old ETag: %d, want 412", status)
	}
	before := bob.packets(sid)
	eventually(t, 10*time.Second, "audio flows after the restart", func() bool { return bob.packets(sid) > before+50 })
}

// sdpValue is the first value of an a=key: line.
func sdpValue(desc, key string) string {
	for _, l := range strings.Split(desc, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a="+key+":"); ok {
			return v
		}
	}
	return ""
}
