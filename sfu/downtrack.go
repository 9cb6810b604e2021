package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// ErrCodecNotNegotiated is returned by Bind when the subscriber accepted none
// of the codecs that carry the published track.
var ErrCodecNotNegotiated = errors.New("published codec not negotiated by subscriber")

// DownTrackParams describes one subscription of one track.
type DownTrackParams struct {
	Track Track
	// StreamID is "PA_publisher|TR_track", the subscriber's msid stream.
	StreamID string
	// Subscriber is the receiving participant, for logs.
	Subscriber livekit.ParticipantID
	// OnTrackClosed is called when the published track ends.
	OnTrackClosed func(*DownTrack)
	// OnStreamState, if set, is called when forwarding pauses (no layer
	// can be sent: the allocator chose none, or the publisher sends none)
	// or resumes. It may run on a reader goroutine: it must not block.
	OnStreamState func(d *DownTrack, active bool)
	Logger        *slog.Logger
	// twcc, if set, is the subscriber connection's transport-wide
	// congestion recorder: every packet sent gets its sequence number.
	twcc *twccRecorder
	// transportUp, if set, reports whether the subscriber's DTLS-SRTP
	// transport is up: pion drops what is written before, without an
	// error, so nothing is forwarded (nor a keyframe asked for) until then.
	transportUp func() bool
}

// binding is what Bind learned from the negotiated transceiver.
type binding struct {
	ssrc         uint32
	payloadType  uint8
	audioLevelID uint8
	twccID       uint8 // transport-cc extension id, 0: not negotiated
	writer       webrtc.TrackLocalWriter
	// redToOpus: the publisher sends RED, the subscriber took plain Opus.
	redToOpus bool
}

// vp8History is how many sent VP8 descriptors are remembered for
// retransmissions (the packet cache of a video layer holds 512 packets).
const vp8History = 512

// sentVP8 is the munged descriptor a VP8 packet was sent with.
type sentVP8 struct {
	seq       uint16
	pictureID uint16
	tl0       uint8
	keyIdx    uint8
	valid     bool
}

// headerScratch is the reusable header one goroutine writes packets with:
// room for its extensions (audio level and transport-cc) and their bytes,
// so that setting them never allocates.
type headerScratch struct {
	hdr   rtp.Header
	ext   [2]rtp.Extension
	level [1]byte
	twcc  [2]byte
}

// writeScratch is a headerScratch with room for a rewritten payload.
type writeScratch struct {
	headerScratch
	payload [MaxPacketSize]byte // a payload with a rewritten VP8 descriptor
}

// DownTrack forwards one published track to one subscriber. It implements
// webrtc.TrackLocal (pion binds it to the subscriber's transceiver) and Sink
// (the published track feeds it, one goroutine per simulcast layer).
//
// Each packet is first checked without a lock: packets of layers that are
// neither forwarded nor wanted return at once. The rest take the
// DownTrack's own mutex (never shared with other subscribers, never held
// across a write) for layer selection and munging, because a layer switch
// hands the output stream from one layer's goroutine to another's.
type DownTrack struct {
	p         DownTrackParams
	kind      webrtc.RTPCodecType
	codec     simulcast.Codec
	clockRate uint32

	bound    atomic.Pointer[binding]
	paused   atomic.Bool
	closed   atomic.Bool
	packets  atomic.Uint64
	bytes    atomic.Uint64
	maxLayer atomic.Int32 // packed simulcast.Layer the subscriber allows
	target   atomic.Int32 // packed simulcast.Layer the allocator chose
	current  atomic.Int32 // spatial layer forwarded, -1: none
	want     atomic.Int32 // spatial layer the selector aims for, -1: none
	active   atomic.Bool  // stream state last reported
	// ceilingRaised: the subscriber raised the maximum since the
	// allocator last looked, so it may go up at once.
	ceilingRaised atomic.Bool
	switches      atomic.Uint64
	unready       atomic.Bool    // a write was dropped by pion before SRTP was up
	ready         atomic.Bool    // the subscriber's transport is up (transportReady)
	firstSent     atomic.Bool    // a packet went out
	rr            receiverReport // the subscriber's view of this stream

	// scratch[l] is used only by the reader goroutine of layer l.
	scratch []writeScratch

	mu       sync.Mutex // guards selector, munger (Munge side), vp8 and vp8Sent
	selector simulcast.Selector
	munger   simulcast.Munger
	// vp8Sent remembers the descriptor each VP8 packet went out with, by
	// output sequence number, so that a retransmission carries the same
	// picture ids even after the munger moved on (a switch). nil for
	// other codecs.
	vp8Sent *[vp8History]sentVP8
	// frameOpen: the newest packet forwarded did not end its frame (no
	// marker bit), so padding must not go out yet. newestSeq is that
	// packet's output sequence number (valid once forwardedAny).
	frameOpen    bool
	forwardedAny bool
	newestSeq    uint16
	// padWaiting: WritePadding waits on frameEnd for the open frame to end.
	padWaiting bool
	vp8        simulcast.VP8Munger // last of the packet path's state: it is large

	// Padding state, used by the prober. frameEnd wakes a WritePadding
	// waiting for a frame to end (capacity 1, sent to under mu).
	padMu    sync.Mutex
	pad      headerScratch
	padTimer *time.Timer
	frameEnd chan struct{}

	// Retransmission state, used from the RTCP goroutine.
	rtxMu   sync.Mutex
	rtxSeen *[vp8History]rtxRecord // retransmissions per output packet
	// rtxTokens is the byte budget left for retransmissions; rtxEarned the
	// forwarded bytes already turned into budget (see spendRTXBudget).
	rtxTokens int64
	rtxEarned uint64
	rtxBuf    [MaxPacketSize]byte
	rtxPkt    rtp.Packet
	rtx       writeScratch
	// Retransmissions sent (and their bytes) and NACKed packets refused
	// by the limits, read by RetransmitStats.
	rtxPackets, rtxBytes, rtxRefused atomic.Uint64
	// keySeq is the output sequence number of the last keyframe's first
	// packet, plus keySeqValid; recoverAt when a keyframe was last asked
	// for because retransmissions gave up (see giveUpRetransmit).
	keySeq    atomic.Uint32
	recoverAt atomic.Int64
	// switchedAt is when the forwarded layer last changed (unix ns).
	switchedAt atomic.Int64
	// keyHold: no keyframe for a switch is asked for before this time
	// (the track's clock, unix ns; 0: none), see holdSwitchKeyframe.
	keyHold atomic.Int64
}

// NewDownTrack creates a DownTrack for a track; add it to the subscriber's
// peer connection and to the track's sinks.
func NewDownTrack(p DownTrackParams) *DownTrack {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	c := p.Track.Codec()
	d := &DownTrack{
		p:         p,
		kind:      p.Track.Kind(),
		codec:     simulcast.CodecFromMime(c.MimeType),
		clockRate: c.ClockRate,
		selector:  *simulcast.NewSelector(),
		frameEnd:  make(chan struct{}, 1),
	}
	layers := 1
	if d.kind == webrtc.RTPCodecTypeVideo {
		layers = simulcast.MaxSpatial
	}
	d.scratch = make([]writeScratch, layers)
	if d.codec == simulcast.CodecVP8 {
		d.vp8Sent = new([vp8History]sentVP8)
	}
	d.rtxSeen = new([vp8History]rtxRecord)
	d.rtxTokens = rtxBudgetBurst
	for i := range d.scratch {
		d.scratch[i].hdr.Extensions = d.scratch[i].ext[:0]
	}
	d.rtx.hdr.Extensions = d.rtx.ext[:0]
	d.pad.hdr.Extensions = d.pad.ext[:0]
	top := simulcast.Layer{Spatial: simulcast.MaxSpatial - 1, Temporal: simulcast.AllTemporal}
	d.maxLayer.Store(packLayer(top))
	d.target.Store(packLayer(top))
	d.current.Store(-1)
	d.want.Store(-1)
	d.active.Store(true)
	return d
}

func packLayer(l simulcast.Layer) int32 { return int32(l.Spatial)<<8 | int32(uint8(l.Temporal)) }

func unpackLayer(v int32) simulcast.Layer {
	return simulcast.Layer{Spatial: int8(v >> 8), Temporal: int8(uint8(v))}
}

// ID is the track id the subscriber sees (TR_...).
func (d *DownTrack) ID() string { return string(d.p.Track.ID()) }

// RID is empty: a DownTrack sends one stream.
func (d *DownTrack) RID() string { return "" }

// StreamID is "PA_publisher|TR_track".
func (d *DownTrack) StreamID() string { return d.p.StreamID }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.kind }

// SinkID identifies this sink among the track's sinks: the subscriber's id.
func (d *DownTrack) SinkID() string { return string(d.p.Subscriber) }

// Track returns the published track this DownTrack forwards.
func (d *DownTrack) Track() Track { return d.p.Track }

// Stats returns packets and bytes sent so far.
func (d *DownTrack) Stats() (packets, bytes uint64) { return d.packets.Load(), d.bytes.Load() }

// CurrentLayer is the spatial layer being forwarded, or -1.
func (d *DownTrack) CurrentLayer() int8 { return int8(d.current.Load()) }

// Switches counts the spatial layer switches made so far.
func (d *DownTrack) Switches() uint64 { return d.switches.Load() }

// MaxLayer is the highest layer the subscriber asked for.
func (d *DownTrack) MaxLayer() simulcast.Layer { return unpackLayer(d.maxLayer.Load()) }

// SetMaxLayer sets the highest layer the subscriber wants (its quality or
// viewport setting): the ceiling of the allocator's target. Without an
// allocator the target stays at the top and the ceiling alone decides.
func (d *DownTrack) SetMaxLayer(l simulcast.Layer) {
	old := unpackLayer(d.maxLayer.Swap(packLayer(l)))
	if l.Spatial > old.Spatial || (l.Spatial == old.Spatial && l.Temporal > old.Temporal) {
		d.ceilingRaised.Store(true)
	}
	d.refreshStreamState()
	d.requestWanted()
}

// Target is the layer the allocator last chose (the top layer until it
// chooses one).
func (d *DownTrack) Target() simulcast.Layer { return unpackLayer(d.target.Load()) }

// SetTarget sets the layer the allocator wants forwarded (clamped to the
// subscriber's maximum when packets are selected); a negative spatial layer
// pauses video. A lower spatial layer drains the current one (see
// simulcast.Selector.Drain).
func (d *DownTrack) SetTarget(l simulcast.Layer) {
	old := unpackLayer(d.target.Swap(packLayer(l)))
	if l.Spatial < 0 || l.Spatial > old.Spatial {
		d.keyHold.Store(0)
	}
	if l.Spatial >= 0 && l.Spatial < old.Spatial && d.kind == webrtc.RTPCodecTypeVideo {
		// Lowered for lack of bandwidth (the allocator is the only
		// caller): the current layer stops at its next frame, so that the
		// lower layer's keyframe does not queue behind more of it.
		d.mu.Lock()
		d.selector.Drain()
		d.mu.Unlock()
	}
	if l.Spatial < 0 && d.kind == webrtc.RTPCodecTypeVideo {
		d.restart()
	}
	d.refreshStreamState()
	d.requestWanted()
}

// requestWanted asks for a keyframe of the layer the target now resolves
// to, if another is forwarded: the switch waits for it, and the selector
// would ask only at the forwarded layer's next packet, up to a frame
// later. RequestKeyframe only marks the layer (the track rate-limits it),
// so callers may hold locks.
func (d *DownTrack) requestWanted() {
	if d.kind != webrtc.RTPCodecTypeVideo || d.bound.Load() == nil || d.paused.Load() || !d.ready.Load() || d.keyHold.Load() != 0 {
		return // a held request is made by the first packet after the hold
	}
	cur := d.current.Load()
	if cur < 0 {
		return // not started: the stream's first packets ask for its keyframe
	}
	if want := simulcast.Resolve(d.effectiveTarget().Spatial, d.p.Track.AvailableLayers()); want >= 0 && int32(want) != cur {
		d.p.Track.RequestKeyframe(want)
	}
}

// holdSwitchKeyframe keeps the keyframe a switch down waits for from being
// asked for before until (the track's clock, unix ns); the next SetTarget
// lowering the layer takes it, and a switch, a raise or a pause ends it. The allocator lowers a layer because the
// path's queue is full: the current layer stops at its next frame (Drain),
// and a keyframe asked for at once (the publisher answers within tens of
// milliseconds) would meet the queue still full of it and lose its tail,
// which costs the switch a NACK round through that queue (about 400 ms
// more to the first frame of the new layer behind a 100 ms queue). Held
// until the queue has had time to empty, it goes through whole.
func (d *DownTrack) holdSwitchKeyframe(until int64) {
	if d.kind == webrtc.RTPCodecTypeVideo {
		d.keyHold.Store(until)
	}
}

// keyframeDue reports whether a keyframe for a switch may be asked for at
// now (the track's clock): no hold, or the hold has passed (and ends).
func (d *DownTrack) keyframeDue(now int64) bool {
	h := d.keyHold.Load()
	if h == 0 {
		return true
	}
	if now < h {
		return false
	}
	d.keyHold.CompareAndSwap(h, 0)
	return true
}

// effectiveTarget is the target clamped to the subscriber's maximum.
func (d *DownTrack) effectiveTarget() simulcast.Layer {
	if d.kind != webrtc.RTPCodecTypeVideo {
		return simulcast.Layer{Spatial: 0, Temporal: simulcast.AllTemporal}
	}
	t, m := unpackLayer(d.target.Load()), unpackLayer(d.maxLayer.Load())
	return simulcast.Layer{Spatial: min(t.Spatial, m.Spatial), Temporal: min(t.Temporal, m.Temporal)}
}

// LayersChanged is called by the track when the set of layers its
// publisher sends changes.
func (d *DownTrack) LayersChanged(simulcast.LayerMask) { d.refreshStreamState() }

// refreshStreamState reports a change between active (some layer can be
// forwarded) and paused.
func (d *DownTrack) refreshStreamState() {
	if d.kind != webrtc.RTPCodecTypeVideo || d.closed.Load() {
		return
	}
	active := d.effectiveTarget().Spatial >= 0 && d.p.Track.AvailableLayers() != 0
	if d.active.Swap(active) != active && d.p.OnStreamState != nil {
		d.p.OnStreamState(d, active)
	}
}

// Bind is called by pion once the subscriber's answer fixed the codec.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	want := d.p.Track.Codec()
	for _, c := range ctx.CodecParameters() {
		redToOpus := isRED(want) && strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus)
		if !strings.EqualFold(c.MimeType, want.MimeType) && !redToOpus {
			continue
		}
		if strings.EqualFold(want.MimeType, webrtc.MimeTypeH264) && !fmtpEqual(c.SDPFmtpLine, want.SDPFmtpLine) {
			continue
		}
		b := &binding{ssrc: uint32(ctx.SSRC()), payloadType: uint8(c.PayloadType), writer: ctx.WriteStream(), redToOpus: redToOpus}
		for _, ext := range ctx.HeaderExtensions() {
			switch ext.URI {
			case sdp.AudioLevelURI:
				b.audioLevelID = uint8(ext.ID)
			case sdp.TransportCCURI:
				b.twccID = uint8(ext.ID)
			}
		}
		d.restart() // re-bound while forwarding: continue at the next keyframe
		d.bound.Store(b)
		// A keyframe sent before the transport is up would be lost: the
		// request goes out when it comes up (transportReady).
		if d.ready.Load() {
			d.requestStartKeyframe()
		} else {
			d.transportReady()
		}
		d.p.Logger.Debug("downtrack bound", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber,
			"mime", c.MimeType, "transport_up", d.ready.Load())
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("bind %s for %s: %w", want.MimeType, d.p.Subscriber, ErrCodecNotNegotiated)
}

// restart makes forwarding start over at the next keyframe, continuing the
// output sequence without a gap.
func (d *DownTrack) restart() {
	d.mu.Lock()
	d.selector.Reset()
	d.current.Store(-1)
	d.want.Store(-1) // unknown: the next packets run the selector, which asks for a keyframe
	d.endFrame()     // a frame left open will not be finished: the stream restarts at a keyframe
	d.mu.Unlock()
}

// Unbind is called by pion when the transceiver stops.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(nil)
	return nil
}

// SetPaused stops (muted publisher, disabled by subscriber, no permission)
// or resumes forwarding. Video resumes at the next keyframe.
func (d *DownTrack) SetPaused(paused bool) {
	if d.paused.Swap(paused) == paused {
		return
	}
	if paused {
		d.restart()
	}
	// No keyframe request here: callers may hold locks, and the next packet
	// of the wanted layer asks for one (rate-limited).
}

// Paused reports whether forwarding is paused.
func (d *DownTrack) Paused() bool { return d.paused.Load() }

// WriteRTP forwards one packet; it runs on the reader goroutine of the
// packet's layer and never allocates or blocks: a keyframe request only
// marks the layer for the track's RTCP writer, and the node's UDP socket
// drops a packet its send buffer has no room for rather than wait.
func (d *DownTrack) WriteRTP(p *Packet) {
	b := d.bound.Load()
	if b == nil || d.paused.Load() || !d.transportReady() {
		return
	}
	layer := int32(p.Layer)
	if w := d.want.Load(); layer != d.current.Load() && layer != w && w >= 0 && !p.Keyframe {
		return // another layer, and nothing to do with it: no lock
	}
	if int(p.Layer) >= len(d.scratch) {
		return
	}
	sc := &d.scratch[p.Layer]
	payload, seq, ts, keyFor, ok := d.translate(b, p, sc)
	if keyFor >= 0 && d.keyframeDue(p.Arrival) {
		d.p.Track.RequestKeyframe(keyFor)
	}
	if !ok {
		return
	}
	fillHeader(&sc.hdr, b, p.Header, seq, ts)
	if p.HasAudioLevel && b.audioLevelID != 0 {
		sc.level[0] = p.AudioLevel & 0x7f
		if p.Voice {
			sc.level[0] |= 0x80
		}
		_ = sc.hdr.SetExtension(b.audioLevelID, sc.level[:])
	}
	if d.write(b, &sc.headerScratch, payload, p.Arrival) {
		d.restart() // lost unseen: start over at a keyframe the subscriber gets
	}
}

// transportReady reports whether what is written now reaches the
// subscriber: once its transport is up (see transportUp), for good.
func (d *DownTrack) transportReady() bool {
	if d.ready.Load() {
		return true
	}
	if d.p.transportUp != nil && !d.p.transportUp() {
		return false
	}
	if !d.ready.Swap(true) {
		// The stream starts now: ask for its keyframe at once rather than
		// at the wanted layer's next packet (up to a frame later).
		d.requestStartKeyframe()
	}
	return true
}

// requestStartKeyframe asks for a keyframe of the layer a video stream
// starts with.
func (d *DownTrack) requestStartKeyframe() {
	if d.kind == webrtc.RTPCodecTypeVideo {
		d.p.Track.RequestKeyframe(max(simulcast.Resolve(d.effectiveTarget().Spatial, d.p.Track.AvailableLayers()), 0))
	}
}

// translate runs layer selection and munging for one packet under d.mu. It
// returns the payload to send (rewritten into sc when the VP8 descriptor
// changes), the output sequence number and timestamp, and a layer to
// request a keyframe of (-1: none).
func (d *DownTrack) translate(b *binding, p *Packet, sc *writeScratch) (payload []byte, seq uint16, ts uint32, keyFor int8, ok bool) {
	info := simulcast.PacketInfo{Layer: p.Layer, Keyframe: p.Keyframe, FrameStart: p.FrameStart, TID: p.TID, LayerSync: p.LayerSync}
	d.mu.Lock()
	defer d.mu.Unlock()
	dec := d.selector.Select(info, d.effectiveTarget(), d.p.Track.AvailableLayers())
	// Stored only on change: an atomic store is a full barrier on amd64.
	if cur := int32(d.selector.Current()); d.current.Load() != cur {
		d.current.Store(cur)
	}
	if want := int32(d.selector.Wanted()); d.want.Load() != want {
		d.want.Store(want)
	}
	keyFor = dec.KeyframeFor
	if dec.Action == simulcast.DropInStream && p.HasVP8 && !p.FrameStart && d.vp8.Sent(&p.VP8) {
		// A late packet of a frame partly sent before the temporal layers
		// went down: without it the subscriber could not assemble the frame.
		dec.Action = simulcast.Forward
	}
	switch dec.Action {
	case simulcast.Drop:
		return nil, 0, 0, keyFor, false
	case simulcast.DropInStream:
		d.munger.Munge(p.Header.SequenceNumber, p.Header.Timestamp, p.Arrival, d.clockRate, true)
		if p.HasVP8 {
			d.vp8.Munge(&p.VP8, true)
		}
		return nil, 0, 0, keyFor, false
	case simulcast.SwitchForward:
		d.switchTo(p.Layer)
	}
	payload, ok = payloadFor(b, p.Payload)
	if !ok {
		return nil, 0, 0, keyFor, false // malformed RED: treated as lost, the subscriber may NACK it
	}
	var out simulcast.VP8Descriptor
	if p.HasVP8 {
		if out, ok = d.vp8.Munge(&p.VP8, false); !ok {
			return nil, 0, 0, keyFor, false
		}
		if payload, ok = rewriteVP8(&p.VP8, &out, payload, sc.payload[:]); !ok {
			return nil, 0, 0, keyFor, false
		}
	}
	seq, ts, ok = d.munger.Munge(p.Header.SequenceNumber, p.Header.Timestamp, p.Arrival, d.clockRate, len(p.Payload) == 0)
	if !ok {
		return payload, seq, ts, keyFor, false
	}
	if d.vp8Sent != nil {
		d.vp8Sent[seq%vp8History] = sentVP8{seq: seq, pictureID: out.PictureID, tl0: out.TL0PICIDX, keyIdx: out.KEYIDX, valid: p.HasVP8}
	}
	if p.Keyframe && p.FrameStart {
		d.keySeq.Store(uint32(seq) | keySeqValid) // once per keyframe
	}
	d.noteForwarded(seq, p.Header.Marker)
	return payload, seq, ts, keyFor, true
}

// noteForwarded tracks whether the newest packet forwarded (not a late
// one) leaves its frame open: a frame ends with the packet that has the
// marker bit. Callers hold d.mu.
func (d *DownTrack) noteForwarded(seq uint16, marker bool) {
	if d.forwardedAny && int16(seq-d.newestSeq) <= 0 {
		return // late: the frame it belongs to is not the newest
	}
	d.forwardedAny, d.newestSeq = true, seq
	if marker {
		d.endFrame()
	} else {
		d.frameOpen = true
	}
}

// endFrame notes that no frame is open, and wakes a WritePadding waiting
// for that. Callers hold d.mu.
func (d *DownTrack) endFrame() {
	d.frameOpen = false
	if d.padWaiting {
		d.padWaiting = false
		select {
		case d.frameEnd <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// switchTo starts forwarding layer l at its keyframe: the munger continues
// the output from the last packet sent, aligning timestamps with the
// layers' sender reports when both have one. Callers hold d.mu.
func (d *DownTrack) switchTo(l int8) {
	from, started := d.munger.Layer()
	delta, aligned := uint32(0), false
	if started && int8(from) != l {
		delta, aligned = d.p.Track.TimestampDelta(int8(from), l)
	}
	if aligned {
		d.munger.SwitchLayerAligned(uint8(l), delta)
	} else {
		d.munger.SwitchLayer(uint8(l))
	}
	d.vp8.Switch()
	d.switches.Add(1)
	d.switchedAt.Store(time.Now().UnixNano()) // once per switch
	d.keyHold.Store(0)                        // the keyframe it waited for came
	if started {
		d.p.Logger.Debug("layer switch", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber,
			"from", from, "to", l, "aligned", aligned)
	} else {
		d.p.Logger.Debug("stream start", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber, "layer", l)
	}
}

// rewriteVP8 writes payload with its VP8 descriptor desc replaced by out
// into dst, or returns payload itself when nothing changes.
func rewriteVP8(desc, out *simulcast.VP8Descriptor, payload, dst []byte) ([]byte, bool) {
	if out.PictureID == desc.PictureID && out.LongPictureID == desc.LongPictureID &&
		out.TL0PICIDX == desc.TL0PICIDX && out.KEYIDX == desc.KEYIDX {
		return payload, true // unchanged (no switch yet): no copy
	}
	n, err := simulcast.WriteVP8Descriptor(dst, out)
	if err != nil || n+len(payload)-desc.Size > len(dst) {
		return nil, false
	}
	n += copy(dst[n:], payload[desc.Size:])
	return dst[:n], true
}

// payloadFor returns what the subscriber receives of a payload: RED's
// primary encoding for a subscriber that took plain Opus.
func payloadFor(b *binding, payload []byte) ([]byte, bool) {
	if !b.redToOpus {
		return payload, true
	}
	return simulcast.REDPrimary(payload)
}

// fillHeader writes the subscriber's view of a publisher's header into h.
func fillHeader(h *rtp.Header, b *binding, src *rtp.Header, seq uint16, ts uint32) {
	h.Version = 2
	h.Padding = false
	h.PaddingSize = 0
	h.Marker = src.Marker
	h.PayloadType = b.payloadType
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.SSRC = b.ssrc
	h.CSRC = nil
	h.Extension = false
	h.ExtensionProfile = 0
	h.Extensions = h.Extensions[:0] // keeps the capacity: no allocation
}

// write sends a packet, first stamping it with the connection's next
// transport-wide sequence number, recorded with its size and the send time
// now (unix nanoseconds: a forwarded packet's arrival, microseconds before
// on the same goroutine, saves a clock read per packet and subscriber).
// It reports whether pion dropped the packet unsent, without an error,
// because DTLS-SRTP was not up yet.
func (d *DownTrack) write(b *binding, hs *headerScratch, payload []byte, now int64) (unsent bool) {
	h := &hs.hdr
	if b.twccID != 0 && d.p.twcc != nil {
		// The extension goes on before the size is taken: it is part of it.
		seq := d.p.twcc.nextSeq()
		hs.twcc[0], hs.twcc[1] = byte(seq>>8), byte(seq)
		_ = h.SetExtension(b.twccID, hs.twcc[:])
		size := h.MarshalSize() + len(payload) + int(h.PaddingSize)
		d.p.twcc.record(seq, now, size, len(payload) == 0)
	}
	n, err := b.writer.WriteRTP(h, payload)
	if err != nil {
		return false // closed or congested transport: the subscriber will NACK or PLI
	}
	if n == 0 {
		if !d.unready.Swap(true) {
			d.p.Logger.Debug("write before srtp ready", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber, "seq", h.SequenceNumber)
		}
		return true
	}
	if !d.firstSent.Load() && !d.firstSent.Swap(true) { // a load per packet, not a barrier
		d.p.Logger.Debug("first packet sent", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber, "seq", h.SequenceNumber, "bytes", n)
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(n))
	return false
}

// TrackClosed is called when the published track ends.
func (d *DownTrack) TrackClosed() {
	if d.closed.Swap(true) {
		return
	}
	if d.p.OnTrackClosed != nil {
		d.p.OnTrackClosed(d)
	}
}

// ReadRTCP handles the subscriber's feedback for this track until the sender
// closes: keyframe requests go to the publisher, NACKs are answered from the
// publisher's cache.
func (d *DownTrack) ReadRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, MaxPacketSize)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			d.p.Logger.Debug("bad rtcp from subscriber", "subscriber", d.p.Subscriber, "err", err)
			continue
		}
		d.handleRTCP(pkts)
	}
}

func (d *DownTrack) handleRTCP(pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		switch p := pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			if l := d.CurrentLayer(); l >= 0 {
				d.p.Track.RequestKeyframe(l)
			}
		case *rtcp.ReceiverReport:
			d.recordReports(p.Reports)
		case *rtcp.TransportLayerNack:
			for i := range p.Nacks {
				p.Nacks[i].Range(d.retransmitOne) // PacketList would allocate
			}
		}
	}
}

// recordReports keeps the subscriber's report on this DownTrack's stream.
func (d *DownTrack) recordReports(reports []rtcp.ReceptionReport) {
	b := d.bound.Load()
	if b == nil {
		return
	}
	for _, r := range reports {
		if r.SSRC == b.ssrc {
			d.rr.record(r, d.clockRate, time.Now())
		}
	}
}
