package sfu

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/fanout-sfu/fanout/simulcast"
)

// dynacastDownDelay is how long a layer nobody wants keeps being encoded
// before the publisher is told to stop it: a subscriber flipping between
// qualities must not make the publisher's encoder churn. Turning a layer
// back on is immediate.
var dynacastDownDelay = 3 * time.Second

// publishedTrack is one track a participant publishes.
type publishedTrack struct {
	info *livekit.TrackInfo // guarded by publisher.mu
	up   *UpTrack
	// dyn is nil for audio tracks. A video track has one even without
	// simulcast: sendQualities then tells the publisher nothing.
	dyn *dynacast
}

func newPublishedTrack(info *livekit.TrackInfo, up *UpTrack, send func(*livekit.TrackInfo, int8)) *publishedTrack {
	t := &publishedTrack{info: info, up: up}
	if up.Kind() == webrtc.RTPCodecTypeVideo {
		t.dyn = newDynacast(func(top int8) { send(info, top) })
	}
	return t
}

// wantLayer records the highest spatial layer a sink wants of the track;
// -1 wants none: subscribers' DownTracks, and sinks attached through
// Room.PublishedTrack (an egress, which wants the top layer).
func (t *publishedTrack) wantLayer(sink string, layer int8) {
	if t.dyn != nil {
		t.dyn.set(sink, layer)
	}
}

// dropWant forgets a sink's wish.
func (t *publishedTrack) dropWant(sink string) {
	if t.dyn != nil {
		t.dyn.remove(sink)
	}
}

// dynacast keeps track of the highest simulcast layer any sink of one track
// wants and tells the publisher which layers to encode, so that layers
// nobody watches cost neither the publisher's uplink nor its CPU.
//
// Its mutex is never held while sending: send takes the publisher's mutex,
// and unpublish closes the dynacast after releasing that mutex, but a
// sender holding ours would still order the two locks against each other.
// Decisions are made under mu; one caller at a time (flushing) delivers
// them, newest last, outside it.
type dynacast struct {
	mu        sync.Mutex
	wants     map[string]int8
	sent      int8 // highest layer enabled by the last decision (all at first)
	delivered int8 // the decision last handed to send
	flushing  bool // a caller is delivering decisions
	timer     *time.Timer
	send      func(top int8)
	closed    bool
}

func newDynacast(send func(top int8)) *dynacast {
	top := int8(simulcast.MaxSpatial - 1)
	d := &dynacast{wants: map[string]int8{}, sent: top, delivered: top, send: send}
	d.mu.Lock()
	d.evaluateLocked() // no sink yet: layers go off unless one comes soon
	d.mu.Unlock()
	return d
}

func (d *dynacast) set(sink string, layer int8) {
	d.mu.Lock()
	d.wants[sink] = layer
	d.evaluateLocked()
	d.mu.Unlock()
	d.flush()
}

func (d *dynacast) remove(sink string) {
	d.mu.Lock()
	delete(d.wants, sink)
	d.evaluateLocked()
	d.mu.Unlock()
	d.flush()
}

// close stops pending updates (the track ended).
func (d *dynacast) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.stopTimerLocked()
}

func (d *dynacast) topLocked() int8 {
	top := int8(-1)
	for _, l := range d.wants {
		top = max(top, min(l, simulcast.MaxSpatial-1))
	}
	return top
}

// evaluateLocked enables a wanted layer at once and schedules turning off
// unwanted ones; the caller delivers the decision with flush.
func (d *dynacast) evaluateLocked() {
	if d.closed {
		return
	}
	top := d.topLocked()
	switch {
	case top > d.sent:
		d.stopTimerLocked()
		d.sent = top
	case top < d.sent:
		if d.timer == nil {
			d.timer = time.AfterFunc(dynacastDownDelay, d.settle)
		}
	default:
		d.stopTimerLocked()
	}
}

func (d *dynacast) stopTimerLocked() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// settle lowers the layer set once the delay passed.
func (d *dynacast) settle() {
	d.mu.Lock()
	d.timer = nil
	if !d.closed {
		d.sent = d.topLocked()
	}
	d.mu.Unlock()
	d.flush()
}

// flush hands the newest decision to send, without holding mu. A caller
// that finds another one delivering leaves it to that one, which loops
// until what it delivered is the newest decision: updates reach the
// publisher in order, the last one being the current one.
func (d *dynacast) flush() {
	d.mu.Lock()
	if d.flushing {
		d.mu.Unlock()
		return
	}
	d.flushing = true
	for !d.closed && d.delivered != d.sent {
		top := d.sent
		d.delivered = top
		d.mu.Unlock()
		d.send(top)
		d.mu.Lock()
	}
	d.flushing = false
	d.mu.Unlock()
}

// qualityUpdate tells a publisher which qualities of a track to encode:
// every layer up to top. The qualities go both in the plain list and per
// codec (mime subtype, lower case: "vp8"), which is the one livekit-client
// reads.
func qualityUpdate(trackSid, mime string, top int8) *livekit.SignalResponse {
	qualities := make([]*livekit.SubscribedQuality, 0, simulcast.MaxSpatial)
	for l := int8(0); l < simulcast.MaxSpatial; l++ {
		qualities = append(qualities, &livekit.SubscribedQuality{Quality: livekit.VideoQuality(l), Enabled: l <= top})
	}
	update := &livekit.SubscribedQualityUpdate{TrackSid: trackSid, SubscribedQualities: qualities}
	if _, codec, ok := strings.Cut(strings.ToLower(mime), "/"); ok && codec != "" {
		update.SubscribedCodecs = []*livekit.SubscribedCodec{{Codec: codec, Qualities: qualities}}
	}
	return &livekit.SignalResponse{Message: &livekit.SignalResponse_SubscribedQualityUpdate{SubscribedQualityUpdate: update}}
}

// sendQualities tells the publisher which layers of a simulcast track to
// encode. A track without simulcast is left alone: turning off its only
// layer would only delay the first picture of the next subscriber.
func (pub *publisher) sendQualities(info *livekit.TrackInfo, top int8) {
	pub.mu.Lock()
	sid, mime, simulcast := info.Sid, info.MimeType, info.Simulcast
	pub.mu.Unlock()
	if !simulcast {
		return
	}
	pub.p.log.Debug("dynacast", "track", sid, "top_layer", top)
	pub.p.send(qualityUpdate(sid, mime, top))
}

// maxLayerFor maps a subscriber's trackSetting to the highest layer it
// wants: its viewport size when it gives one (adaptive stream), else its
// quality.
func maxLayerFor(layers []*livekit.VideoLayer, quality livekit.VideoQuality, width, height uint32) int8 {
	if width > 0 && height > 0 {
		dims := make([]simulcast.Dims, simulcast.MaxSpatial)
		for _, l := range layers {
			if q := int(l.Quality); q >= 0 && q < simulcast.MaxSpatial {
				dims[q] = simulcast.Dims{Width: l.Width, Height: l.Height}
			}
		}
		if l := simulcast.LayerForSize(dims, width, height); l >= 0 {
			return l
		}
		return simulcast.MaxSpatial - 1
	}
	if quality == livekit.VideoQuality_OFF {
		return -1
	}
	return int8(min(int(quality), simulcast.MaxSpatial-1))
}

// layers copies the track's simulcast layers.
func (pub *publisher) layers(t *publishedTrack) []*livekit.VideoLayer {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	out := make([]*livekit.VideoLayer, 0, len(t.info.Layers))
	for _, l := range t.info.Layers {
		out = append(out, proto.Clone(l).(*livekit.VideoLayer))
	}
	return out
}

// noteLayer records a received layer in the track's info: its SSRC, and the
// layer itself (without dimensions) when addTrack did not announce it, so
// that subscribers see every simulcast layer in TrackInfo.layers.
func (pub *publisher) noteLayer(t *publishedTrack, layer int8, ssrc uint32, simulcastLayer bool) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	q := livekit.VideoQuality(layer)
	for _, l := range t.info.Layers {
		if l.Quality == q {
			l.Ssrc = ssrc
			return
		}
	}
	if !simulcastLayer {
		return
	}
	t.info.Layers = append(t.info.Layers, &livekit.VideoLayer{Quality: q, Ssrc: ssrc})
	slices.SortFunc(t.info.Layers, func(a, b *livekit.VideoLayer) int { return int(a.Quality) - int(b.Quality) })
	t.info.Simulcast = len(t.info.Layers) > 1
}
