package signaling_test

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// TestBadInput feeds one misbehaving client at a time into a room where
// alice publishes video to bob. For every kind of bad input the offender
// gets a clear error or a close with a reason, bob's media never stalls,
// the node keeps accepting joins and nothing leaks.
func TestBadInput(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "badinput"
	by := startBystanders(t, n, room)
	cases := []struct {
		name string
		run  func(t *testing.T, n *node, room string, by *bystanders)
	}{
		{"malformed protobuf", badMalformedProtobuf},
		{"malformed JSON", badMalformedJSON},
		{"unknown message", badUnknownMessage},
		{"offer before join", badOfferBeforeJoin},
		{"answer without offer", badAnswerWithoutOffer},
		{"garbage answer", badGarbageAnswer},
		{"frame over 1 MiB", badOversizedFrame},
		{"garbage SDP", badGarbageSDP},
		{"bad trickle", badTrickle},
		{"RTP with bogus SSRC", badBogusSSRC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			by.mon.reset()
			tc.run(t, n, room, by)
			after := by.aliceAtBob()
			eventually(t, 5*time.Second, "bob's media from alice after the bad input", func() bool {
				return by.aliceAtBob() > after+30
			})
			if stall := by.mon.maxStall(); stall > 1500*time.Millisecond {
				t.Errorf("bob's media from alice stalled for %s during or after the bad input", stall)
			}
			if b := by.bob.bogus.Load(); b != 0 {
				t.Errorf("bob received %d forged packets", b)
			}
			expectPong(t, by.alice)
			expectPong(t, by.bobC)
			newcomer := n.join(t, room, "newcomer", client.Options{NoAutoSubscribe: true})
			newcomer.Close()
		})
	}
}

// bystanders is alice publishing a video track and bob receiving it.
type bystanders struct {
	alice    *client.Client
	bob      *mediaWatch
	bobC     *client.Client
	aliceSid string
	mon      *flowMonitor
}

func startBystanders(t *testing.T, n *node, room string) *bystanders {
	t.Helper()
	alice := n.join(t, room, "alice", client.Options{})
	bobC := n.join(t, room, "bob", client.Options{})
	bob := watchMedia(bobC)
	info, _ := publishVideo(t, alice, "cam")
	by := &bystanders{alice: alice, bob: bob, bobC: bobC, aliceSid: info.Sid}
	eventually(t, 10*time.Second, "bob receives alice's video", func() bool { return by.aliceAtBob() > 30 })
	by.mon = startFlowMonitor(t, by.aliceAtBob)
	return by
}

func (b *bystanders) aliceAtBob() int64 { return b.bob.packets(b.aliceSid) }

// mediaWatch counts the packets a client receives per track and the
// forged packets (bogusPayload) among them.
type mediaWatch struct {
	mu     sync.Mutex
	counts map[string]*atomic.Int64
	bogus  atomic.Int64
}

func watchMedia(c *client.Client) *mediaWatch {
	w := &mediaWatch{counts: map[string]*atomic.Int64{}}
	c.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		cnt := &atomic.Int64{}
		w.mu.Lock()
		w.counts[tr.ID()] = cnt
		w.mu.Unlock()
		go func() {
			buf := make([]byte, 1500)
			var pkt rtp.Packet
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				cnt.Add(1)
				if pkt.Unmarshal(buf[:n]) == nil && bytes.Equal(pkt.Payload, bogusPayload) {
					w.bogus.Add(1)
				}
			}
		}()
	})
	return w
}

func (w *mediaWatch) packets(id string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.counts[id]; c != nil {
		return c.Load()
	}
	return 0
}

func (w *mediaWatch) tracks() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.counts))
	for id := range w.counts {
		out = append(out, id)
	}
	return out
}

// flowMonitor samples a packet counter and records the longest time it
// did not move.
type flowMonitor struct {
	mu       sync.Mutex
	lastMove time.Time
	longest  time.Duration
	stop     chan struct{}
	done     chan struct{}
}

func startFlowMonitor(t *testing.T, count func() int64) *flowMonitor {
	m := &flowMonitor{lastMove: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		last := count()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			now, c := time.Now(), count()
			m.mu.Lock()
			if c != last {
				m.lastMove, last = now, c
			} else if d := now.Sub(m.lastMove); d > m.longest {
				m.longest = d
			}
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(m.stop); <-m.done })
	return m
}

func (m *flowMonitor) reset() {
	m.mu.Lock()
	m.lastMove, m.longest = time.Now(), 0
	m.mu.Unlock()
}

func (m *flowMonitor) maxStall() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := time.Since(m.lastMove); d > m.longest {
		return d
	}
	return m.longest
}

// expectClose waits for the server to close c and checks the close frame.
func expectClose(t *testing.T, c *client.Client, codes []int, text string) {
	t.Helper()
	err := c.WaitClosed(ctxTimeout(t, 5*time.Second))
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("want a close frame with %q, got %v", text, err)
	}
	codeOK := false
	for _, code := range codes {
		codeOK = codeOK || ce.Code == code
	}
	if !codeOK || !strings.Contains(ce.Text, text) {
		t.Fatalf("close frame %d %q, want code in %v and text containing %q", ce.Code, ce.Text, codes, text)
	}
}

func expectRemoved(t *testing.T, n *node, room, identity string) {
	t.Helper()
	eventually(t, 3*time.Second, identity+" removed from the room", func() bool {
		return n.rooms.Room(livekit.RoomName(room)).Participant(livekit.ParticipantIdentity(identity)) == nil
	})
}

// expectRejection waits for a RequestResponse after mark with the reason
// and a message containing text.
func expectRejection(t *testing.T, c *client.Client, mark int, reason livekit.RequestResponse_Reason, text string) *livekit.RequestResponse {
	t.Helper()
	msg, err := c.WaitAfter(ctxTimeout(t, 5*time.Second), mark, func(m *livekit.SignalResponse) bool {
		rr := m.GetRequestResponse()
		return rr != nil && rr.Reason == reason && strings.Contains(rr.Message, text)
	})
	if err != nil {
		var got []string
		c.WaitAfter(ctxTimeout(t, 10*time.Millisecond), mark, func(m *livekit.SignalResponse) bool { //nolint:errcheck
			if rr := m.GetRequestResponse(); rr != nil {
				got = append(got, rr.Reason.String()+": "+rr.Message)
			}
			return false
		})
		t.Fatalf("no %s response containing %q (%v); responses: %q", reason, text, err, got)
	}
	return msg.GetRequestResponse()
}

// expectPong checks the connection still serves requests.
func expectPong(t *testing.T, c *client.Client) {
	t.Helper()
	mark := c.Mark()
	ts := time.Now().UnixNano()
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: ts}}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := c.WaitAfter(ctxTimeout(t, 5*time.Second), mark, func(m *livekit.SignalResponse) bool {
		return m.GetPong() == ts
	}); err != nil {
		t.Fatalf("no pong after the bad input: %v", err)
	}
}

func mustSend(t *testing.T, c *client.Client, req *livekit.SignalRequest) {
	t.Helper()
	if err := c.Send(req); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func badMalformedProtobuf(t *testing.T, n *node, room string, _ *bystanders) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated varint", []byte{0xff, 0xff, 0xff}},
		{"offer field with overlong length", []byte{0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01}},
		{"invalid wire type", []byte{0x0f}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.join(t, room, "mallory-pb", client.Options{})
			if err := c.SendRaw(websocket.BinaryMessage, tc.data); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, []int{websocket.CloseUnsupportedData}, signaling.ErrMalformedSignal.Error())
			expectRemoved(t, n, room, "mallory-pb")
		})
	}
}

func badMalformedJSON(t *testing.T, n *node, room string, _ *bystanders) {
	for _, tc := range []struct{ name, data string }{
		{"not JSON", `{"offer": {"sdp": `},
		{"wrong field type", `{"ping": "soon"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.join(t, room, "mallory-json", client.Options{})
			if err := c.SendRaw(websocket.TextMessage, []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, []int{websocket.CloseUnsupportedData}, signaling.ErrMalformedSignal.Error())
			expectRemoved(t, n, room, "mallory-json")
		})
	}
}

func badUnknownMessage(t *testing.T, n *node, room string, _ *bystanders) {
	c := n.join(t, room, "mallory-unknown", client.Options{})
	empty, err := proto.Marshal(&livekit.SignalRequest{})
	if err != nil {
		t.Fatal(err)
	}
	field999 := protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 42)
	unhandled, err := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_PublishDataTrackRequest{
		PublishDataTrackRequest: &livekit.PublishDataTrackRequest{PubHandle: 1, Name: "telemetry"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		text string
	}{
		{"empty request", empty, "empty or unknown message type"},
		{"unknown field 999", field999, "empty or unknown message type"},
		{"type the server does not handle", unhandled, "SignalRequest_PublishDataTrackRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := c.Mark()
			if err := c.SendRaw(websocket.BinaryMessage, tc.data); err != nil {
				t.Fatal(err)
			}
			rr := expectRejection(t, c, mark, livekit.RequestResponse_UNSUPPORTED_TYPE, tc.text)
			if !strings.Contains(rr.Message, signaling.ErrUnknownSignal.Error()) {
				t.Errorf("message %q does not say the request is unsupported", rr.Message)
			}
			expectPong(t, c)
		})
	}
}

// rawSignal is a bare signal WebSocket: nothing is read, answered or sent
// unless the test does it.
type rawSignal struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan *livekit.SignalResponse
}

func dialRaw(t *testing.T, n *node, room, identity string, autoSubscribe bool) *rawSignal {
	t.Helper()
	q := url.Values{"access_token": {token(t, room, identity, nil)}, "protocol": {"16"}}
	if !autoSubscribe {
		q.Set("auto_subscribe", "0")
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctxTimeout(t, 5*time.Second), n.wsURL+"/rtc?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := &rawSignal{t: t, conn: conn, msgs: make(chan *livekit.SignalResponse, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.msgs)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			msg := &livekit.SignalResponse{}
			if err := proto.Unmarshal(data, msg); err != nil {
				t.Errorf("undecodable response: %v", err)
				return
			}
			select {
			case r.msgs <- msg:
			default:
				t.Error("raw client: too many unread responses")
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return r
}

func (r *rawSignal) send(req *livekit.SignalRequest) {
	r.t.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		r.t.Fatal(err)
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := r.conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next returns the next response, failing the test after timeout.
func (r *rawSignal) next(timeout time.Duration) *livekit.SignalResponse {
	r.t.Helper()
	select {
	case msg, ok := <-r.msgs:
		if !ok {
			r.t.Fatal("signal connection closed")
		}
		return msg
	case <-time.After(timeout):
		r.t.Fatalf("no response within %s", timeout)
	}
	return nil
}

// until skips responses until one matches pred; a RequestResponse that
// does not match fails the test.
func (r *rawSignal) until(what string, pred func(*livekit.SignalResponse) bool) *livekit.SignalResponse {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		msg := r.next(left)
		if pred(msg) {
			return msg
		}
		if rr := msg.GetRequestResponse(); rr != nil {
			r.t.Fatalf("waiting for %s, got rejection %s: %s", what, rr.Reason, rr.Message)
		}
	}
}

// badOfferBeforeJoin sends a publisher offer as the very first frame after
// the upgrade, before reading anything: join must still come first, then
// the answer.
func badOfferBeforeJoin(t *testing.T, n *node, room string, _ *bystanders) {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() //nolint:errcheck
	if _, err := pc.CreateDataChannel("_reliable", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, n, room, "mallory-early", true)
	r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{
		Offer: &livekit.SessionDescription{Type: "offer", Sdp: offer.SDP, Id: 41},
	}})
	if first := r.next(5 * time.Second); first.GetJoin() == nil {
		t.Fatalf("first message is %T, want join", first.Message)
	}
	ans := r.until("the answer", func(m *livekit.SignalResponse) bool { return m.GetAnswer() != nil }).GetAnswer()
	if ans.Id != 41 || !strings.HasPrefix(ans.Sdp, "v=0") {
		t.Fatalf("answer id %d sdp %.20q", ans.Id, ans.Sdp)
	}
	r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{}}})
	expectRemoved(t, n, room, "mallory-early")
}

// badGarbageAnswer answers the server's subscriber offers, the first and a
// renegotiation, with broken descriptions before the real answer: each
// broken answer is refused and negotiation keeps working.
func badGarbageAnswer(t *testing.T, n *node, room string, by *bystanders) {
	r := dialRaw(t, n, room, "mallory-garbage-answer", true)
	if first := r.next(5 * time.Second); first.GetJoin() == nil {
		t.Fatalf("first message is %T, want join", first.Message)
	}
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() //nolint:errcheck
	var lastID uint32
	nextOffer := func() *livekit.SessionDescription {
		return r.until("a subscriber offer", func(m *livekit.SignalResponse) bool {
			return m.GetOffer() != nil && m.GetOffer().Id > lastID
		}).GetOffer()
	}
	answerBadlyThenWell := func(offer *livekit.SessionDescription) {
		t.Helper()
		lastID = offer.Id
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.Sdp}); err != nil {
			t.Fatal(err)
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range garbageDescriptions(answer.SDP) {
			r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{
				Type: "answer", Id: offer.Id, Sdp: g.sdp,
			}}})
			rr := r.until("the rejection of an answer with "+g.name, func(m *livekit.SignalResponse) bool {
				return m.GetRequestResponse() != nil
			}).GetRequestResponse()
			if rr.Reason != livekit.RequestResponse_INVALID_REQUEST || !strings.Contains(rr.Message, "malformed session description") {
				t.Fatalf("answer with %s: %s %q", g.name, rr.Reason, rr.Message)
			}
		}
		if err := pc.SetLocalDescription(answer); err != nil {
			t.Fatal(err)
		}
		r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{
			Type: "answer", Id: offer.Id, Sdp: answer.SDP,
		}}})
	}
	subscribe := func(on bool) {
		r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{
			TrackSids: []string{by.aliceSid}, Subscribe: on,
		}}})
	}
	offer := nextOffer()
	if !strings.Contains(offer.Sdp, "m=video") {
		t.Fatalf("first offer lacks alice's video:\n%s", offer.Sdp)
	}
	answerBadlyThenWell(offer)
	subscribe(false)
	answerBadlyThenWell(nextOffer())
	subscribe(true)
	nextOffer()
	r.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{}}})
	expectRemoved(t, n, room, "mallory-garbage-answer")
}

type garbageSDP struct{ name, sdp string }

// garbageDescriptions breaks a valid description in the ways that must be
// refused before they reach the peer connection.
func garbageDescriptions(valid string) []garbageSDP {
	lines := strings.Split(strings.TrimSuffix(valid, "\r\n"), "\r\n")
	edit := func(f func(line string) []string) string {
		var out []string
		for _, l := range lines {
			out = append(out, f(l)...)
		}
		return strings.Join(out, "\r\n") + "\r\n"
	}
	drop := func(prefix string) string {
		return edit(func(l string) []string {
			if strings.HasPrefix(l, prefix) {
				return nil
			}
			return []string{l}
		})
	}
	afterMid := func(extra string) string {
		return edit(func(l string) []string {
			if strings.HasPrefix(l, "a=mid:") {
				return []string{l, extra}
			}
			return []string{l}
		})
	}
	all := []garbageSDP{
		{"syntax error", "v=0\r\nthis is not sdp"},
		{"empty description", ""},
		{"no media and no ICE", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"},
		{"no ICE ufrag", drop("a=ice-ufrag:")},
		{"no ICE pwd", drop("a=ice-pwd:")},
		{"no fingerprint", drop("a=fingerprint:")},
		{"fingerprint without hash", edit(func(l string) []string {
			if strings.HasPrefix(l, "a=fingerprint:") {
				return []string{"a=fingerprint:AB:CD"}
			}
			return []string{l}
		})},
		{"no mid", drop("a=mid:")},
		{"unknown payload type", edit(func(l string) []string {
			if strings.HasPrefix(l, "m=video ") || strings.HasPrefix(l, "m=audio ") {
				return []string{l + " 123"}
			}
			return []string{l}
		})},
		{"payload type out of range", edit(func(l string) []string {
			if strings.HasPrefix(l, "m=video ") || strings.HasPrefix(l, "m=audio ") {
				return []string{l + " 300"}
			}
			return []string{l}
		})},
		{"bad extmap", afterMid("a=extmap:x urn:bogus")},
		{"only unparsable candidates", edit(func(l string) []string {
			switch {
			case strings.HasPrefix(l, "a=candidate:"):
				return nil
			case strings.HasPrefix(l, "a=mid:"):
				return []string{l, "a=candidate:1 1 udp notanumber 127.0.0.1 9 typ host"}
			}
			return []string{l}
		})},
	}
	out := all[:0]
	for _, g := range all {
		if g.sdp != valid {
			out = append(out, g)
		}
	}
	return out
}

// badAnswerWithoutOffer answers the server's subscriber offer a second time.
func badAnswerWithoutOffer(t *testing.T, n *node, room string, _ *bystanders) {
	c := n.join(t, room, "mallory-answer", client.Options{NoAutoSubscribe: true})
	// Connected means the server applied the client's answer to its offer.
	eventually(t, 5*time.Second, "subscriber connection up", func() bool {
		return c.Sub.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	local := c.Sub.LocalDescription()
	if local == nil || local.Type != webrtc.SDPTypeAnswer {
		t.Fatalf("client has no answer: %v", local)
	}
	mark := c.Mark()
	mustSend(t, c, &livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{
		Answer: &livekit.SessionDescription{Type: "answer", Sdp: local.SDP, Id: 1},
	}})
	expectRejection(t, c, mark, livekit.RequestResponse_INVALID_REQUEST, "without an offer")
	expectPong(t, c)
}

func badOversizedFrame(t *testing.T, n *node, room string, _ *bystanders) {
	for _, size := range []int{signaling.MaxMessageSize + 1, 3 * signaling.MaxMessageSize} {
		c := n.join(t, room, "mallory-big", client.Options{})
		// The server may close before it read the whole frame: the write
		// error, if any, does not matter, the close frame does.
		_ = c.SendRaw(websocket.BinaryMessage, make([]byte, size))
		expectClose(t, c, []int{websocket.CloseMessageTooBig, websocket.CloseUnsupportedData}, "1048576 bytes")
		expectRemoved(t, n, room, "mallory-big")
	}
}

func badGarbageSDP(t *testing.T, n *node, room string, by *bystanders) {
	c := n.join(t, room, "mallory-sdp", client.Options{NoAutoSubscribe: true})
	// A realistic offer (audio, video, data) to break in various ways.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() //nolint:errcheck
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pc.CreateDataChannel("_reliable", nil); err != nil {
		t.Fatal(err)
	}
	valid, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range garbageDescriptions(valid.SDP) {
		mark := c.Mark()
		mustSend(t, c, &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{
			Offer: &livekit.SessionDescription{Type: "offer", Sdp: g.sdp, Id: uint32(100 + i)},
		}})
		expectRejection(t, c, mark, livekit.RequestResponse_INVALID_REQUEST, "malformed session description")
	}
	// A valid offer afterwards publishes normally.
	tr := newVideoTrack(t, "mallory-cam")
	info, _, err := c.Publish(ctxTimeout(t, 10*time.Second), tr, &livekit.AddTrackRequest{
		Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA,
	})
	if err != nil {
		t.Fatalf("publish after garbage SDP: %v", err)
	}
	startSource(t, tr, true)
	eventually(t, 10*time.Second, "bob receives mallory's video", func() bool { return by.bob.packets(info.Sid) > 30 })

	// Broken renegotiation offers are refused too, and a later track publishes.
	current, err := c.Pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range garbageDescriptions(current.SDP) {
		mark := c.Mark()
		mustSend(t, c, &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{
			Offer: &livekit.SessionDescription{Type: "offer", Sdp: g.sdp, Id: uint32(200 + i)},
		}})
		expectRejection(t, c, mark, livekit.RequestResponse_INVALID_REQUEST, "malformed session description")
	}
	mic := newAudioTrack(t, "mallory-mic")
	micInfo, _, err := c.Publish(ctxTimeout(t, 10*time.Second), mic, &livekit.AddTrackRequest{
		Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE,
	})
	if err != nil {
		t.Fatalf("publish after garbage renegotiation: %v", err)
	}
	startSource(t, mic, false)
	eventually(t, 10*time.Second, "bob receives mallory's audio", func() bool { return by.bob.packets(micInfo.Sid) > 20 })
	if got := by.bob.packets(info.Sid); got < 60 {
		t.Errorf("mallory's video stalled at bob: %d packets", got)
	}
}

func badTrickle(t *testing.T, n *node, room string, _ *bystanders) {
	c := n.join(t, room, "mallory-trickle", client.Options{NoAutoSubscribe: true})
	const cand = `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}`
	for _, tc := range []struct {
		name   string
		target livekit.SignalTarget
		js     string
		text   string
	}{
		{"unknown target", livekit.SignalTarget(7), cand, "unknown signal target"},
		{"malformed candidate JSON", livekit.SignalTarget_PUBLISHER, `{"candidate": 12`, "malformed ICE candidate"},
		{"candidate that is no candidate", livekit.SignalTarget_SUBSCRIBER, `{"candidate":"rm -rf /"}`, "malformed ICE candidate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := c.Mark()
			mustSend(t, c, &livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{
				Trickle: &livekit.TrickleRequest{CandidateInit: tc.js, Target: tc.target},
			}})
			rr := expectRejection(t, c, mark, livekit.RequestResponse_INVALID_REQUEST, tc.text)
			if rr.GetTrickle().GetCandidateInit() != tc.js {
				t.Errorf("rejection does not carry the trickle: %v", rr.Request)
			}
			expectPong(t, c)
		})
	}
}

// bogusPayload marks forged packets; no real packet of the tests looks like it.
var bogusPayload = bytes.Repeat([]byte{0xee}, 333)

// ssrcForger is a video track whose sender also writes packets with SSRCs
// that were never signalled, straight into the bound RTP stream (pion's
// static track would overwrite the SSRC).
type ssrcForger struct {
	*webrtc.TrackLocalStaticRTP
	mu        sync.Mutex
	w         webrtc.TrackLocalWriter
	pt        uint8
	midExt    uint8
	ridExt    uint8
	boundMid  string
	boundSSRC uint32
}

func (f *ssrcForger) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := f.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.w, f.pt, f.boundSSRC = ctx.WriteStream(), uint8(codec.PayloadType), uint32(ctx.SSRC())
	for _, ext := range ctx.HeaderExtensions() {
		switch ext.URI {
		case sdp.SDESMidURI:
			f.midExt = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			f.ridExt = uint8(ext.ID)
		}
	}
	return codec, nil
}

func (f *ssrcForger) Unbind(ctx webrtc.TrackLocalContext) error {
	f.mu.Lock()
	f.w = nil
	f.mu.Unlock()
	return f.TrackLocalStaticRTP.Unbind(ctx)
}

// forge writes one packet with the given SSRC; with layer it claims to be a
// simulcast layer of the track's m-line (MID and RID extensions).
func (f *ssrcForger) forge(ssrc uint32, seq uint16, layer bool) error {
	f.mu.Lock()
	w, pt, midExt, ridExt, mid := f.w, f.pt, f.midExt, f.ridExt, f.boundMid
	f.mu.Unlock()
	if w == nil {
		return nil
	}
	h := &rtp.Header{Version: 2, PayloadType: pt, SSRC: ssrc, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}
	if layer && midExt != 0 && ridExt != 0 && mid != "" {
		if err := h.SetExtension(midExt, []byte(mid)); err != nil {
			return err
		}
		if err := h.SetExtension(ridExt, []byte("h")); err != nil {
			return err
		}
	}
	_, err := w.WriteRTP(h, bogusPayload)
	return err
}

func badBogusSSRC(t *testing.T, n *node, room string, by *bystanders) {
	c := n.join(t, room, "mallory-ssrc", client.Options{NoAutoSubscribe: true})
	bobTracks := len(by.bob.tracks())
	f := &ssrcForger{TrackLocalStaticRTP: newVideoTrack(t, "forged-cam")}
	info, sender, err := c.Publish(ctxTimeout(t, 10*time.Second), f, &livekit.AddTrackRequest{
		Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA,
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for _, tr := range c.Pub.GetTransceivers() {
		if tr.Sender() == sender {
			f.mu.Lock()
			f.boundMid = tr.Mid()
			f.mu.Unlock()
		}
	}
	startSource(t, f.TrackLocalStaticRTP, true)
	eventually(t, 10*time.Second, "bob receives mallory's real video", func() bool { return by.bob.packets(info.Sid) > 30 })

	// Forge for a second, interleaved with the real media: plain unknown
	// SSRCs, and an unknown SSRC that claims to be a simulcast layer.
	stop, done := make(chan struct{}), make(chan struct{})
	var forged atomic.Int64
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		ssrcs := []uint32{0xdeadbeef, 0x1234, 0, 0xffffffff}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ssrc := ssrcs[i%len(ssrcs)]
			if ssrc == f.boundSSRC {
				continue
			}
			if err := f.forge(ssrc, uint16(i), false); err == nil {
				forged.Add(1)
			}
			if err := f.forge(0x5eed0000+uint32(i%3), uint16(i), true); err == nil {
				forged.Add(1)
			}
		}
	}()
	before := by.bob.packets(info.Sid)
	time.Sleep(time.Second)
	close(stop)
	<-done
	if forged.Load() < 100 {
		t.Fatalf("only %d forged packets written", forged.Load())
	}
	eventually(t, 5*time.Second, "mallory's real video keeps flowing", func() bool {
		return by.bob.packets(info.Sid) > before+50
	})
	time.Sleep(300 * time.Millisecond)
	if got := by.bob.tracks(); len(got) != bobTracks+1 {
		t.Errorf("bob receives tracks %v: want only mallory's real track added to the %d before", got, bobTracks)
	}
	mallory := n.rooms.Room(livekit.RoomName(room)).Participant("mallory-ssrc")
	if mallory == nil {
		t.Fatal("mallory was removed")
	}
	if tracks := mallory.Info().Tracks; len(tracks) != 1 || tracks[0].Sid != info.Sid {
		t.Errorf("mallory publishes %v, want only %s", tracks, info.Sid)
	}
	if b := by.bob.bogus.Load(); b != 0 {
		t.Errorf("%d forged packets were forwarded to bob", b)
	}
}
