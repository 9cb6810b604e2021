package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// recordingSink is a Sink that keeps what it is given.
type recordingSink struct {
	id     string
	mu     sync.Mutex
	seqs   []uint16
	keys   []bool
	levels []int // -1: packet without level
	closed atomic.Int32
}

func (s *recordingSink) SinkID() string { return s.id }

func (s *recordingSink) WriteRTP(p *Packet) {
	level := -1
	if p.HasAudioLevel {
		level = int(p.AudioLevel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seqs = append(s.seqs, p.Header.SequenceNumber)
	s.keys = append(s.keys, p.Keyframe)
	s.levels = append(s.levels, level)
}

func (s *recordingSink) TrackClosed() { s.closed.Add(1) }

func (s *recordingSink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seqs)
}

// sliceReader is a PacketReader that returns its packets one per Read, then
// err forever.
type sliceReader struct {
	pkts [][]byte
	err  error
}

func (r *sliceReader) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(r.pkts) == 0 {
		return 0, nil, r.err
	}
	if len(r.pkts[0]) > len(b) {
		return 0, nil, io.ErrShortBuffer
	}
	n := copy(b, r.pkts[0])
	r.pkts = r.pkts[1:]
	return n, nil, nil
}

// runUpTrack runs up.Run on its own goroutine and waits until it is done.
func runUpTrack(t *testing.T, up *UpTrack) {
	t.Helper()
	go up.Run()
	select {
	case <-up.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("UpTrack.Run did not end after its reader failed")
	}
}

func TestUpTrackRequestKeyframe(t *testing.T) {
	tests := []struct {
		name      string
		kind      webrtc.RTPCodecType
		noRTCP    bool
		writeErr  error
		calls     []time.Duration // when RequestKeyframe is called
		wantTotal []int           // PLIs sent after each call
	}{
		{
			name: "video rate-limited", kind: webrtc.RTPCodecTypeVideo,
			calls:     []time.Duration{0, 100 * time.Millisecond, 299 * time.Millisecond, 300 * time.Millisecond, 301 * time.Millisecond, 900 * time.Millisecond, 900 * time.Millisecond},
			wantTotal: []int{1, 1, 1, 2, 2, 3, 3},
		},
		{
			name: "failed writes are rate-limited too", kind: webrtc.RTPCodecTypeVideo, writeErr: io.ErrClosedPipe,
			calls: []time.Duration{0, 10 * time.Millisecond, 400 * time.Millisecond}, wantTotal: []int{1, 1, 2},
		},
		{
			name: "audio never", kind: webrtc.RTPCodecTypeAudio,
			calls: []time.Duration{0, time.Second}, wantTotal: []int{0, 0},
		},
		{
			name: "no RTCP writer", kind: webrtc.RTPCodecTypeVideo, noRTCP: true,
			calls: []time.Duration{0, time.Second}, wantTotal: []int{0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			var mu sync.Mutex
			var sent []uint32
			count := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(sent)
			}
			reader := newGateReader()
			p := UpTrackParams{ID: "TR_x", Kind: tt.kind, Codec: fixtureVP8, SSRC: 77, Reader: reader, Logger: discardLogger}
			if !tt.noRTCP {
				p.WriteRTCP = func(pkts []rtcp.Packet) error {
					mu.Lock()
					defer mu.Unlock()
					for _, pk := range pkts {
						sent = append(sent, pk.(*rtcp.PictureLossIndication).MediaSSRC)
					}
					return tt.writeErr
				}
			}
			up := NewUpTrack(p)
			clock := newNanoClock()
			start := clock.now()
			up.nowNanos = clock.now
			go up.Run() // starts the RTCP writer
			defer func() {
				close(reader.pkts)
				<-up.Done()
			}()
			for i, at := range tt.calls {
				clock.ns.Store(start + int64(at))
				up.RequestKeyframe(0)
				// Requests are written asynchronously: wait for the
				// expected total, then make sure no more follow.
				deadline := time.Now().Add(2 * time.Second)
				for count() < tt.wantTotal[i] && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(5 * time.Millisecond)
				if n := count(); n != tt.wantTotal[i] {
					t.Fatalf("after call %d (at %v): %d PLIs, want %d", i, at, n, tt.wantTotal[i])
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ssrc := range sent {
				if ssrc != 77 {
					t.Errorf("PLI media SSRC %d, want 77", ssrc)
				}
			}
		})
	}
}

func TestUpTrackRequestKeyframeConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	up, _, rec := newFixtureUpTrack(fixtureVP8, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				up.RequestKeyframe(0)
			}
		}()
	}
	wg.Wait()
	if n := rec.pliCount(); n != 1 {
		t.Fatalf("%d PLIs sent, want 1", n)
	}
}

// malformedPackets are inputs that do not parse as RTP.
var malformedPackets = []struct {
	name string
	raw  []byte
}{
	{"empty", []byte{}},
	{"one byte", []byte{0x80}},
	{"11 bytes", append([]byte{0x80}, make([]byte, 10)...)},
	{"csrc count beyond the packet", append([]byte{0x8f}, make([]byte, 15)...)},
	{"extension header missing", append([]byte{0x90}, make([]byte, 11)...)},
	{"extension length beyond the packet", append(append([]byte{0x90}, make([]byte, 11)...), 0xbe, 0xde, 0x00, 0x0a, 0x10, 0xff)},
	{"padding size zero", append(append([]byte{0xa0}, make([]byte, 11)...), 1, 2, 0)},
	{"padding larger than the payload", append(append([]byte{0xa0}, make([]byte, 11)...), 1, 2, 200)},
	{"padding bit without payload", append([]byte{0xa0}, make([]byte, 11)...)},
	{"version 0", append([]byte{0x00}, make([]byte, 31)...)},
	{"version 1", append([]byte{0x40, 96}, make([]byte, 30)...)},
	{"version 3", append([]byte{0xc0, 96}, make([]byte, 30)...)},
}

// TestUpTrackMalformedPackets checks that packets that do not parse are
// counted and reach no sink, and the track carries on.
func TestUpTrackMalformedPackets(t *testing.T) {
	for _, tt := range malformedPackets {
		t.Run(tt.name, func(t *testing.T) {
			up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
			sink := &recordingSink{id: "A"}
			up.AddSink(sink)
			f := &forwarder{up: up}
			f.forward(tt.raw)
			if up.badPkts.Load() != 1 || sink.received() != 0 {
				t.Fatalf("bad packets %d, sink received %d; want 1, 0", up.badPkts.Load(), sink.received())
			}
			f.forward(pubPacket{seq: 9, payload: mediaPayload(webrtc.MimeTypeVP8, true, 100, 1), level: -1}.marshal(96))
			if n, _ := up.Stats(); n != 1 || sink.received() != 1 {
				t.Fatalf("valid packet after a bad one: %d counted, %d received; want 1, 1", n, sink.received())
			}
		})
	}
}

// TestUpTrackRun runs a track over a reader that ends, with good and bad
// packets: sinks get the good ones then TrackClosed, late sinks are closed
// at once, and Done closes.
func TestUpTrackRun(t *testing.T) {
	for _, readErr := range []error{io.EOF, errors.New("relay link down")} {
		t.Run(readErr.Error(), func(t *testing.T) {
			defer goleak.VerifyNone(t)
			good := [][]byte{
				pubPacket{seq: 1, ts: 3000, payload: mediaPayload(webrtc.MimeTypeVP8, true, 1100, 1), level: -1}.marshal(96),
				pubPacket{seq: 2, ts: 6000, payload: mediaPayload(webrtc.MimeTypeVP8, false, 900, 2), level: -1}.marshal(96),
				pubPacket{seq: 3, ts: 6000, padding: 100, level: -1}.marshal(96),
				pubPacket{seq: 4, ts: 9000, payload: mediaPayload(webrtc.MimeTypeVP8, false, 700, 3), level: -1}.marshal(96),
			}
			var pkts [][]byte
			wantBytes := 0
			for i, g := range good {
				pkts = append(pkts, g)
				wantBytes += len(g)
				if i < len(malformedPackets) {
					pkts = append(pkts, malformedPackets[i].raw)
				}
			}
			for _, m := range malformedPackets[len(good):] {
				pkts = append(pkts, m.raw)
			}
			up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
			up.layers[0].Load().reader = &sliceReader{pkts: pkts, err: readErr}
			sink := &recordingSink{id: "A"}
			up.AddSink(sink)
			var dtClosed atomic.Int32
			w := &recordingWriter{}
			d := NewDownTrack(DownTrackParams{
				Track: up, Subscriber: "PA_sub", Logger: discardLogger,
				OnTrackClosed: func(*DownTrack) { dtClosed.Add(1) },
			})
			if _, err := d.Bind(subscriberContext(fixtureVP8, 100, 5, 0, w)); err != nil {
				t.Fatal(err)
			}
			up.AddSink(d)

			runUpTrack(t, up)

			if got := sink.seqs; fmt.Sprint(got) != "[1 2 3 4]" || fmt.Sprint(sink.keys) != "[true false false false]" {
				t.Errorf("sink got seqs %v keyframes %v, want [1 2 3 4] [true false false false]", got, sink.keys)
			}
			if n, b := up.Stats(); n != uint64(len(good)) || b != uint64(wantBytes) {
				t.Errorf("Stats = %d packets %d bytes, want %d, %d", n, b, len(good), wantBytes)
			}
			if bad := up.badPkts.Load(); bad != uint64(len(malformedPackets)) {
				t.Errorf("%d bad packets counted, want %d", bad, len(malformedPackets))
			}
			if n := w.n.Load(); n != 3 {
				t.Errorf("DownTrack wrote %d packets, want 3 (padding dropped)", n)
			}
			if sink.closed.Load() != 1 || dtClosed.Load() != 1 {
				t.Errorf("TrackClosed: sink %d, DownTrack %d times; want once each", sink.closed.Load(), dtClosed.Load())
			}
			if up.SinkCount() != 0 {
				t.Errorf("SinkCount = %d after close, want 0", up.SinkCount())
			}
			late := &recordingSink{id: "B"}
			up.AddSink(late)
			if late.closed.Load() != 1 || up.SinkCount() != 0 {
				t.Errorf("late sink: TrackClosed %d times, SinkCount %d; want 1, 0", late.closed.Load(), up.SinkCount())
			}
			up.RemoveSink("A")
			d.TrackClosed()
			if dtClosed.Load() != 1 {
				t.Errorf("OnTrackClosed called %d times, want once", dtClosed.Load())
			}
			w.check(t)
		})
	}
}

// TestUpTrackRandomPackets feeds random bytes and damaged packets through
// Run to two bound DownTracks, then NACKs everything: nothing may panic and
// every packet is counted once, good or bad.
func TestUpTrackRandomPackets(t *testing.T) {
	defer goleak.VerifyNone(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var pkts [][]byte
	for i := range 3000 {
		switch i % 3 {
		case 0: // random bytes
			b := make([]byte, rng.IntN(MaxPacketSize+1))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			pkts = append(pkts, b)
		case 1: // a valid packet with random damage
			raw := pubPacket{seq: uint16(i), ts: uint32(i) * 3000, payload: mediaPayload(webrtc.MimeTypeVP8, i%30 == 1, 10+rng.IntN(1200), byte(i)), level: -1}.marshal(96)
			for range 1 + rng.IntN(4) {
				raw[rng.IntN(len(raw))] = byte(rng.Uint32())
			}
			pkts = append(pkts, raw)
		default: // a valid packet
			pkts = append(pkts, pubPacket{seq: uint16(i), ts: uint32(i) * 3000, payload: mediaPayload(webrtc.MimeTypeVP8, i%30 == 2, 200, byte(i)), level: -1}.marshal(96))
		}
	}
	up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
	up.layers[0].Load().reader = &sliceReader{pkts: pkts, err: io.EOF}
	var writers []*recordingWriter
	var dts []*DownTrack
	for i := range 2 {
		w := &recordingWriter{keep: 1}
		writers = append(writers, w)
		dts = append(dts, newBoundDownTrack(t, up, fmt.Sprintf("PA_%d", i), subscriberContext(fixtureVP8, 100, uint32(i+1), 0, w)))
	}
	sink := &recordingSink{id: "all"}
	up.AddSink(sink)

	runUpTrack(t, up)

	good, _ := up.Stats()
	if total := good + up.badPkts.Load(); total != uint64(len(pkts)) {
		t.Fatalf("%d good + %d bad packets, want %d in all", good, up.badPkts.Load(), len(pkts))
	}
	if dropped := up.dropped.Load(); sink.received()+int(dropped) != int(good) {
		t.Fatalf("sink received %d packets and %d were dropped (duplicate or too old), %d were good", sink.received(), dropped, good)
	}
	for _, d := range dts {
		for seq := 0; seq < 1<<16; seq += 17 {
			d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: uint16(seq), LostPackets: 0xffff}}}})
		}
	}
	for _, w := range writers {
		if w.n.Load() == 0 {
			t.Error("a DownTrack forwarded nothing")
		}
		w.check(t)
	}
	t.Logf("%d good, %d bad, %d and %d written", good, up.badPkts.Load(), writers[0].n.Load(), writers[1].n.Load())
}

// TestUpTrackPacketFields checks what forward tells sinks about a packet:
// keyframe and audio level, per codec.
func TestUpTrackPacketFields(t *testing.T) {
	tests := []struct {
		name    string
		codec   webrtc.RTPCodecParameters
		pkt     pubPacket
		wantKey bool
		wantLvl int
	}{
		{"vp8 keyframe", fixtureVP8, pubPacket{payload: mediaPayload(webrtc.MimeTypeVP8, true, 100, 0), level: -1}, true, -1},
		{"vp8 delta", fixtureVP8, pubPacket{payload: mediaPayload(webrtc.MimeTypeVP8, false, 100, 0), level: -1}, false, -1},
		{"vp8 padding only", fixtureVP8, pubPacket{padding: 50, level: -1}, false, -1},
		{"h264 idr", fixtureH264, pubPacket{payload: mediaPayload(webrtc.MimeTypeH264, true, 100, 0), level: -1}, true, -1},
		{"h264 non-idr", fixtureH264, pubPacket{payload: mediaPayload(webrtc.MimeTypeH264, false, 100, 0), level: -1}, false, -1},
		{"vp9 keyframe", fixtureVP9, pubPacket{payload: mediaPayload(webrtc.MimeTypeVP9, true, 100, 0), level: -1}, true, -1},
		{"av1 delta", fixtureAV1, pubPacket{payload: mediaPayload(webrtc.MimeTypeAV1, false, 100, 0), level: -1}, false, -1},
		{"video level ignored", fixtureVP8, pubPacket{payload: mediaPayload(webrtc.MimeTypeVP8, false, 100, 0), level: 0x80 | 3}, false, -1},
		{"opus with level", fixtureOpus, pubPacket{payload: mediaPayload(webrtc.MimeTypeOpus, false, 80, 0), level: 0x80 | 55}, true, 55},
		{"opus without level", fixtureOpus, pubPacket{payload: mediaPayload(webrtc.MimeTypeOpus, false, 80, 0), level: -1}, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, _, _ := newFixtureUpTrack(tt.codec, 0)
			sink := &recordingSink{id: "A"}
			up.AddSink(sink)
			f := &forwarder{up: up}
			// A packet with a level first: the next one must not inherit it.
			f.forward(pubPacket{seq: 1, payload: mediaPayload(tt.codec.MimeType, false, 80, 0), level: 9}.marshal(96))
			tt.pkt.seq = 2
			f.forward(tt.pkt.marshal(96))
			if sink.received() != 2 {
				t.Fatalf("sink received %d packets, want 2", sink.received())
			}
			if sink.keys[1] != tt.wantKey || sink.levels[1] != tt.wantLvl {
				t.Errorf("Keyframe %v, level %d; want %v, %d", sink.keys[1], sink.levels[1], tt.wantKey, tt.wantLvl)
			}
		})
	}
}

func TestUpTrackSinks(t *testing.T) {
	up, _, _ := newFixtureUpTrack(fixtureOpus, 0)
	a1, a2, b := &recordingSink{id: "A"}, &recordingSink{id: "A"}, &recordingSink{id: "B"}
	f := &forwarder{up: up}
	send := func(seq uint16) {
		f.forward(pubPacket{seq: seq, payload: mediaPayload(webrtc.MimeTypeOpus, false, 80, 0), level: -1}.marshal(111))
	}
	steps := []struct {
		do        func()
		wantCount int
		want      [3]int // packets received by a1, a2, b
	}{
		{func() { up.AddSink(a1) }, 1, [3]int{1, 0, 0}},
		{func() { up.AddSink(b) }, 2, [3]int{2, 0, 1}},
		{func() { up.AddSink(a2) }, 2, [3]int{2, 1, 2}}, // replaces a1
		{func() { up.RemoveSink("nobody") }, 2, [3]int{2, 2, 3}},
		{func() { up.RemoveSink("A") }, 1, [3]int{2, 2, 4}},
		{func() { up.RemoveSink("B") }, 0, [3]int{2, 2, 4}},
	}
	for i, s := range steps {
		s.do()
		send(uint16(i))
		got := [3]int{a1.received(), a2.received(), b.received()}
		if up.SinkCount() != s.wantCount || got != s.want {
			t.Fatalf("step %d: SinkCount %d, received %v; want %d, %v", i, up.SinkCount(), got, s.wantCount, s.want)
		}
	}
	if a1.closed.Load()+a2.closed.Load()+b.closed.Load() != 0 {
		t.Fatal("TrackClosed called on a running track's sinks")
	}
}

// streamReader is a PacketReader producing n VP8 packets, a keyframe every
// 30, then io.EOF. Before the first packet it waits for start to close.
type streamReader struct {
	n, i       int
	key, delta []byte
	start      <-chan struct{}
}

func (r *streamReader) Read(b []byte) (int, interceptor.Attributes, error) {
	if r.i == 0 {
		<-r.start
	}
	if r.i >= r.n {
		return 0, nil, io.EOF
	}
	src := r.delta
	if r.i%30 == 0 {
		src = r.key
	}
	n := copy(b, src)
	binary.BigEndian.PutUint16(b[2:4], uint16(r.i))
	binary.BigEndian.PutUint32(b[4:8], uint32(r.i)*3000)
	r.i++
	return n, nil, nil
}

// TestUpTrackConcurrentSinks adds, removes, pauses, unbinds and NACKs
// DownTracks while the track forwards; run it with -race.
func TestUpTrackConcurrentSinks(t *testing.T) {
	defer goleak.VerifyNone(t)
	start := make(chan struct{})
	up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
	up.nowNanos = func() int64 { return time.Now().UnixNano() }
	up.layers[0].Load().reader = &streamReader{
		n: 3000, start: start,
		key:   pubPacket{payload: mediaPayload(webrtc.MimeTypeVP8, true, 1000, 1), level: -1}.marshal(96),
		delta: pubPacket{payload: mediaPayload(webrtc.MimeTypeVP8, false, 1000, 2), level: -1}.marshal(96),
	}
	steady := &recordingWriter{keep: 1}
	var steadyClosed atomic.Int32
	d := NewDownTrack(DownTrackParams{
		Track: up, Subscriber: "PA_steady", Logger: discardLogger,
		OnTrackClosed: func(*DownTrack) { steadyClosed.Add(1) },
	})
	if _, err := d.Bind(subscriberContext(fixtureVP8, 100, 1, 0, steady)); err != nil {
		t.Fatal(err)
	}
	up.AddSink(d)
	// A second DownTrack is paused and resumed throughout; the steady one is
	// never paused, so it must forward whatever the scheduling.
	toggled := NewDownTrack(DownTrackParams{Track: up, Subscriber: "PA_toggled", Logger: discardLogger})
	if _, err := toggled.Bind(subscriberContext(fixtureVP8, 100, 2, 0, &recordingWriter{keep: 1})); err != nil {
		t.Fatal(err)
	}
	up.AddSink(toggled)

	var wg sync.WaitGroup
	var churned atomic.Int64
	var ready sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				w := &recordingWriter{keep: 1}
				dt := NewDownTrack(DownTrackParams{Track: up, Subscriber: livekit.ParticipantID(fmt.Sprintf("PA_g%d_%d", g, i)), Logger: discardLogger})
				if _, err := dt.Bind(subscriberContext(fixtureVP8, 100, uint32(100+g), 0, w)); err != nil {
					t.Error(err)
					return
				}
				up.AddSink(dt)
				up.AddSink(&recordingSink{id: "plain"})
				if i == 0 {
					ready.Done()
				}
				dt.SetPaused(i%2 == 0)
				dt.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: uint16(i), LostPackets: 0xff}}}})
				if i%3 == 0 {
					_ = dt.Unbind(nil)
				}
				up.RemoveSink(dt.SinkID())
				churned.Add(1)
				select {
				case <-up.Done():
					return
				default:
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-up.Done():
				return
			default:
			}
			toggled.SetPaused(i%4 == 0)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-up.Done():
				return
			default:
			}
			d.handleRTCP([]rtcp.Packet{
				&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: uint16(i * 7), LostPackets: 0xffff}}},
				&rtcp.PictureLossIndication{},
			})
		}
	}()
	ready.Wait()
	close(start)
	runUpTrack(t, up)
	wg.Wait()

	if steadyClosed.Load() != 1 {
		t.Errorf("steady DownTrack: OnTrackClosed called %d times, want 1", steadyClosed.Load())
	}
	if steady.n.Load() == 0 {
		t.Error("steady DownTrack forwarded nothing")
	}
	if churned.Load() < 3 {
		t.Errorf("only %d sink changes happened while forwarding", churned.Load())
	}
	if up.SinkCount() != 0 {
		t.Errorf("SinkCount = %d after close", up.SinkCount())
	}
	steady.check(t)
	t.Logf("%d sink changes, steady sink wrote %d packets", churned.Load(), steady.n.Load())
}
