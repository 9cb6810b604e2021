package signaling_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"github.com/twitchtv/twirp"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// The soak test runs a node under many join / publish / subscribe / leave
// cycles from concurrent clients, with random mutes, metadata updates and
// RoomService calls, and checks that it gives back what it took: its
// goroutines return to the idle count and its memory stays flat.
//
// FANOUT_SOAK_CYCLES (default 200) and FANOUT_SOAK_CLIENTS (default 20)
// size it; `make soak` runs 1,000 cycles. FANOUT_SOAK_REPORT names a file
// that receives the figures as a Markdown table row block.

// soakRooms is how many rooms the clients spread over.
const soakRooms = 3

// soakSampleEvery is the cycle interval of the RSS curve.
const soakSampleEvery = 100

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// soakStats is what the soak run measured.
type soakStats struct {
	mu        sync.Mutex
	rssCurve  []string // "cycles:MiB"
	rssAt100  uint64
	heapAt100 uint64 // the Go heap in use then (compared under -race)
	errs      []string
	cycles    atomic.Int64
	published atomic.Int64
	rsCalls   atomic.Int64
	mutes     atomic.Int64
	metadata  atomic.Int64
	vanished  atomic.Int64
	httpc     *http.Client // RoomService calls, closed at the end
}

func (s *soakStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func TestSoak(t *testing.T) {
	cycles := envInt("FANOUT_SOAK_CYCLES", 200)
	clients := envInt("FANOUT_SOAK_CLIENTS", 20)
	// No goleak here: a peer connection pion wedged keeps all its own
	// goroutines; the soak accounts for goroutines itself (soakLeaks).
	stuckBefore := sfu.StuckPeerConnectionCloses()
	n := startNode(t, nodeOptions{participantTimeout: 2 * time.Second, departureTimeout: time.Second})
	idle := settledGoroutines(0, 0)
	idleFanout := fanoutGoroutines()
	t.Logf("soak: %d cycles from %d clients; idle goroutines %d, rss %.1f MiB", cycles, clients, idle, mib(rssBytes()))

	st := &soakStats{httpc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}}
	defer st.httpc.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				i := int(next.Add(1))
				if i > cycles {
					return
				}
				soakCycle(n, st, rng, w, i)
				if done := st.cycles.Add(1); done%soakSampleEvery == 0 {
					st.sampleRSS(done)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(st.errs) > 0 {
		t.Fatalf("soak cycles failed (%d shown):\n%s", len(st.errs), strings.Join(st.errs, "\n"))
	}
	// Everybody left or vanished: the rooms close after the departure
	// timeout, vanished participants after the participant timeout.
	if !waitFor(20*time.Second, func() bool { return len(n.rooms.Rooms(nil)) == 0 }) {
		var left []string
		for _, r := range n.rooms.Rooms(nil) {
			for _, p := range r.Participants() {
				left = append(left, fmt.Sprintf("%s/%s(closed=%v)", r.Name(), p.Identity(), p.Closed()))
			}
		}
		buf := make([]byte, 8<<20)
		t.Fatalf("rooms still open 20 s after the last cycle, with %v\n%s", left, buf[:runtime.Stack(buf, true)])
	}
	st.httpc.CloseIdleConnections()
	after := settledGoroutines(idle, 20*time.Second)
	finalRSS := rssBytes()
	st.rssCurve = append(st.rssCurve, fmt.Sprintf("end:%.1f", mib(finalRSS)))
	t.Logf("soak: %d cycles in %s (%d publishes, %d RoomService calls, %d mutes, %d metadata updates, %d vanished)",
		st.cycles.Load(), elapsed.Round(time.Second), st.published.Load(), st.rsCalls.Load(), st.mutes.Load(), st.metadata.Load(), st.vanished.Load())
	t.Logf("soak: goroutines idle %d, after %d; RSS MiB by cycle %s", idle, after, strings.Join(st.rssCurve, " "))
	writeSoakReport(t, cycles, clients, elapsed, idle, after, st)
	soakLeaks(t, idle, after, idleFanout, sfu.StuckPeerConnectionCloses()-stuckBefore)
	switch {
	case raceEnabled:
		// The race detector's shadow memory makes RSS grow with every
		// allocation ever made: the Go heap is what can be compared.
		if st.heapAt100 > 0 && float64(heapInUse()) > 1.10*float64(st.heapAt100) {
			t.Fatalf("heap grew: %.1f MiB at the end, %.1f MiB after %d cycles (more than 10%%)", mib(heapInUse()), mib(st.heapAt100), soakSampleEvery)
		}
	case st.rssAt100 > 0 && float64(finalRSS) > 1.10*float64(st.rssAt100):
		t.Fatalf("RSS grew: %.1f MiB at the end, %.1f MiB after %d cycles (more than 10%%)", mib(finalRSS), mib(st.rssAt100), soakSampleEvery)
	}
	// The node still serves: a fresh pair publishes and receives.
	soakCheckServes(t, n)
}

// soakCycle is one client's life: join, publish, act at random, leave.
func soakCycle(n *node, st *soakStats, rng *rand.Rand, w, i int) {
	room := fmt.Sprintf("soak-%d", rng.IntN(soakRooms))
	identity := fmt.Sprintf("w%d-c%d", w, i)
	tok, err := soakToken(room, identity)
	if err != nil {
		st.fail("%s: token: %v", identity, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, n.wsURL, tok, client.Options{})
	if err != nil {
		st.fail("%s: join: %v", identity, err)
		return
	}
	watchTracks(c) // subscribed tracks are read, as a real client does
	var sources []*mediaSource
	defer func() {
		for _, s := range sources {
			s.Stop()
		}
	}()
	var infos []*livekit.TrackInfo
	kinds := []bool{false} // audio, and video every other time
	if rng.IntN(2) == 0 {
		kinds = append(kinds, true)
	}
	for _, video := range kinds {
		info, src, err := soakPublish(ctx, c, video)
		if err != nil {
			st.fail("%s: publish: %v", identity, err)
			c.Close()
			return
		}
		st.published.Add(1)
		infos, sources = append(infos, info), append(sources, src)
	}
	for step := 0; step < 2+rng.IntN(4); step++ {
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		if err := soakAct(ctx, n, st, rng, c, room, identity, infos); err != nil {
			st.fail("%s: %v", identity, err)
		}
	}
	if rng.IntN(5) == 0 {
		st.vanished.Add(1)
		c.Drop()
		return
	}
	c.Close()
}

func soakPublish(ctx context.Context, c *client.Client, video bool) (*livekit.TrackInfo, *mediaSource, error) {
	var tr *webrtc.TrackLocalStaticRTP
	var req *livekit.AddTrackRequest
	var err error
	if video {
		tr, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "stream")
		req = &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA, Width: 640, Height: 360}
	} else {
		tr, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "stream")
		req = &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE}
	}
	if err != nil {
		return nil, nil, err
	}
	info, _, err := c.Publish(ctx, tr, req)
	if err != nil {
		return nil, nil, err
	}
	s := &mediaSource{track: tr, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run(video)
	return info, s, nil
}

// soakAct does one random thing a real participant or its backend does.
func soakAct(ctx context.Context, n *node, st *soakStats, rng *rand.Rand, c *client.Client, room, identity string, infos []*livekit.TrackInfo) error {
	switch rng.IntN(4) {
	case 0:
		st.mutes.Add(1)
		info := infos[rng.IntN(len(infos))]
		return c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{
			Mute: &livekit.MuteTrackRequest{Sid: info.Sid, Muted: rng.IntN(2) == 0},
		}})
	case 1:
		st.metadata.Add(1)
		return c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_UpdateMetadata{
			UpdateMetadata: &livekit.UpdateParticipantMetadata{Metadata: fmt.Sprintf("m%d", rng.IntN(1000))},
		}})
	default:
		st.rsCalls.Add(1)
		return soakRoomService(ctx, n, st, rng, room, identity, infos)
	}
}

// soakRoomService makes one RoomService call about the client, as an
// application backend would.
func soakRoomService(ctx context.Context, n *node, st *soakStats, rng *rand.Rand, room, identity string, infos []*livekit.TrackInfo) error {
	tok, err := auth.NewAccessToken(testKey, testSecret).SetIdentity("backend").
		SetVideoGrant(&auth.VideoGrant{RoomAdmin: true, Room: room}).SetValidFor(time.Hour).ToJWT()
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	ctx, err = twirp.WithHTTPRequestHeaders(ctx, h)
	if err != nil {
		return err
	}
	rs := livekit.NewRoomServiceProtobufClient(n.http.URL, st.httpc)
	switch rng.IntN(4) {
	case 0:
		_, err = rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: room})
	case 1:
		_, err = rs.UpdateParticipant(ctx, &livekit.UpdateParticipantRequest{Room: room, Identity: identity, Metadata: "from-api"})
	case 2:
		_, err = rs.MutePublishedTrack(ctx, &livekit.MuteRoomTrackRequest{Room: room, Identity: identity, TrackSid: infos[0].Sid, Muted: rng.IntN(2) == 0})
	default:
		_, err = rs.SendData(ctx, &livekit.SendDataRequest{Room: room, Data: []byte("hello"), Kind: livekit.DataPacket_RELIABLE})
	}
	if err != nil {
		return fmt.Errorf("room service: %w", err)
	}
	return nil
}

func soakToken(room, identity string) (string, error) {
	yes := true
	return auth.NewAccessToken(testKey, testSecret).SetIdentity(identity).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room, CanUpdateOwnMetadata: &yes}).
		SetValidFor(time.Hour).ToJWT()
}

// soakCheckServes checks that the node still forwards media after the soak.
func soakCheckServes(t *testing.T, n *node) {
	pub := n.join(t, "after-soak", "alice", client.Options{})
	sub := n.join(t, "after-soak", "bob", client.Options{})
	tc := watchTracks(sub)
	info, _ := publishVideo(t, pub, "cam")
	eventually(t, 10*time.Second, "media after the soak", func() bool { return tc.packets(info.Sid) > 20 })
}

// sampleRSS records the RSS after a garbage collection, on the curve.
func (s *soakStats) sampleRSS(cycles int64) {
	runtime.GC()
	debug.FreeOSMemory()
	rss := rssBytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	if cycles == soakSampleEvery {
		s.rssAt100, s.heapAt100 = rss, heapInUse()
	}
	s.rssCurve = append(s.rssCurve, fmt.Sprintf("%d:%.1f", cycles, mib(rss)))
}

// waitFor polls cond until it holds or limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// settledGoroutines waits up to limit for the goroutine count to fall to
// target (0: just let it settle a moment) and returns it.
func settledGoroutines(target int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		time.Sleep(200 * time.Millisecond)
		n := runtime.NumGoroutine()
		if target == 0 || n <= target || time.Now().After(deadline) {
			return n
		}
	}
}

var stuckInPionRE = regexp.MustCompile(`\[chan send[^\]]*\]:\n` + regexp.QuoteMeta(pionStuckDecrypt) +
	`|\[chan receive[^\]]*\]:\n` + regexp.QuoteMeta(pionStuckClose))

// soakLeaks fails the soak if goroutines did not return to the idle
// count. Two kinds left by pion are told apart and reported, not failed:
// SRTP sessions wedged on a new stream (stuckInPion), and, when the node
// gave up closing a peer connection pion wedged (wedged > 0), the
// goroutines of those connections, which run no Fanout code but the close
// that waits for them. Every goroutine running Fanout code must be gone.
func soakLeaks(t *testing.T, idle, after, idleFanout int, wedged int64) {
	t.Helper()
	stuck, fanout := stuckInPion(), fanoutGoroutines()
	t.Logf("soak: goroutines left: %d of pion's wedged SRTP sessions, %d peer connection closes given up on, %d running Fanout code (idle %d)",
		stuck, wedged, fanout, idleFanout)
	dump := func() string {
		buf := make([]byte, 8<<20)
		return string(buf[:runtime.Stack(buf, true)])
	}
	if fanout > idleFanout {
		t.Fatalf("goroutines running Fanout code did not end: %d, idle %d\n%s", fanout, idleFanout, dump())
	}
	if wedged == 0 && after-stuck > idle {
		t.Fatalf("goroutines did not return to the idle count: %d (%d of them pion's wedged SRTP sessions) > %d\n%s",
			after, stuck, idle, dump())
	}
}

// fanoutGoroutines counts the goroutines with Fanout code on their stack,
// but for the close the node gave up on (sfu's peerConn.close goroutine,
// which waits in pion for good by design).
func fanoutGoroutines() int {
	buf := make([]byte, 8<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "github.com/fanout-sfu/fanout/") && !strings.Contains(g, "fanout/sfu.(*peerConn).close.func1") &&
			!strings.Contains(g, "signaling_test.TestSoak") {
			n++
		}
	}
	return n
}

// stuckInPion counts the goroutines pion/srtp left blocked for good.
func stuckInPion() int {
	buf := make([]byte, 8<<20)
	dump := string(buf[:runtime.Stack(buf, true)])
	return len(stuckInPionRE.FindAllStringIndex(dump, -1))
}

// rssBytes is the process's resident set size, after a collection.
func rssBytes() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// heapInUse is the Go heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func writeSoakReport(t *testing.T, cycles, clients int, elapsed time.Duration, idle, after int, st *soakStats) {
	path := os.Getenv("FANOUT_SOAK_REPORT")
	if path == "" {
		return
	}
	report := fmt.Sprintf("| %d | %d | %s | %d | %d | %s |\n", cycles, clients, elapsed.Round(time.Second), idle, after, strings.Join(st.rssCurve, " "))
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		t.Errorf("soak report: %v", errors.Unwrap(err))
	}
}
