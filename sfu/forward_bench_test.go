package sfu

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-sfu/fanout/simulcast"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// This file holds the forward-path benchmark and the fixtures it shares with
// the UpTrack/DownTrack tests and the fuzz targets: publisher packets,
// a fake TrackLocalContext and writers standing in for pion's SRTP stream.

// Publisher-side constants of the fixtures.
const (
	fixturePubSSRC    = 0x5eed0001
	fixtureLevelExtID = 1 // the publisher's ssrc-audio-level id
	fixtureTWCCExtID  = 3 // the publisher's transport-cc id
	fixtureVideoBytes = 1100
	fixtureAudioBytes = 80
)

// Codecs as a publisher negotiates them.
var (
	fixtureVP8 = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		PayloadType:        96,
	}
	fixtureVP9 = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
		PayloadType:        98,
	}
	fixtureH264 = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		},
		PayloadType: 102,
	}
	fixtureAV1 = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000},
		PayloadType:        45,
	}
	fixtureOpus = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
)

// discardLogger keeps debug logs of malformed input out of test output.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// mediaPayload returns a payload of n bytes (at least 16) that the codec's
// keyframe detection sees as a keyframe or not; tag fills the rest, so
// tests can tell payloads apart.
func mediaPayload(mime string, key bool, n int, tag byte) []byte {
	if n < 16 {
		n = 16
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = tag
	}
	switch mime {
	case webrtc.MimeTypeVP8:
		// Descriptor (RFC 7741): X and S set, partition 0, a 15-bit
		// picture id (the tag); then the VP8 frame tag, P bit clear on
		// keyframes.
		p[0], p[1], p[2], p[3] = 0x90, 0x80, 0x80, tag
		p[4] = 0x11
		if key {
			p[4] = 0x10
			p[7], p[8], p[9] = 0x9d, 0x01, 0x2a // keyframe start code
			binary.LittleEndian.PutUint16(p[10:], 640)
			binary.LittleEndian.PutUint16(p[12:], 480)
		}
	case webrtc.MimeTypeH264:
		p[0] = 0x41 // non-IDR slice
		if key {
			p[0] = 0x65 // IDR slice
		}
	case webrtc.MimeTypeVP9:
		p[0] = 0x4c // P, B, E: inter picture
		if key {
			p[0] = 0x0c
		}
	case webrtc.MimeTypeAV1:
		p[0] = 0x10 // W=1
		if key {
			p[0] = 0x18 // W=1, N=1
		}
	case webrtc.MimeTypeOpus:
		p[0] = 0xfc // TOC: CELT fullband 20 ms, stereo, one frame
	}
	return p
}

// pubPacket describes one packet sent by a publisher.
type pubPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
	padding byte // padding bytes appended (0: none)
	level   int  // RFC 6464 level byte with the V flag; < 0: no extension
}

// marshal returns the packet as a publisher sends it, with payload type pt
// (which DownTracks rewrite), the fixture SSRC, a transport-cc extension
// and, if level >= 0, an audio level extension.
func (p pubPacket) marshal(pt uint8) []byte {
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version: 2, Marker: p.marker, PayloadType: pt,
			SequenceNumber: p.seq, Timestamp: p.ts, SSRC: fixturePubSSRC,
		},
		Payload: p.payload,
	}
	if p.level >= 0 {
		_ = pkt.Header.SetExtension(fixtureLevelExtID, []byte{byte(p.level)})
	}
	_ = pkt.Header.SetExtension(fixtureTWCCExtID, []byte{byte(p.seq >> 8), byte(p.seq)})
	if p.padding > 0 {
		pkt.Header.Padding = true
		pkt.Header.PaddingSize = p.padding
	}
	raw, err := pkt.Marshal()
	if err != nil {
		panic(err)
	}
	return raw
}

// fakeTrackContext is the webrtc.TrackLocalContext pion passes to Bind: the
// subscriber's negotiated codecs, header extensions and SSRC.
type fakeTrackContext struct {
	codecs []webrtc.RTPCodecParameters
	exts   []webrtc.RTPHeaderExtensionParameter
	ssrc   webrtc.SSRC
	writer webrtc.TrackLocalWriter
}

func (c *fakeTrackContext) CodecParameters() []webrtc.RTPCodecParameters { return c.codecs }
func (c *fakeTrackContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return c.exts
}
func (c *fakeTrackContext) SSRC() webrtc.SSRC                       { return c.ssrc }
func (c *fakeTrackContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (c *fakeTrackContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (c *fakeTrackContext) WriteStream() webrtc.TrackLocalWriter    { return c.writer }
func (c *fakeTrackContext) ID() string                              { return "fake-transceiver" }
func (c *fakeTrackContext) RTCPReader() interceptor.RTCPReader      { return nil }

// subscriberContext returns a context that negotiated codec (under the
// subscriber's payload type pt) with SSRC ssrc, and the audio level
// extension under id levelID when it is not 0.
func subscriberContext(codec webrtc.RTPCodecParameters, pt webrtc.PayloadType, ssrc uint32, levelID int, w webrtc.TrackLocalWriter) *fakeTrackContext {
	codec.PayloadType = pt
	c := &fakeTrackContext{codecs: []webrtc.RTPCodecParameters{codec}, ssrc: webrtc.SSRC(ssrc), writer: w}
	c.exts = append(c.exts, webrtc.RTPHeaderExtensionParameter{URI: sdp.TransportCCURI, ID: 4})
	if levelID != 0 {
		c.exts = append(c.exts, webrtc.RTPHeaderExtensionParameter{URI: sdp.AudioLevelURI, ID: levelID})
	}
	return c
}

// nopWriter is the benchmark's TrackLocalWriter: it only counts, on one
// goroutine, what a real SRTP writer would have sent.
type nopWriter struct{ packets, bytes int }

func (w *nopWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n := h.MarshalSize() + len(payload)
	w.packets++
	w.bytes += n
	return n, nil
}

func (w *nopWriter) Write(b []byte) (int, error) {
	w.packets++
	w.bytes += len(b)
	return len(b), nil
}

// sentPacket is one packet a recordingWriter received, as parsed back from
// its wire form.
type sentPacket struct {
	hdr     rtp.Header
	payload []byte
}

// recordingWriter is a TrackLocalWriter that marshals each packet (so a
// header that cannot go on the wire fails the test) and keeps a parsed copy.
// It is safe for concurrent use, like pion's writer.
type recordingWriter struct {
	mu   sync.Mutex
	sent []sentPacket
	errs []error
	// keep is how many packets are kept (0: all); later ones are only checked.
	keep int
	n    atomic.Int64
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	raw, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		w.fail(err)
		return 0, err
	}
	return w.Write(raw)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		w.fail(err)
		return 0, err
	}
	w.n.Add(1)
	w.mu.Lock()
	if w.keep == 0 || len(w.sent) < w.keep {
		w.sent = append(w.sent, sentPacket{hdr: p.Header.Clone(), payload: append([]byte(nil), p.Payload...)})
	}
	w.mu.Unlock()
	return len(b), nil
}

func (w *recordingWriter) fail(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// packets returns a copy of what was written so far.
func (w *recordingWriter) packets() []sentPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sentPacket(nil), w.sent...)
}

// check fails t if any packet could not be marshalled.
func (w *recordingWriter) check(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		t.Errorf("DownTrack wrote an invalid packet: %v", err)
	}
}

// nanoClock is an injected clock for UpTrack.nowNanos, in unix nanoseconds.
type nanoClock struct{ ns atomic.Int64 }

func newNanoClock() *nanoClock {
	c := &nanoClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *nanoClock) now() int64              { return c.ns.Load() }
func (c *nanoClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// rtcpRecorder is UpTrackParams.WriteRTCP: it records the feedback a
// publisher would receive.
type rtcpRecorder struct {
	// up, when set, is the track whose keyframe requests pliCount
	// writes first (the fixture track runs no RTCP writer goroutine).
	up   *UpTrack
	mu   sync.Mutex
	plis []uint32 // media SSRC of each PLI
	rest int      // other packets
}

func (r *rtcpRecorder) WriteRTCP(pkts []rtcp.Packet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkts {
		if pli, ok := p.(*rtcp.PictureLossIndication); ok {
			r.plis = append(r.plis, pli.MediaSSRC)
		} else {
			r.rest++
		}
	}
	return nil
}

// pliCount returns how many PLIs were sent to the publisher.
func (r *rtcpRecorder) pliCount() int {
	if r.up != nil {
		r.up.sendKeyframeRequests(newPLIBatch())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.plis)
}

// newFixtureUpTrack returns an UpTrack for codec that is not running (the
// test drives forward itself), with an injected clock and RTCP recorder.
func newFixtureUpTrack(codec webrtc.RTPCodecParameters, cacheSize int) (*UpTrack, *nanoClock, *rtcpRecorder) {
	kind := webrtc.RTPCodecTypeVideo
	var levelID uint8
	if codec.MimeType == webrtc.MimeTypeOpus {
		kind, levelID = webrtc.RTPCodecTypeAudio, fixtureLevelExtID
	}
	rec := &rtcpRecorder{}
	up := NewUpTrack(UpTrackParams{
		ID: "TR_fixture", Codec: codec, Kind: kind, SSRC: fixturePubSSRC,
		AudioLevelExtID: levelID, WriteRTCP: rec.WriteRTCP, CacheSize: cacheSize, Logger: discardLogger,
	})
	clock := newNanoClock()
	up.nowNanos = clock.now
	rec.up = up
	return up, clock, rec
}

// newBoundDownTrack creates a DownTrack of up for subscriber sub, binds it to
// ctx and adds it to up's sinks.
func newBoundDownTrack(tb testing.TB, up *UpTrack, sub string, ctx webrtc.TrackLocalContext) *DownTrack {
	tb.Helper()
	d := NewDownTrack(DownTrackParams{
		Track: up, StreamID: "PA_pub|" + string(up.ID()), Subscriber: livekit.ParticipantID(sub), Logger: discardLogger,
	})
	if _, err := d.Bind(ctx); err != nil {
		tb.Fatalf("Bind: %v", err)
	}
	up.AddSink(d)
	return d
}

// forwarder drives UpTrack.forward the way UpTrack.Run does, with reused
// parse state.
type forwarder struct {
	up    *UpTrack
	layer int8
	pkt   rtp.Packet
	out   Packet
}

func (f *forwarder) forward(raw []byte) {
	f.up.forward(f.up.layers[f.layer].Load(), raw, &f.pkt, &f.out)
}

// BenchmarkForward measures the per-packet hot path: one published packet
// parsed, cached, inspected and written to every sink, the sinks being real
// DownTracks bound to writers that only count bytes. It must not allocate.
func BenchmarkForward(b *testing.B) {
	codecs := []struct {
		name  string
		codec webrtc.RTPCodecParameters
		size  int
		tsInc uint32
		level int
	}{
		{"vp8", fixtureVP8, fixtureVideoBytes, 3000, -1},
		{"opus", fixtureOpus, fixtureAudioBytes, 960, 0x80 | 30},
	}
	for _, c := range codecs {
		b.Run(c.name, func(b *testing.B) {
			for _, sinks := range []int{1, 10, 100} {
				b.Run(fmt.Sprintf("sinks=%d", sinks), func(b *testing.B) {
					benchmarkForward(b, c.codec, sinks, c.size, c.tsInc, c.level)
				})
			}
		})
	}
}

func benchmarkForward(b *testing.B, codec webrtc.RTPCodecParameters, sinks, size int, tsInc uint32, level int) {
	up, clock, _ := newFixtureUpTrack(codec, 0)
	writers := make([]*nopWriter, sinks)
	for i := range writers {
		writers[i] = &nopWriter{}
		ctx := subscriberContext(codec, 100, 0x1000+uint32(i), 5, writers[i])
		d := newBoundDownTrack(b, up, fmt.Sprintf("PA_sub%d", i), ctx)
		d.p.twcc = newTWCCRecorder(nil, nil) // stamps and records transport-cc, as in production
	}
	f := &forwarder{up: up}
	seq, ts := uint16(4000), uint32(123456)
	key := pubPacket{seq: seq, ts: ts, marker: true, payload: mediaPayload(codec.MimeType, true, size, 1), level: level}.marshal(96)
	f.forward(key)
	raw := pubPacket{seq: seq, ts: ts, marker: true, payload: mediaPayload(codec.MimeType, false, size, 2), level: level}.marshal(96)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		seq++
		ts += tsInc
		binary.BigEndian.PutUint16(raw[2:4], seq)
		binary.BigEndian.PutUint32(raw[4:8], ts)
		clock.advance(20 * time.Millisecond)
		f.forward(raw)
	}
	if want := b.N + 1; writers[0].packets != want {
		b.Fatalf("sink 0 wrote %d packets, want %d", writers[0].packets, want)
	}
}

// pubSent is a packet a publisher sent (or lost, when lost is set).
type pubSent struct {
	pubPacket
	arrival int64
	lost    bool
}

// mediaSource feeds a paced stream into an UpTrack through forward: one packet
// per video frame every 33 ms, or one Opus packet every 20 ms.
type mediaSource struct {
	forwarder
	clock  *nanoClock
	mime   string
	seq    uint16
	ts     uint32
	tsStep uint32
	every  time.Duration
	level  int // audio level byte of each packet; < 0: none
	sent   []pubSent
}

func newMediaSource(up *UpTrack, clock *nanoClock, seq uint16) *mediaSource {
	p := &mediaSource{
		forwarder: forwarder{up: up}, clock: clock, mime: up.Codec().MimeType,
		seq: seq, ts: 90000, tsStep: 3000, every: 33 * time.Millisecond, level: -1,
	}
	if up.Kind() == webrtc.RTPCodecTypeAudio {
		p.tsStep, p.every, p.level = 960, 20*time.Millisecond, 0x80|40
	}
	return p
}

// send sends the packets of steps, one per byte: K a keyframe, d a delta
// (any Opus packet), p a padding-only packet, x a packet lost on the way to
// the SFU (it uses up a sequence number and a frame's time).
func (p *mediaSource) send(steps string) {
	for i := 0; i < len(steps); i++ {
		p.clock.advance(p.every)
		pk := pubPacket{seq: p.seq, ts: p.ts, marker: true, level: p.level}
		switch steps[i] {
		case 'K', 'd':
			pk.payload = mediaPayload(p.mime, steps[i] == 'K', 100, byte(len(p.sent)))
			p.ts += p.tsStep
		case 'p':
			pk.padding, pk.marker = 200, false
		case 'x':
			p.ts += p.tsStep
		default:
			panic("unknown publisher step " + string(steps[i]))
		}
		p.seq++
		p.sent = append(p.sent, pubSent{pubPacket: pk, arrival: p.clock.now(), lost: steps[i] == 'x'})
		if steps[i] != 'x' {
			p.forward(pk.marshal(96))
		}
	}
}

// BenchmarkForwardSimulcast measures the hot path of a three-layer VP8
// track: each op forwards one packet on each layer to sinks spread evenly
// over LOW, MEDIUM and HIGH, so every sink selects, munges (including the
// VP8 descriptor, rewritten after the switches that brought it to its
// layer) and writes one of the three, and skips the other two.
func BenchmarkForwardSimulcast(b *testing.B) {
	for _, sinks := range []int{3, 30, 99} {
		b.Run(fmt.Sprintf("sinks=%d", sinks), func(b *testing.B) { benchmarkForwardSimulcast(b, sinks) })
	}
}

func benchmarkForwardSimulcast(b *testing.B, sinks int) {
	up, clock, _ := newFixtureUpTrack(fixtureVP8, 0)
	for l := int8(1); l < simulcast.MaxSpatial; l++ {
		up.layers[l].Store(up.newLayer(l, nil, fixturePubSSRC+uint32(l)))
	}
	writers := make([]*nopWriter, sinks)
	for i := range writers {
		writers[i] = &nopWriter{}
		ctx := subscriberContext(fixtureVP8, 100, 0x1000+uint32(i), 5, writers[i])
		d := newBoundDownTrack(b, up, fmt.Sprintf("PA_sub%d", i), ctx)
		d.p.twcc = newTWCCRecorder(nil, nil)
		d.SetMaxLayer(simulcast.Layer{Spatial: int8(i % simulcast.MaxSpatial), Temporal: simulcast.AllTemporal})
	}
	layers := [simulcast.MaxSpatial]*forwarder{}
	raws := [simulcast.MaxSpatial][]byte{}
	seq, ts := uint16(4000), uint32(123456)
	for l := range layers {
		layers[l] = &forwarder{up: up, layer: int8(l)}
		key := pubPacket{seq: seq, ts: ts, marker: true, payload: mediaPayload(webrtc.MimeTypeVP8, true, fixtureVideoBytes, byte(l)), level: -1}.marshal(96)
		layers[l].forward(key)
		raws[l] = pubPacket{seq: seq, ts: ts, marker: true, payload: mediaPayload(webrtc.MimeTypeVP8, false, fixtureVideoBytes, byte(l+10)), level: -1}.marshal(96)
	}
	b.SetBytes(int64(3 * len(raws[0])))
	b.ReportAllocs()
	for b.Loop() {
		seq++
		ts += 3000
		clock.advance(20 * time.Millisecond)
		for l, f := range layers {
			binary.BigEndian.PutUint16(raws[l][2:4], seq)
			binary.BigEndian.PutUint32(raws[l][4:8], ts)
			f.forward(raws[l])
		}
	}
	for i, w := range writers {
		if want := b.N + 1; w.packets < b.N {
			b.Fatalf("sink %d wrote %d packets, want %d", i, w.packets, want)
		}
	}
}
