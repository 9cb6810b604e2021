package signaling_test

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/signaling/client"
)

const (
	testKey    = "testkey"
	testSecret = "testsecret-testsecret-testsecret-0123"
)

// node is an in-process Fanout node on loopback.
type node struct {
	t         *testing.T
	transport *sfu.Transport
	rooms     *sfu.Manager
	http      *httptest.Server
	wsURL     string
}

type nodeOptions struct {
	// keepDecisions keeps the node's congestion decisions, logged if the
	// test fails (see decisionLogger).
	keepDecisions      bool
	participantTimeout time.Duration
	departureTimeout   time.Duration
	qualityInterval    time.Duration
	// net, when set, carries the node's media (a vnet network, with the
	// node's address on it in bindIP); signaling stays on loopback.
	net    transport.Net
	bindIP string
	// allInterfaces binds media to every interface and advertises their
	// own addresses (outside clients gather no loopback candidates).
	allInterfaces bool
	// connectTimeout of WHIP and WHEP sessions (0: the default).
	connectTimeout time.Duration
	// hlsForIngress gives WHIP broadcasters an HLS egress.
	hlsForIngress bool
	// listenAll serves HTTP on every interface (wsURL stays on loopback),
	// for clients in network namespaces.
	listenAll bool
	// limits and sfuLimits bound clients (zero fields: the defaults);
	// maxParticipants is room.max_participants.
	limits          signaling.Limits
	sfuLimits       sfu.Limits
	maxParticipants int
	// timeouts, when set, serve through signaling.NewHTTPServer with them.
	timeouts *signaling.HTTPTimeouts
}

func startNode(t *testing.T, opts nodeOptions) *node {
	t.Helper()
	tp := sfu.TransportParams{BindIP: "127.0.0.1", NodeIP: "127.0.0.1"}
	if opts.net != nil {
		tp = sfu.TransportParams{BindIP: opts.bindIP, Net: opts.net}
	}
	if opts.allInterfaces {
		tp = sfu.TransportParams{}
	}
	tr, err := sfu.NewTransport(tp)
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	if opts.participantTimeout == 0 {
		opts.participantTimeout = 20 * time.Second
	}
	if opts.departureTimeout == 0 {
		opts.departureTimeout = 20 * time.Second
	}
	log := testLogger()
	if opts.keepDecisions && os.Getenv("FANOUT_TEST_LOG") == "" {
		log = decisionLogger(t)
	}
	rooms := sfu.NewManager(sfu.ManagerParams{
		Transport:          tr,
		ServerInfo:         &livekit.ServerInfo{Version: "test", Protocol: 16, NodeId: "ND_test"},
		EmptyTimeout:       time.Minute,
		DepartureTimeout:   opts.departureTimeout,
		ParticipantTimeout: opts.participantTimeout,
		QualityInterval:    opts.qualityInterval,
		Limits:             opts.sfuLimits,
		MaxParticipants:    opts.maxParticipants,
		Logger:             log,
	})
	mux := http.NewServeMux()
	signaling.NewServer(signaling.ServerParams{
		Rooms: rooms, Keys: signaling.StaticKeys(map[string]string{testKey: testSecret}), Logger: log,
		ConnectTimeout: opts.connectTimeout, HLSForIngress: opts.hlsForIngress, Limits: opts.limits,
	}).Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	if opts.timeouts != nil {
		srv.Config = signaling.NewHTTPServer(mux, *opts.timeouts)
	}
	if opts.listenAll {
		l, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		_ = srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	if opts.listenAll {
		srv.URL = "http://127.0.0.1:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	}
	n := &node{t: t, transport: tr, rooms: rooms, http: srv, wsURL: "ws" + strings.TrimPrefix(srv.URL, "http")}
	t.Cleanup(n.stop)
	return n
}

func testLogger() *slog.Logger {
	if os.Getenv("FANOUT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (n *node) stop() {
	n.rooms.Close()
	n.http.CloseClientConnections()
	n.http.Close()
	n.transport.Close()
}

// token mints a join token; edit adjusts the grant.
func token(t *testing.T, room, identity string, edit func(*auth.VideoGrant)) string {
	t.Helper()
	g := &auth.VideoGrant{RoomJoin: true, Room: room}
	if edit != nil {
		edit(g)
	}
	tok, err := auth.NewAccessToken(testKey, testSecret).SetIdentity(identity).SetVideoGrant(g).
		SetValidFor(time.Hour).ToJWT()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok
}

func (n *node) join(t *testing.T, room, identity string, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, n.wsURL, token(t, room, identity, nil), opts)
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mediaSource sends synthetic RTP on a local track until stopped: VP8
// frames with a keyframe every keyEvery frames, or Opus packets.
type mediaSource struct {
	track *webrtc.TrackLocalStaticRTP
	stop  chan struct{}
	done  chan struct{}
	sent  atomic.Int64
	// payload is the size of a video packet's payload (0: 800 bytes, about
	// 1 Mbit/s of video).
	payload int
}

func newVideoTrack(t *testing.T, id string) *webrtc.TrackLocalStaticRTP {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, "stream-"+id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func newAudioTrack(t *testing.T, id string) *webrtc.TrackLocalStaticRTP {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id, "stream-"+id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// startSource sends packets every 20 ms: one VP8 frame (3 packets) or one Opus packet.
func startSource(t *testing.T, track *webrtc.TrackLocalStaticRTP, video bool) *mediaSource {
	s := &mediaSource{track: track, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run(video)
	t.Cleanup(s.Stop)
	return s
}

func (s *mediaSource) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *mediaSource) run(video bool) {
	defer close(s.done)
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var seq uint16 = 1000
	var ts uint32 = 5000
	for frame := 0; ; frame++ {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
		}
		if !video {
			_ = s.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}, Payload: make([]byte, 60)})
			seq++
			ts += 960
			s.sent.Add(1)
			continue
		}
		key := frame%25 == 0
		for i := 0; i < 3; i++ {
			payload := make([]byte, cmp.Or(s.payload, 800))
			if i == 0 {
				payload[0] = 0x10 // S bit, partition 0
				payload[1] = 0x01 // inter frame
				if key {
					payload[1] = 0x00
				}
			}
			_ = s.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: i == 2}, Payload: payload})
			seq++
			s.sent.Add(1)
		}
		ts += 4500
	}
}

// readCounter reads a remote track and counts packets.
type readCounter struct {
	packets atomic.Int64
	ssrcs   atomic.Int64
}

func countPackets(track *webrtc.TrackRemote, rc *readCounter) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := track.Read(buf); err != nil {
			return
		}
		rc.packets.Add(1)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
