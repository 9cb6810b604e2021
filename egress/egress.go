package egress

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/simulcast"
)

// Errors of an egress's sources.
var (
	ErrNotH264  = errors.New("HLS egress takes H.264 video: the publisher must send H.264")
	ErrNotOpus  = errors.New("HLS egress takes Opus audio")
	ErrNoTracks = errors.New("HLS egress needs a video track")
)

// Tuning of the egress's input.
const (
	queueSize      = 2048                   // packets waiting for the egress goroutine
	jitterWait     = 150 * time.Millisecond // how long a missing packet is waited for
	keyframeEvery  = time.Second            // keyframe requests while out of sync
	egressTickRate = 20 * time.Millisecond
)

// Params describes an HLS egress of one video (H.264) and one audio (Opus
// or RED) track.
type Params struct {
	ID    string
	Video sfu.Track
	Audio sfu.Track // nil: video only
	// Directory, when set, keeps the segments on disk (a recording).
	Directory string
	Logger    *slog.Logger
}

// HLS is a running egress: a Sink on each of its tracks, its own bounded
// queue and goroutine, and the HLS output it serves.
type HLS struct {
	p       Params
	log     *slog.Logger
	out     hlsMuxer
	in      chan *input
	pool    sync.Pool
	drops   atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	ended   chan struct{} // closed when a track ends
	endOnce sync.Once

	// Goroutine state.
	start      time.Time
	video      streamState
	audio      streamState
	asm        H264Assembler
	layer      int8
	lastKeyReq time.Time
	pkt        rtp.Packet
	firstKey   time.Time // the first keyframe, while sender reports are awaited
	srSync     bool      // the streams are aligned by sender reports
	startNTP   uint64    // the NTP instant of the muxer's pts 0, with srSync
	held       []heldAudio
	red        bool // the audio track sends RED: its primary is muxed
	emitAU     func(AccessUnit)
	now        time.Time // arrival of the packet being drained
}

// input is one packet copied off a track's reader goroutine.
type input struct {
	audio   bool
	layer   int8
	arrival int64
	buf     []byte
}

// streamState anchors one stream's RTP timestamps to the egress timeline.
type streamState struct {
	jb     *JitterBuffer
	rate   int64
	anchor bool
	lastTS uint32
	extTS  int64 // unwrapped timestamp of the last packet
	base   int64 // extTS at the anchor
	offset int64 // timeline position of the anchor, in the stream's clock
}

// Start validates the tracks' codecs and starts the egress: it asks for a
// keyframe and begins muxing at the first one.
func Start(p Params) (*HLS, error) {
	if p.Video == nil {
		return nil, ErrNoTracks
	}
	if !strings.EqualFold(p.Video.Codec().MimeType, webrtc.MimeTypeH264) {
		return nil, fmt.Errorf("%w (track %s is %s)", ErrNotH264, p.Video.ID(), p.Video.Codec().MimeType)
	}
	if p.Audio != nil {
		if m := p.Audio.Codec().MimeType; !strings.EqualFold(m, webrtc.MimeTypeOpus) && !strings.EqualFold(m, "audio/red") {
			return nil, fmt.Errorf("%w (track %s is %s)", ErrNotOpus, p.Audio.ID(), m)
		}
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	e := &HLS{
		p: p, log: p.Logger.With("egress", p.ID), in: make(chan *input, queueSize),
		stop: make(chan struct{}), done: make(chan struct{}), ended: make(chan struct{}),
		start: time.Now(), out: hlsMuxer{directory: p.Directory, withAudio: p.Audio != nil},
		video: streamState{jb: NewJitterBuffer(jitterWait), rate: 90000},
		audio: streamState{jb: NewJitterBuffer(jitterWait), rate: 48000},
		layer: highestLayer(p.Video.AvailableLayers()),
	}
	e.emitAU = e.writeVideo
	e.red = p.Audio != nil && strings.EqualFold(p.Audio.Codec().MimeType, "audio/red")
	e.pool.New = func() any { return &input{buf: make([]byte, 0, sfu.MaxPacketSize)} }
	layer := e.layer // run owns e.layer from now on (followLayers)
	go e.run()
	p.Video.AddSink(&sink{e: e, id: "EG|" + p.ID + "|video"})
	if p.Audio != nil {
		p.Audio.AddSink(&sink{e: e, id: "EG|" + p.ID + "|audio", audio: true})
	}
	p.Video.RequestKeyframe(layer)
	return e, nil
}

// highestLayer is the best spatial layer available (0 if none is known).
func highestLayer(m simulcast.LayerMask) int8 {
	for l := int8(simulcast.MaxSpatial - 1); l > 0; l-- {
		if m.Has(l) {
			return l
		}
	}
	return 0
}

// ServeHTTP serves the egress's HLS files by name (index.m3u8 first).
func (e *HLS) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.out.ServeHTTP(w, r) }

// Started reports whether the playlist exists (the first keyframe came).
func (e *HLS) Started() bool { return e.out.started() }

// Drops is how many packets the egress's queue had no room for.
func (e *HLS) Drops() uint64 { return e.drops.Load() }

// Ended is closed when a track of the egress ends (its publisher left or
// unpublished it).
func (e *HLS) Ended() <-chan struct{} { return e.ended }

// Stop detaches the egress from its tracks and ends its goroutine. The
// playlist is finished (#EXT-X-ENDLIST) and stays served until Close.
func (e *HLS) Stop() {
	e.once.Do(func() {
		e.p.Video.RemoveSink("EG|" + e.p.ID + "|video")
		if e.p.Audio != nil {
			e.p.Audio.RemoveSink("EG|" + e.p.ID + "|audio")
		}
		close(e.stop)
		<-e.done
		e.out.finish()
	})
}

// Close stops the egress if it runs and releases its output.
func (e *HLS) Close() {
	e.Stop()
	e.out.close()
}

// sink is the egress's Sink on one track: it copies packets into the
// egress's queue, and drops (counting) when the queue is full.
type sink struct {
	e     *HLS
	id    string
	audio bool
	once  sync.Once
}

// SinkID names the sink on its track.
func (s *sink) SinkID() string { return s.id }

// WriteRTP copies a packet into the egress's queue, never blocking.
func (s *sink) WriteRTP(p *sfu.Packet) {
	in := s.e.pool.Get().(*input)
	in.audio, in.layer, in.arrival = s.audio, p.Layer, p.Arrival
	in.buf = append(in.buf[:0], p.Raw...)
	select {
	case s.e.in <- in:
	default:
		s.e.pool.Put(in)
		s.e.drops.Add(1)
	}
}

// TrackClosed ends the egress's input from this track.
func (s *sink) TrackClosed() { s.once.Do(func() { s.e.trackEnded() }) }

func (e *HLS) trackEnded() { e.endOnce.Do(func() { close(e.ended) }) }
