package sfu

import (
	"fmt"
	"log/slog"
	"math/bits"
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

// layerTimeout is how long a simulcast layer may stay silent before it
// counts as stopped (the publisher turned it off, or its uplink cannot
// carry it) and subscribers fall back to another layer.
const layerTimeout = time.Second

// silenceTimeout is how long a track's last layer may stay silent before
// its stream counts as paused: longer than layerTimeout, so that a
// low-frame-rate stream (a static screen) does not flap.
const silenceTimeout = 3 * time.Second

// layerCheckInterval is how often the reader goroutines look for stopped
// layers.
const layerCheckInterval = 100 * time.Millisecond

// UpTrackParams describes a published track to read.
type UpTrackParams struct {
	ID     livekit.TrackID
	Reader PacketReader
	Codec  webrtc.RTPCodecParameters
	Kind   webrtc.RTPCodecType
	// SSRC of the publisher's stream, the media SSRC of keyframe requests.
	SSRC uint32
	// Layer is the spatial layer Reader carries (0 without simulcast);
	// further layers join with AddLayer.
	Layer int8
	// AudioLevelExtID is the publisher's RFC 6464 extension id (0: none).
	AudioLevelExtID uint8
	// OnAudioLevel, if set, receives each packet's audio level (reader goroutine).
	OnAudioLevel func(level uint8)
	// WriteRTCP sends feedback (PLI) to the publisher.
	WriteRTCP func([]rtcp.Packet) error
	// CacheSize is the number of packets kept for retransmission, per layer.
	CacheSize int
	Logger    *slog.Logger
}

// upLayer is one received stream of a track: its only stream, or one
// simulcast layer, read by its own goroutine into its own cache.
type upLayer struct {
	index       int8
	ssrc        uint32
	reader      PacketReader
	cache       *PacketCache
	lastPLI     atomic.Int64
	lastArrival atomic.Int64
	report      atomic.Pointer[simulcast.SenderReport] // the newest sender report
	// bytes counts the bytes received per temporal layer (index 0 also for
	// streams without temporal layers); written by the reader goroutine.
	bytes [simulcast.AllTemporal + 1]atomic.Uint64
	// rates is the measured bitrate (bits/s) of each temporal layer alone,
	// updated by UpdateBitrates; meter is its state (UpdateBitrates only).
	rates [simulcast.AllTemporal + 1]atomic.Uint64
	meter bitrateMeter
	loss  lossMeter // used by the room's quality loop only
}

// bitrateMeter turns byte counters into smoothed bitrates.
type bitrateMeter struct {
	last      [simulcast.AllTemporal + 1]uint64
	lastNanos int64
	seeded    bool // a first sample was taken as it is
}

// bitrateSmoothing is the weight of the newest sample in a layer's bitrate
// (sampled every speakerInterval, about a one-second time constant).
const bitrateSmoothing = 0.3

// UpTrack is a published track: one goroutine per received stream (simulcast
// layer) reads RTP, keeps each packet once in that layer's cache and fans it
// out to the track's sinks, which choose the layer they forward.
type UpTrack struct {
	p         UpTrackParams
	codec     simulcast.Codec
	layers    [simulcast.MaxSpatial]atomic.Pointer[upLayer]
	avail     atomic.Uint32 // simulcast.LayerMask of layers being received
	lastCheck atomic.Int64  // last look for stopped layers (unix nanos)
	muted     atomic.Bool
	sinks     atomic.Pointer[[]Sink]
	sinkMu    sync.Mutex // guards sink list writes, running and closed
	running   int        // layer goroutines still reading
	allDone   chan struct{}
	packets   atomic.Uint64
	bytes     atomic.Uint64
	badPkts   atomic.Uint64
	dropped   atomic.Uint64 // duplicates and packets too old to forward
	closed    atomic.Bool
	done      chan struct{}
	nowNanos  func() int64
	// pliPending marks the layers whose keyframe request waits for the
	// RTCP writer; pliWake (capacity 1) wakes it.
	pliPending atomic.Uint32
	pliWake    chan struct{}
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
		done:     make(chan struct{}),
		allDone:  make(chan struct{}),
		pliWake:  make(chan struct{}, 1),
		nowNanos: func() int64 { return time.Now().UnixNano() },
	}
	first := t.newLayer(clampLayer(p.Layer), p.Reader, p.SSRC)
	t.layers[first.index].Store(first)
	t.running = 1
	empty := []Sink{}
	t.sinks.Store(&empty)
	return t
}

func (t *UpTrack) newLayer(index int8, r PacketReader, ssrc uint32) *upLayer {
	return &upLayer{index: index, ssrc: ssrc, reader: r, cache: NewPacketCache(t.p.CacheSize)}
}

func clampLayer(l int8) int8 { return min(max(l, 0), simulcast.MaxSpatial-1) }

// AddLayer starts reading another simulcast layer of the track. It fails
// if the track has ended or already reads that layer.
func (t *UpTrack) AddLayer(index int8, r PacketReader, ssrc uint32) error {
	index = clampLayer(index)
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	if t.closed.Load() || t.running == 0 {
		return fmt.Errorf("add layer %d to %s: %w", index, t.p.ID, ErrTrackEnded)
	}
	l := t.newLayer(index, r, ssrc)
	if !t.layers[index].CompareAndSwap(nil, l) {
		return fmt.Errorf("add layer %d to %s: %w", index, t.p.ID, ErrLayerTaken)
	}
	t.running++
	go t.readLayer(l)
	return nil
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

// AddSink starts forwarding to s (replacing a sink with the same id). On a
// track that has ended, s is told so at once, with no lock held: its
// TrackClosed may call back into the track (RemoveSink).
func (t *UpTrack) AddSink(s Sink) {
	if !t.addSink(s) {
		s.TrackClosed()
	}
}

// addSink adds s to the sink list unless the track has ended.
func (t *UpTrack) addSink(s Sink) bool {
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	if t.closed.Load() {
		return false
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
	return true
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

// RequestKeyframe asks the publisher for a keyframe of a layer unless one
// was asked for recently. It never blocks: it marks the layer in a bitmask
// and wakes the track's RTCP writer (see writeKeyframeRequests), so a
// publisher connection slow to take RTCP never stalls the reader goroutine
// that forwards the track.
func (t *UpTrack) RequestKeyframe(layer int8) {
	if t.p.Kind != webrtc.RTPCodecTypeVideo || t.p.WriteRTCP == nil || layer < 0 || layer >= simulcast.MaxSpatial {
		return
	}
	l := t.layers[layer].Load()
	if l == nil {
		return
	}
	now := t.nowNanos()
	last := l.lastPLI.Load()
	if now-last < int64(keyframeRequestInterval) || !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	t.pliPending.Or(1 << uint(layer))
	select {
	case t.pliWake <- struct{}{}:
	default: // a wake-up is pending: the writer will see this layer too
	}
}

// writeKeyframeRequests is the track's RTCP writer: it sends the PLIs that
// RequestKeyframe marked until the track ends. One goroutine per track,
// with its packets made once.
func (t *UpTrack) writeKeyframeRequests() {
	b := newPLIBatch()
	for {
		select {
		case <-t.pliWake:
		case <-t.done:
			return
		}
		t.sendKeyframeRequests(b)
	}
}

// pliBatch holds a PLI per layer, reused for every request.
type pliBatch struct {
	plis [simulcast.MaxSpatial]rtcp.PictureLossIndication
	pkts [simulcast.MaxSpatial][]rtcp.Packet
}

func newPLIBatch() *pliBatch {
	b := &pliBatch{}
	for i := range b.pkts {
		b.pkts[i] = []rtcp.Packet{&b.plis[i]}
	}
	return b
}

// sendKeyframeRequests writes a PLI for every layer marked pending.
func (t *UpTrack) sendKeyframeRequests(b *pliBatch) {
	pending := t.pliPending.Swap(0)
	for layer := range simulcast.MaxSpatial {
		l := t.layers[layer].Load()
		if pending&(1<<uint(layer)) == 0 || l == nil {
			continue
		}
		b.plis[layer].MediaSSRC = l.ssrc
		if err := t.p.WriteRTCP(b.pkts[layer]); err != nil {
			t.p.Logger.Debug("keyframe request failed", "track", t.p.ID, "layer", layer, "err", err)
			continue
		}
		t.p.Logger.Debug("keyframe request sent", "track", t.p.ID, "layer", layer)
	}
}

// RequestKeyframes asks for a keyframe on every layer.
func (t *UpTrack) RequestKeyframes() {
	for l := int8(0); l < simulcast.MaxSpatial; l++ {
		t.RequestKeyframe(l)
	}
}

// ReadCached copies a cached packet of a layer, by publisher sequence
// number, into dst.
func (t *UpTrack) ReadCached(layer int8, seq uint16, dst []byte) (int, bool) {
	if layer < 0 || layer >= simulcast.MaxSpatial {
		return 0, false
	}
	l := t.layers[layer].Load()
	if l == nil {
		return 0, false
	}
	return l.cache.Get(seq, dst)
}

// UpdateBitrates measures each layer's bitrate from the bytes received
// since the last call; the room calls it periodically.
func (t *UpTrack) UpdateBitrates() {
	now := t.nowNanos()
	for i := range t.layers {
		if l := t.layers[i].Load(); l != nil {
			l.updateRates(now)
		}
	}
}

func (l *upLayer) updateRates(now int64) {
	m := &l.meter
	if m.lastNanos == 0 || now <= m.lastNanos {
		for i := range l.bytes {
			m.last[i] = l.bytes[i].Load()
		}
		m.lastNanos = now
		return
	}
	dt := float64(now-m.lastNanos) / 1e9
	for i := range l.bytes {
		b := l.bytes[i].Load()
		sample := float64(b-m.last[i]) * 8 / dt
		m.last[i] = b
		old := float64(l.rates[i].Load())
		if !m.seeded {
			// The first sample is the rate: smoothing it in from zero would
			// make a new layer look cheap for a second, and an allocator
			// place subscribers on it that it then has to take down.
			old = sample
		}
		l.rates[i].Store(uint64(old + bitrateSmoothing*(sample-old)))
	}
	m.seeded = true
	m.lastNanos = now
}

// LayerBitrates returns the measured bitrate of every layer the publisher
// currently sends, per spatial layer and cumulative over temporal layers
// (entry [s][t] is layer s with temporal layers 0..t); 0 for layers not
// received.
func (t *UpTrack) LayerBitrates() (out [simulcast.MaxSpatial][simulcast.AllTemporal + 1]uint64) {
	avail := t.AvailableLayers()
	for s := range t.layers {
		l := t.layers[s].Load()
		if l == nil || !avail.Has(int8(s)) {
			continue
		}
		var sum uint64
		for tid := range l.rates {
			sum += l.rates[tid].Load()
			out[s][tid] = sum
		}
	}
	return out
}

// sampleLoss returns the worst loss of the track's layers since the last
// call; the room's quality loop is its only caller.
func (t *UpTrack) sampleLoss() (float64, bool) {
	worst, any := 0.0, false
	for i := range t.layers {
		l := t.layers[i].Load()
		if l == nil {
			continue
		}
		expected, received := l.cache.Counts()
		if loss, ok := l.loss.sample(expected, received); ok {
			worst, any = max(worst, loss), true
		}
	}
	return worst, any
}

// SetSenderReport records a sender report of a layer (from whoever reads
// the publisher's RTCP).
func (t *UpTrack) SetSenderReport(layer int8, sr simulcast.SenderReport) {
	if layer < 0 || layer >= simulcast.MaxSpatial {
		return
	}
	if l := t.layers[layer].Load(); l != nil {
		l.report.Store(&sr)
	}
}

// TimestampDelta is how far layer to's timestamps run ahead of layer
// from's, from their newest sender reports.
func (t *UpTrack) TimestampDelta(from, to int8) (uint32, bool) {
	if from < 0 || to < 0 || from >= simulcast.MaxSpatial || to >= simulcast.MaxSpatial {
		return 0, false
	}
	lf, lt := t.layers[from].Load(), t.layers[to].Load()
	if lf == nil || lt == nil {
		return 0, false
	}
	rf, rt := lf.report.Load(), lt.report.Load()
	if rf == nil || rt == nil {
		return 0, false
	}
	return simulcast.TimestampDelta(*rf, *rt, t.p.Codec.ClockRate), true
}

// AvailableLayers is the set of layers the publisher currently sends.
func (t *UpTrack) AvailableLayers() simulcast.LayerMask {
	return simulcast.LayerMask(t.avail.Load())
}

// Run reads and forwards packets until every layer's reader has failed.
func (t *UpTrack) Run() {
	if t.p.Kind == webrtc.RTPCodecTypeVideo && t.p.WriteRTCP != nil {
		go t.writeKeyframeRequests()
	}
	first := t.layers[clampLayer(t.p.Layer)].Load()
	t.readLayer(first)
	<-t.allDone
	t.finish()
}

// readLayer reads one layer until its reader fails.
func (t *UpTrack) readLayer(l *upLayer) {
	defer t.layerEnded(l)
	buf := make([]byte, MaxPacketSize)
	var pkt rtp.Packet
	var out Packet
	for {
		n, _, err := l.reader.Read(buf)
		if err != nil {
			t.p.Logger.Debug("track reader ended", "track", t.p.ID, "layer", l.index, "err", err)
			return
		}
		t.forward(l, buf[:n], &pkt, &out)
	}
}

func (t *UpTrack) layerEnded(l *upLayer) {
	t.setAvailable(l.index, false)
	t.sinkMu.Lock()
	defer t.sinkMu.Unlock()
	t.running--
	if t.running == 0 {
		close(t.allDone)
	}
}

// forward handles one received packet; it is the per-packet hot path.
func (t *UpTrack) forward(l *upLayer, raw []byte, pkt *rtp.Packet, out *Packet) {
	if err := pkt.Unmarshal(raw); err != nil || pkt.Version != 2 {
		t.badPkts.Add(1)
		return
	}
	t.packets.Add(1)
	t.bytes.Add(uint64(len(raw)))
	stored := l.cache.Store(raw)
	if !stored.Stored() {
		// A duplicate (a retransmission of a packet that arrived, or an
		// RTX bandwidth probe resending an old one) or a packet too old
		// to matter: forwarding it would only confuse subscribers.
		t.dropped.Add(1)
		return
	}
	now := t.nowNanos()
	l.lastArrival.Store(now)
	if !t.AvailableLayers().Has(l.index) {
		t.setAvailable(l.index, true)
	}
	t.expireLayers(now)
	out.Header = &pkt.Header
	out.Payload = pkt.Payload
	out.Raw = raw
	out.Arrival = now
	out.Layer = l.index
	describePacket(t.codec, out)
	l.bytes[min(max(out.TID, 0), simulcast.AllTemporal)].Add(uint64(len(raw)))
	if stored == StoredLate {
		// A reordered or retransmitted packet is forwarded into the
		// stream it belongs to, but never starts a frame or a switch:
		// an old keyframe must not pass for a new one.
		out.Keyframe, out.FrameStart = false, false
	}
	out.HasAudioLevel = false
	if t.p.AudioLevelExtID != 0 {
		t.readAudioLevel(pkt, out)
	}
	for _, s := range *t.sinks.Load() {
		s.WriteRTP(out)
	}
}

// describe fills in what sinks need to know of the payload: keyframe,
// and for VP8 the payload descriptor (frame start, temporal layer).
func describePacket(codec simulcast.Codec, out *Packet) {
	out.HasVP8 = false
	out.FrameStart = true
	out.TID = -1
	out.LayerSync = false
	if len(out.Payload) == 0 {
		out.Keyframe = false
		return
	}
	if codec != simulcast.CodecVP8 {
		out.Keyframe = simulcast.IsKeyframe(codec, out.Payload)
		return
	}
	if simulcast.ParseVP8(out.Payload, &out.VP8) != nil {
		out.Keyframe = false
		return
	}
	out.HasVP8 = true
	out.Keyframe = out.VP8.Keyframe
	out.FrameStart = out.VP8.FrameStart()
	if out.VP8.HasTID {
		out.TID = int8(out.VP8.TID)
		out.LayerSync = out.VP8.LayerSync
	}
}

func (t *UpTrack) readAudioLevel(pkt *rtp.Packet, out *Packet) {
	ext := pkt.Header.GetExtension(t.p.AudioLevelExtID)
	if ext == nil {
		return
	}
	if level, voice, ok := ParseAudioLevel(ext); ok {
		out.AudioLevel, out.Voice, out.HasAudioLevel = level, voice, true
		if t.p.OnAudioLevel != nil {
			t.p.OnAudioLevel(level)
		}
	}
}

// expireLayers drops layers silent for longer than layerTimeout from the
// available set, at most once per layerCheckInterval. Reader goroutines
// call it on each packet; the room calls it periodically, so a track whose
// layers all stopped is noticed too.
func (t *UpTrack) expireLayers(now int64) {
	last := t.lastCheck.Load()
	if now-last < int64(layerCheckInterval) || !t.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if t.muted.Load() {
		return // a muted publisher sends little or nothing: keep the layers as they were
	}
	avail := t.AvailableLayers()
	left := bits.OnesCount32(uint32(avail))
	for i := len(t.layers) - 1; i >= 0; i-- { // the lowest layer is the last to go
		l := t.layers[i].Load()
		if l == nil || !avail.Has(l.index) {
			continue
		}
		silent := now - l.lastArrival.Load()
		if silent > int64(layerTimeout) && (left > 1 || silent > int64(silenceTimeout)) {
			t.setAvailable(l.index, false)
			left--
		}
	}
}

// SetMuted tells the track that its publisher muted it (or unmuted it):
// while muted, silent layers are not taken for stopped ones.
func (t *UpTrack) SetMuted(muted bool) { t.muted.Store(muted) }

// ExpireLayers looks for layers that stopped (see expireLayers).
func (t *UpTrack) ExpireLayers() { t.expireLayers(t.nowNanos()) }

// setAvailable adds a layer to or removes it from the available set and
// reports a change.
func (t *UpTrack) setAvailable(layer int8, on bool) {
	bit := uint32(1) << uint(layer)
	for {
		old := t.avail.Load()
		next := old &^ bit
		if on {
			next = old | bit
		}
		if next == old {
			return
		}
		if t.avail.CompareAndSwap(old, next) {
			t.p.Logger.Debug("simulcast layers changed", "track", t.p.ID, "layers", fmt.Sprintf("%03b", next))
			mask := simulcast.LayerMask(next)
			for _, s := range *t.sinks.Load() {
				if l, ok := s.(LayerListener); ok {
					l.LayersChanged(mask)
				}
			}
			return
		}
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

// SenderReport returns the newest sender report of a layer: it maps the
// layer's RTP timestamps to the publisher's NTP clock, which aligns
// tracks (an egress keeps audio and video in sync with it).
func (t *UpTrack) SenderReport(layer int8) (simulcast.SenderReport, bool) {
	if layer < 0 || layer >= simulcast.MaxSpatial {
		return simulcast.SenderReport{}, false
	}
	l := t.layers[layer].Load()
	if l == nil {
		return simulcast.SenderReport{}, false
	}
	if r := l.report.Load(); r != nil {
		return *r, true
	}
	return simulcast.SenderReport{}, false
}

// Discarded counts the packets received but not forwarded: malformed ones,
// and duplicates or packets too old to forward (Stats counts the others).
func (t *UpTrack) Discarded() (malformed, dropped uint64) {
	return t.badPkts.Load(), t.dropped.Load()
}
