package sfu

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// keyframeRequestInterval is the minimum spacing of PLIs sent to a publisher.
const keyframeRequestInterval = 300 * time.Millisecond

// UpTrackParams describes a published track to read.
type UpTrackParams struct {
	ID     livekit.TrackID
	Reader PacketReader
	Codec  webrtc.RTPCodecParameters
	Kind   webrtc.RTPCodecType
	// SSRC of the publisher's stream, the media SSRC of keyframe requests.
	SSRC uint32
	// AudioLevelExtID is the publisher's RFC 6464 extension id (0: none).
	AudioLevelExtID uint8
	// OnAudioLevel, if set, receives each packet's audio level (reader goroutine).
	OnAudioLevel func(level uint8)
	// WriteRTCP sends feedback (PLI) to the publisher.
	WriteRTCP func([]rtcp.Packet) error
	// CacheSize is the number of packets kept for retransmission.
	CacheSize int
	Logger    *slog.Logger
}

// UpTrack is a published track: it reads RTP on one goroutine, keeps each
// packet once in its cache and fans it out to its sinks.
type UpTrack struct {
	p        UpTrackParams
	codec    simulcast.Codec
	cache    *PacketCache
	sinks    atomic.Pointer[[]Sink]
	sinkMu   sync.Mutex
	lastPLI  atomic.Int64
	packets  atomic.Uint64
	bytes    atomic.Uint64
	badPkts  atomic.Uint64
	closed   atomic.Bool
	done     chan struct{}
	nowNanos func() int64
}

// NewUpTrack creates a published track; call Run to start reading.
func NewUpTrack(p UpTrackParams) *UpTrack {
	if p.CacheSize == 0 {
		p.CacheSize = 512
		if p.Kind == webrtc.RTPCodecTypeAudio {
			p.CacheSize = 128
		}
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	t := &UpTrack{
		p:        p,
		codec:    simulcast.CodecFromMime(p.Codec.MimeType),
		cache:    NewPacketCache(p.CacheSize),
		done:     make(chan struct{}),
		nowNanos: func() int64 { return time.Now().UnixNano() },
	}
	empty := []Sink{}
	t.sinks.Store(&empty)
	return t
}

// ID returns the track id (TR_...).
func (t *UpTrack) ID() livekit.TrackID { return t.p.ID }

// Kind returns audio or video.
func (t *UpTrack) Kind() webrtc.RTPCodecType { return t.p.Kind }

// Codec returns the codec the publisher sends.
func (t *UpTrack) Codec() webrtc.RTPCodecParameters { return t.p.Codec }

// Done is closed when the track has stopped reading.
func (t *UpTrack) Done() <-chan struct{} { return t.done }

// Stats returns packets and bytes received so far.
func (t *UpTrack) Stats() (packets, bytes uint64) { return t.packets.Load(), t.bytes.Load() }

// AddSink starts forwarding to s (replacing a sink with the same id).
func (t *UpTrack) AddSink(s Sink) {
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	if t.closed.Load() {
		s.TrackClosed()
		return
	}
	old := *t.sinks.Load()
	next := make([]Sink, 0, len(old)+1)
	for _, o := range old {
		if o.SinkID() != s.SinkID() {
			next = append(next, o)
		}
	}
	next = append(next, s)
	t.sinks.Store(&next)
}

// RemoveSink stops forwarding to the sink with that id.
func (t *UpTrack) RemoveSink(id string) {
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	old := *t.sinks.Load()
	next := make([]Sink, 0, len(old))
	for _, o := range old {
		if o.SinkID() != id {
			next = append(next, o)
		}
	}
	t.sinks.Store(&next)
}

// SinkCount returns how many sinks receive this track.
func (t *UpTrack) SinkCount() int { return len(*t.sinks.Load()) }

// RequestKeyframe sends a PLI to the publisher unless one went out recently.
func (t *UpTrack) RequestKeyframe() {
	if t.p.Kind != webrtc.RTPCodecTypeVideo || t.p.WriteRTCP == nil {
		return
	}
	now := t.nowNanos()
	last := t.lastPLI.Load()
	if now-last < int64(keyframeRequestInterval) || !t.lastPLI.CompareAndSwap(last, now) {
		return
	}
	err := t.p.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: t.p.SSRC}})
	if err != nil {
		t.p.Logger.Debug("keyframe request failed", "track", t.p.ID, "err", err)
	}
}

// ReadCached copies a cached packet by publisher sequence number into dst.
func (t *UpTrack) ReadCached(seq uint16, dst []byte) (int, bool) {
	return t.cache.Get(seq, dst)
}

// Run reads and forwards packets until the reader fails or the track is closed.
func (t *UpTrack) Run() {
	defer t.finish()
	buf := make([]byte, MaxPacketSize)
	var pkt rtp.Packet
	var out Packet
	for {
		n, _, err := t.p.Reader.Read(buf)
		if err != nil {
			t.p.Logger.Debug("track reader ended", "track", t.p.ID, "err", err)
			return
		}
		t.forward(buf[:n], &pkt, &out)
	}
}

// forward handles one received packet; it is the per-packet hot path.
func (t *UpTrack) forward(raw []byte, pkt *rtp.Packet, out *Packet) {
	if err := pkt.Unmarshal(raw); err != nil || pkt.Version != 2 {
		t.badPkts.Add(1)
		return
	}
	t.packets.Add(1)
	t.bytes.Add(uint64(len(raw)))
	t.cache.Store(raw)
	out.Header = &pkt.Header
	out.Payload = pkt.Payload
	out.Raw = raw
	out.Arrival = t.nowNanos()
	out.Keyframe = len(pkt.Payload) > 0 && simulcast.IsKeyframe(t.codec, pkt.Payload)
	out.HasAudioLevel = false
	if t.p.AudioLevelExtID != 0 {
		if ext := pkt.Header.GetExtension(t.p.AudioLevelExtID); ext != nil {
			if level, voice, ok := ParseAudioLevel(ext); ok {
				out.AudioLevel, out.Voice, out.HasAudioLevel = level, voice, true
				if t.p.OnAudioLevel != nil {
					t.p.OnAudioLevel(level)
				}
			}
		}
	}
	for _, s := range *t.sinks.Load() {
		s.WriteRTP(out)
	}
}

func (t *UpTrack) finish() {
	t.sinkMu.Lock()
	t.closed.Store(true)
	sinks := *t.sinks.Load()
	empty := []Sink{}
	t.sinks.Store(&empty)
	t.sinkMu.Unlock()
	for _, s := range sinks {
		s.TrackClosed()
	}
	close(t.done)
}
