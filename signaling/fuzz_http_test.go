package signaling

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
)

// The HTTP fuzz targets drive the real handlers (the mux Register fills,
// auth and limits included) with httptest recorders: no sockets, one
// request per input, and the node's state put back after each input.

const (
	fuzzKey    = "fuzzkey"
	fuzzSecret = "fuzzsecret-fuzzsecret-fuzzsecret-00"
)

// httpFuzzHarness is the signal fuzz harness's room and observer behind a
// Server with keys, and tokens of three strengths.
type httpFuzzHarness struct {
	*fuzzHarness
	rooms  RoomManager
	srv    *Server
	mux    *http.ServeMux
	tokens [3]string // none, a join token without API grants, every grant
}

func newHTTPFuzzHarness(f *testing.F) *httpFuzzHarness {
	base := newFuzzHarness(f)
	h := &httpFuzzHarness{fuzzHarness: base, rooms: base.srv.p.Rooms, mux: http.NewServeMux()}
	h.srv = NewServer(ServerParams{
		Rooms: h.rooms, Keys: StaticKeys(map[string]string{fuzzKey: fuzzSecret}), Logger: base.log,
		ConnectTimeout: time.Hour,
	})
	h.srv.Register(h.mux)
	yes := true
	for i, g := range []*auth.VideoGrant{
		{RoomJoin: true, Room: "fuzz"},
		{RoomJoin: true, Room: "fuzz", RoomAdmin: true, RoomCreate: true, RoomList: true, RoomRecord: true,
			CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes},
	} {
		tok, err := auth.NewAccessToken(fuzzKey, fuzzSecret).SetIdentity("fuzz-http").SetVideoGrant(g).
			SetValidFor(24 * time.Hour).ToJWT()
		if err != nil {
			f.Fatal(err)
		}
		h.tokens[i+1] = tok
	}
	return h
}

// serve runs one request through the mux; a 500 is a bug (every error a
// client can cause has a precise status).
func (h *httpFuzzHarness) serve(t *testing.T, method, target, token, ctype string, body []byte, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(string(body)))
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.mux.ServeHTTP(rec, req)
	if rec.Code == http.StatusInternalServerError {
		t.Fatalf("%s %s: 500 %s", method, target, rec.Body.String())
	}
	return rec
}

// restore puts the node back as newFuzzHarness made it: room "fuzz" with
// its observer, no other room, no egress running, no WHIP/WHEP session
// but keep's.
func (h *httpFuzzHarness) restore(tb testing.TB, keep *httpSession) {
	for _, r := range h.rooms.Rooms(nil) {
		if r.Name() != "fuzz" {
			_ = h.rooms.DeleteRoom(r.Name())
		}
	}
	h.srv.sessions.mu.Lock()
	var ended []*httpSession
	for _, s := range h.srv.sessions.sessions {
		if s != keep {
			ended = append(ended, s)
		}
	}
	h.srv.sessions.mu.Unlock()
	for _, s := range ended {
		s.part.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
		h.srv.sessions.remove(s)
	}
	h.srv.egress.mu.Lock()
	for id, rec := range h.srv.egress.egresses {
		rec.once.Do(func() { close(rec.stop) })
		delete(h.srv.egress.egresses, id)
	}
	h.srv.egress.mu.Unlock()
	if room := h.rooms.Room("fuzz"); room == nil || room != h.room {
		closeFuzzParticipant(h.observer, h.observerSess)
		h.room, _, _ = h.rooms.GetOrCreateRoom("fuzz", sfu.RoomOptions{})
		h.observer, h.observerSess = h.join(tb, "observer")
	} else if h.observer.Closed() {
		closeFuzzParticipant(h.observer, h.observerSess)
		h.observer, h.observerSess = h.join(tb, "observer")
	}
	dropQueued(h.observerSess)
}

// roomServiceMethods and egressMethods are every method of the services.
var (
	roomServiceMethods = []string{"CreateRoom", "ListRooms", "DeleteRoom", "ListParticipants", "GetParticipant",
		"RemoveParticipant", "MutePublishedTrack", "UpdateParticipant", "UpdateSubscriptions", "SendData",
		"UpdateRoomMetadata", "ForwardParticipant", "MoveParticipant", "PerformRpc", "NoSuchMethod"}
	egressMethods = []string{"StartRoomCompositeEgress", "StartWebEgress", "StartParticipantEgress",
		"StartTrackCompositeEgress", "StartTrackEgress", "UpdateLayout", "UpdateStream", "ListEgress",
		"StopEgress", "StartEgress", "NoSuchMethod"}
)

// fuzzTwirp sends one Twirp request: method and token picked by index,
// body as JSON or protobuf.
func (h *httpFuzzHarness) fuzzTwirp(t *testing.T, service string, methods []string, method, token uint8, json bool, body []byte) {
	running := runtime.NumGoroutine()
	defer func() {
		h.restore(t, nil)
		settle(running)
	}()
	ctype := "application/protobuf"
	if json {
		ctype = "application/json"
	}
	path := fmt.Sprintf("/twirp/livekit.%s/%s", service, methods[int(method)%len(methods)])
	h.serve(t, http.MethodPost, path, h.tokens[int(token)%len(h.tokens)], ctype, body, nil)
}

// FuzzTwirpRoomService feeds arbitrary JSON and protobuf bodies to every
// RoomService method, with no token, a token without API grants and one
// with every grant: nothing may panic or answer 500, and the node is
// whole afterwards.
//
//	go test -run xxx -fuzz FuzzTwirpRoomService -fuzztime 60s ./signaling/
func FuzzTwirpRoomService(f *testing.F) {
	f.Add(uint8(3), uint8(2), true, []byte(`{"room":"fuzz"}`))
	f.Add(uint8(7), uint8(2), true, []byte(`{"room":"fuzz","identity":"observer","metadata":"m","attributes":{"a":"b"},"permission":{"can_subscribe":true}}`))
	f.Add(uint8(9), uint8(2), true, []byte(`{"room":"fuzz","data":"aGVsbG8=","kind":"RELIABLE","destination_identities":["observer"]}`))
	f.Add(uint8(0), uint8(2), false, []byte("\n\x03new\x10\x05"))
	f.Add(uint8(1), uint8(1), true, []byte(`{}`))
	h := newHTTPFuzzHarness(f)
	limitMinimizeTime(f, 5*time.Second)
	f.Fuzz(func(t *testing.T, method, token uint8, json bool, body []byte) {
		h.fuzzTwirp(t, "RoomService", roomServiceMethods, method, token, json, body)
	})
}

// FuzzTwirpEgress is FuzzTwirpRoomService for the Egress service.
//
//	go test -run xxx -fuzz FuzzTwirpEgress -fuzztime 60s ./signaling/
func FuzzTwirpEgress(f *testing.F) {
	f.Add(uint8(2), uint8(2), true, []byte(`{"room_name":"fuzz","identity":"observer","segment_outputs":[{"protocol":"HLS_PROTOCOL"}]}`))
	f.Add(uint8(3), uint8(2), true, []byte(`{"room_name":"fuzz","video_track_id":"TR_x","segment_outputs":[{}]}`))
	f.Add(uint8(7), uint8(2), true, []byte(`{"room_name":"fuzz","active":true}`))
	f.Add(uint8(8), uint8(2), false, []byte("\n\x05EG_xx"))
	h := newHTTPFuzzHarness(f)
	limitMinimizeTime(f, 5*time.Second)
	f.Fuzz(func(t *testing.T, method, token uint8, json bool, body []byte) {
		h.fuzzTwirp(t, "Egress", egressMethods, method, token, json, body)
	})
}

// whipOps are the WHIP and WHEP requests FuzzWHIPWHEP makes; "{live}" is
// the resource of a WHIP session kept open across inputs.
var whipOps = []struct{ method, target string }{
	{http.MethodPost, "/whip"},
	{http.MethodPost, "/whep?participant=nobody"},
	{http.MethodPost, "/whep"},
	{http.MethodPatch, "/whip/{live}"},
	{http.MethodPatch, "/whep/{live}"},
	{http.MethodPatch, "/whip/nosuchsession"},
	{http.MethodDelete, "/whep/nosuchsession"},
	{http.MethodOptions, "/whip"},
	{http.MethodGet, "/whep"},
}

var whipContentTypes = []string{contentSDP, contentSDPFrag, "text/plain", ""}

// FuzzWHIPWHEP feeds arbitrary bodies, content types and If-Match headers
// to the WHIP and WHEP endpoints and session resources: offers to POST,
// trickle and ICE restart fragments to the PATCH of a live session.
// Nothing may panic or answer 500.
//
//	go test -run xxx -fuzz FuzzWHIPWHEP -fuzztime 60s ./signaling/
func FuzzWHIPWHEP(f *testing.F) {
	f.Add(uint8(0), uint8(0), "", fuzzOfferSDP)
	f.Add(uint8(1), uint8(0), "", strings.ReplaceAll(fuzzOfferSDP, "a=sendonly", "a=recvonly"))
	f.Add(uint8(3), uint8(1), "*", "a=ice-ufrag:fzUf\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n")
	f.Add(uint8(3), uint8(1), `"x"`, "a=ice-ufrag:new1\r\na=ice-pwd:newnewnewnewnewnewnewnew\r\n")
	f.Add(uint8(5), uint8(1), "", "")
	h := newHTTPFuzzHarness(f)
	live := h.liveWHIP(f)
	limitMinimizeTime(f, 5*time.Second)
	f.Fuzz(func(t *testing.T, op, ctype uint8, ifMatch, body string) {
		running := runtime.NumGoroutine()
		defer func() {
			h.restore(t, live)
			settle(running)
		}()
		if live.part.Closed() {
			live = h.liveWHIP(t)
		}
		o := whipOps[int(op)%len(whipOps)]
		hdr := http.Header{}
		if ifMatch != "" {
			hdr.Set("If-Match", ifMatch)
		}
		target := strings.ReplaceAll(o.target, "{live}", live.id)
		h.serve(t, o.method, target, h.tokens[2], whipContentTypes[int(ctype)%len(whipContentTypes)], []byte(body), hdr)
	})
}

// liveWHIP opens the WHIP session PATCH inputs go to.
func (h *httpFuzzHarness) liveWHIP(tb testing.TB) *httpSession {
	tok, err := auth.NewAccessToken(fuzzKey, fuzzSecret).SetIdentity("live-whip").
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "fuzz"}).SetValidFor(24 * time.Hour).ToJWT()
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/whip", strings.NewReader(fuzzOfferSDP))
	req.Header.Set("Content-Type", contentSDP)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		tb.Fatalf("live WHIP session: %d %s", rec.Code, rec.Body.String())
	}
	id := strings.TrimPrefix(rec.Header().Get("Location"), "/whip/")
	s := h.srv.sessions.get("whip", id)
	if s == nil {
		tb.Fatalf("live WHIP session %q not registered", id)
	}
	return s
}
