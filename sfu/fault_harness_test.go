package sfu

import (
	"bytes"
	"io"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// This file holds the harness of the TestFault tests: a real room on a real
// transport (loopback UDP), participants whose signal is a counting sink,
// and tracks fed by a reader the test controls.

// watchdog fails the test with a goroutine dump when done is not closed
// within d: a deadlock shows up as a clear failure, not a hung suite.
func watchdog(t *testing.T, what string, d time.Duration, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		t.Fatalf("%s did not return within %v (deadlock?); goroutines:\n%s", what, d, buf.String())
	}
}

// within runs f on its own goroutine and fails the test if it does not
// return within d.
func within(t *testing.T, what string, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	watchdog(t, what, d, done)
}

// countingSignal is a SignalSink that counts messages by type.
type countingSignal struct {
	mu     sync.Mutex
	count  map[string]int
	closed atomic.Bool
}

func (s *countingSignal) SendSignal(msg *livekit.SignalResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	s.count[msgName(msg)]++
}

func (s *countingSignal) CloseSignal() { s.closed.Store(true) }

func (s *countingSignal) n(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[name]
}

func msgName(msg *livekit.SignalResponse) string {
	switch msg.Message.(type) {
	case *livekit.SignalResponse_Offer:
		return "offer"
	case *livekit.SignalResponse_Update:
		return "update"
	case *livekit.SignalResponse_SubscribedQualityUpdate:
		return "quality"
	case *livekit.SignalResponse_TrackUnpublished:
		return "unpublished"
	}
	return "other"
}

// testRoom is a room on its own loopback transport.
type testRoom struct {
	*Room
	tr *Transport
}

// newTestRoom creates a room; it is closed, and goroutine leaks are
// checked, when the test ends.
func newTestRoom(t *testing.T) *testRoom {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	tr, err := NewTransport(TransportParams{BindIP: "127.0.0.1", UDPPort: 0})
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	r := newRoom(RoomParams{
		Name: "fault", Transport: tr, ServerInfo: &livekit.ServerInfo{Version: "test"},
		Logger: discardLogger,
	})
	t.Cleanup(func() {
		if t.Failed() {
			return // a deadlocked room cannot be closed: the failure says why
		}
		r.Close(livekit.DisconnectReason_ROOM_DELETED)
		tr.Close()
		goleak.VerifyNone(t, ignore)
	})
	return &testRoom{Room: r, tr: tr}
}

// join adds a participant that auto-subscribes; start it with Start.
func (r *testRoom) join(t *testing.T, identity string) (*Participant, *countingSignal) {
	t.Helper()
	sig := &countingSignal{}
	p, _, err := r.Join(ParticipantParams{Identity: livekit.ParticipantIdentity(identity), Signal: sig, AutoSubscribe: true})
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	return p, sig
}

// gateReader is a PacketReader fed by the test: Read returns the packets
// sent on pkts and io.EOF once pkts is closed.
type gateReader struct{ pkts chan []byte }

func newGateReader() *gateReader { return &gateReader{pkts: make(chan []byte, 64)} }

func (r *gateReader) Read(b []byte) (int, interceptor.Attributes, error) {
	p, ok := <-r.pkts
	if !ok {
		return 0, nil, io.EOF
	}
	return copy(b, p), nil, nil
}

// publishTest publishes a track read from r on p as publishRemote does for
// a pion track: registered with the publisher, read until r ends, then
// unpublished, and offered to the room.
func publishTest(p *Participant, kind webrtc.RTPCodecType, r PacketReader, info *livekit.TrackInfo) *publishedTrack {
	codec := fixtureVP8
	if kind == webrtc.RTPCodecTypeAudio {
		codec = fixtureOpus
	}
	if info == nil {
		info = &livekit.TrackInfo{Type: livekit.TrackType_VIDEO}
	}
	info.Sid = NewID(TrackPrefix)
	info.MimeType = codec.MimeType
	up := NewUpTrack(UpTrackParams{
		ID: livekit.TrackID(info.Sid), Reader: r, Codec: codec, Kind: kind, SSRC: 1,
		WriteRTCP: p.pub.pc.pc.WriteRTCP, Logger: discardLogger,
	})
	pub := p.pub
	track := newPublishedTrack(info, up, pub.sendQualities)
	pub.register(nil, track)
	p.room.onTrackPublished(p, track)
	return track
}

// gateSink is a Sink whose TrackClosed blocks until release is closed: it
// holds a track in the state between "ended" and "unpublished".
type gateSink struct {
	entered chan struct{}
	release chan struct{}
}

func newGateSink() *gateSink {
	return &gateSink{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateSink) SinkID() string   { return "gate" }
func (g *gateSink) WriteRTP(*Packet) {}
func (g *gateSink) TrackClosed() {
	close(g.entered)
	<-g.release
}
