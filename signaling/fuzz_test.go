package signaling

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/sfu"
)

// FuzzSignalRequest feeds arbitrary frames, as protobuf and as JSON, through
// the signal handler of a participant in an in-process room: decoding and
// dispatch must never panic, whatever the client sends.
//
//	go test -run xxx -fuzz FuzzSignalRequest -fuzztime 60s ./signaling/
func FuzzSignalRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data)
	}
	h := newFuzzHarness(f)
	limitMinimizeTime(f, 5*time.Second)
	f.Fuzz(func(t *testing.T, data []byte) {
		h.handle(t, data)
	})
}

// limitMinimizeTime lowers -test.fuzzminimizetime unless it was given.
// One input here costs a participant (two peer connections) and inputs
// carry whole SDPs: minimizing one for the default 60 s would take the
// whole of a short fuzzing run.
func limitMinimizeTime(f *testing.F, d time.Duration) {
	given := false
	flag.Visit(func(fl *flag.Flag) { given = given || fl.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", d.String()); err != nil {
			f.Logf("cannot lower the minimization time: %v", err)
		}
	}
}

// fuzzHarness is one node with a room holding an observer. Every input
// gets a fresh participant, closed again before the input is done, so
// that inputs do not depend on each other and no work of one input runs
// on (and adds coverage to) the next. Participants are not started: a
// started one negotiates and gathers candidates in the background. Their
// sessions have no WebSocket; queued responses are dropped.
type fuzzHarness struct {
	log          *slog.Logger
	srv          *Server
	room         *sfu.Room
	observer     *sfu.Participant
	observerSess *session
}

func newFuzzHarness(f *testing.F) *fuzzHarness {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := sfu.NewTransport(sfu.TransportParams{BindIP: "127.0.0.1"})
	if err != nil {
		f.Fatalf("transport: %v", err)
	}
	rooms := sfu.NewManager(sfu.ManagerParams{
		Transport:  tr,
		ServerInfo: &livekit.ServerInfo{Version: "fuzz", Protocol: 16, NodeId: "ND_fuzz"},
		// Nothing may time out under the fuzzer.
		EmptyTimeout: time.Hour, DepartureTimeout: time.Hour, ParticipantTimeout: time.Hour,
		Logger: log,
	})
	room, _, err := rooms.GetOrCreateRoom("fuzz", sfu.RoomOptions{})
	if err != nil {
		f.Fatalf("room: %v", err)
	}
	h := &fuzzHarness{log: log, room: room, srv: NewServer(ServerParams{Rooms: rooms, Logger: log})}
	h.observer, h.observerSess = h.join(f, "observer")
	f.Cleanup(func() {
		closeFuzzParticipant(h.observer, h.observerSess)
		rooms.Close()
		tr.Close()
	})
	return h
}

// join adds a participant with every permission.
func (h *fuzzHarness) join(tb testing.TB, identity string) (*sfu.Participant, *session) {
	sess := newSession(h.log)
	part, join, err := h.room.Join(sfu.ParticipantParams{
		Identity: livekit.ParticipantIdentity(identity),
		Permission: &livekit.ParticipantPermission{
			CanSubscribe: true, CanPublish: true, CanPublishData: true, CanUpdateMetadata: true,
		},
		AutoSubscribe: true, ClientProtocol: 16, Signal: sess,
	})
	if err != nil {
		tb.Fatalf("join %s: %v", identity, err)
	}
	sess.sendJoin(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: join}})
	return part, sess
}

// closeFuzzParticipant closes a participant and drops its queued responses.
func closeFuzzParticipant(part *sfu.Participant, sess *session) {
	part.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
	sess.CloseSignal()
	for range sess.queue {
	}
}

// dropQueued empties a live session's queue without blocking.
func dropQueued(sess *session) {
	for {
		select {
		case _, ok := <-sess.queue:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// settle waits (a little) for the goroutines of closed peer connections to
// end, so that they add no coverage to the next input: coverage that comes
// and goes with timing makes the fuzzer chase inputs it cannot reproduce.
func settle(running int) {
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > running && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
}

// ended reports whether a participant can take no more requests.
func ended(part *sfu.Participant, sess *session) bool {
	sess.mu.Lock()
	closing := sess.closing
	sess.mu.Unlock()
	return closing || part.Closed()
}

// handle decodes one input as a binary and as a text frame and dispatches
// what decodes, as the read loop would. A participant (two peer
// connections, each with a fresh certificate) is only made for an input
// that decodes.
func (h *fuzzHarness) handle(t *testing.T, data []byte) {
	var (
		part    *sfu.Participant
		sess    = newSession(h.log)
		joined  bool
		running = runtime.NumGoroutine()
	)
	defer func() {
		if part != nil {
			closeFuzzParticipant(part, sess)
		}
		dropQueued(h.observerSess)
		if joined {
			settle(running)
		}
	}()
	for _, kind := range []int{websocket.BinaryMessage, websocket.TextMessage} {
		req, err := decodeRequest(sess, kind, data)
		if err != nil {
			if !errors.Is(err, ErrMalformedSignal) {
				t.Fatalf("decode error %v does not wrap ErrMalformedSignal", err)
			}
			continue
		}
		if part == nil || ended(part, sess) {
			if part != nil {
				closeFuzzParticipant(part, sess)
			}
			part, sess = h.join(t, "fuzzer")
			joined = true
		}
		if leave := h.srv.dispatch(sess, part, req); leave {
			closeFuzzParticipant(part, sess)
			part = nil
		}
	}
}

type fuzzSeed struct {
	name string
	data []byte
}

// fuzzOfferSDP is a complete publisher offer (audio, video, data) so that
// mutations reach deep into offer handling.
const fuzzOfferSDP = "v=0\r\n" +
	"o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0 1 2\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS stream\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:fzUf\r\n" +
	"a=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendonly\r\n" +
	"a=msid:stream mic\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=ssrc:1001 cname:fuzz\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:fzUf\r\n" +
	"a=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\n" +
	"a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n" +
	"a=sendonly\r\n" +
	"a=msid:stream cam\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtcp-fb:96 nack\r\n" +
	"a=rtcp-fb:96 nack pli\r\n" +
	"a=rtpmap:97 rtx/90000\r\n" +
	"a=fmtp:97 apt=96\r\n" +
	"a=rid:f send\r\n" +
	"a=rid:h send\r\n" +
	"a=simulcast:send f;h\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:fzUf\r\n" +
	"a=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\n" +
	"a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:2\r\n" +
	"a=sctp-port:5000\r\n"

// fuzzSeeds are meaningful requests of every kind the handler knows, plus
// a few it does not; testdata/fuzz/FuzzSignalRequest holds the same seeds.
func fuzzSeeds() []fuzzSeed {
	req := func(name string, m *livekit.SignalRequest) fuzzSeed {
		data, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		return fuzzSeed{name, data}
	}
	text := func(name, js string) fuzzSeed { return fuzzSeed{name, []byte(js)} }
	const cand = `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}`
	return []fuzzSeed{
		req("offer-garbage-sdp", &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\nthis is not sdp", Id: 1}}}),
		req("offer-full", &livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: fuzzOfferSDP, Id: 2}}}),
		req("answer-without-offer", &livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{Type: "answer", Sdp: fuzzOfferSDP, Id: 1}}}),
		req("trickle-bad-json", &livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: `{"candidate": 12`, Target: livekit.SignalTarget_PUBLISHER}}}),
		req("trickle-unknown-target", &livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: cand, Target: 7}}}),
		req("trickle-subscriber", &livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: cand, Target: livekit.SignalTarget_SUBSCRIBER}}}),
		req("add-track-video", &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
			Cid: "cam", Name: "cam", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, Width: 1280, Height: 720,
			Layers: []*livekit.VideoLayer{{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720}, {Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180}},
		}}}),
		req("add-track-bad-type", &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: "x", Type: livekit.TrackType_DATA}}}),
		req("mute-unknown-track", &livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_unknown", Muted: true}}}),
		req("subscription", &livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{
			TrackSids: []string{"TR_a"}, Subscribe: true,
			ParticipantTracks: []*livekit.ParticipantTracks{{ParticipantSid: "PA_b", TrackSids: []string{"TR_b"}}},
		}}}),
		req("unsubscription", &livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_a"}}}}),
		req("track-setting", &livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{
			TrackSids: []string{"TR_a"}, Disabled: true, Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180, Fps: 15,
		}}}),
		req("update-metadata", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{UpdateMetadata: &livekit.UpdateParticipantMetadata{
			Name: "n", Metadata: "m", Attributes: map[string]string{"k": "v", "gone": ""}, RequestId: 9,
		}}}),
		req("subscription-permission", &livekit.SignalRequest{Message: &livekit.SignalRequest_SubscriptionPermission{SubscriptionPermission: &livekit.SubscriptionPermission{
			TrackPermissions: []*livekit.TrackPermission{{ParticipantIdentity: "observer", TrackSids: []string{"TR_a"}}, {ParticipantSid: "PA_x", AllTracks: true}},
		}}}),
		req("ping", &livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 1234}}),
		req("ping-req", &livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 1234, Rtt: 20}}}),
		req("leave", &livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_CLIENT_INITIATED}}}),
		req("update-layers", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateLayers{UpdateLayers: &livekit.UpdateVideoLayers{TrackSid: "TR_a"}}}),
		req("sync-state", &livekit.SignalRequest{Message: &livekit.SignalRequest_SyncState{SyncState: &livekit.SyncState{}}}),
		req("unsupported-update-audio-track", &livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateAudioTrack{UpdateAudioTrack: &livekit.UpdateLocalAudioTrack{TrackSid: "TR_a"}}}),
		req("empty", &livekit.SignalRequest{}),
		{"unknown-field-999", protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 42)},
		text("json-offer", `{"offer":{"type":"offer","sdp":"v=0\r\n","id":3}}`),
		text("json-trickle", `{"trickle":{"candidateInit":"{\"candidate\":\"\"}","target":"SUBSCRIBER"}}`),
		text("json-ping", `{"ping":"77"}`),
		text("json-unknown-field", `{"bogus":{"x":1}}`),
	}
}
