package simulcast

// MaxSpatial is the number of simulcast layers a track can have.
const MaxSpatial = 3

// AllTemporal is a temporal target that keeps every temporal layer (VP8
// carries temporal ids 0..3).
const AllTemporal int8 = 3

// Layer is a spatial (simulcast stream) and temporal layer pair.
// A negative Spatial means no layer: nothing is forwarded.
type Layer struct {
	Spatial  int8
	Temporal int8
}

// NoLayer forwards nothing (a paused stream).
var NoLayer = Layer{Spatial: -1, Temporal: -1}

// LayerMask is a set of spatial layers, bit i for layer i.
type LayerMask uint8

// Has reports whether layer l is in the set.
func (m LayerMask) Has(l int8) bool { return l >= 0 && l < 8 && m&(1<<uint(l)) != 0 }

// Resolve picks the spatial layer to forward for a target among the
// available layers: the highest available layer at or below the target,
// else the lowest available one above it (something rather than nothing),
// or -1 when the target is negative or nothing is available.
func Resolve(target int8, avail LayerMask) int8 {
	if target < 0 || avail == 0 {
		return -1
	}
	for l := min(target, MaxSpatial-1); l >= 0; l-- {
		if avail.Has(l) {
			return l
		}
	}
	for l := target + 1; l < MaxSpatial; l++ {
		if avail.Has(l) {
			return l
		}
	}
	return -1
}

// PacketInfo is what the selector needs to know of one received packet.
type PacketInfo struct {
	Layer      int8 // spatial layer (simulcast stream) it arrived on
	Keyframe   bool // starts an independently decodable picture
	FrameStart bool // first packet of a frame (VP8 S bit, partition 0)
	TID        int8 // temporal layer id, -1 when the codec carries none
	LayerSync  bool // VP8 Y bit: a switch up to TID is possible here
}

// Action says what to do with a packet.
type Action uint8

// Actions of Select.
const (
	// Drop: not part of the forwarded stream (another layer, or waiting
	// for a keyframe).
	Drop Action = iota
	// Forward: send it.
	Forward
	// SwitchForward: send it as the first packet of a newly selected
	// layer; the caller switches its munger to the new input stream first.
	SwitchForward
	// DropInStream: a packet of the forwarded layer that is not sent (an
	// upper temporal layer); the munger must skip it without a gap.
	DropInStream
)

// Decision is the result of Select for one packet.
type Decision struct {
	Action Action
	// KeyframeFor is the layer to request a keyframe of, or -1.
	KeyframeFor int8
}

// Selector chooses, packet by packet, which simulcast layer one subscriber
// receives. It switches spatial layers only at a keyframe of the new layer,
// forwarding the current layer until that keyframe arrives, and takes a
// keyframe of a layer closer to the target whenever one arrives anyway.
// Temporal layers go down at any frame start and up at a layer-sync frame.
// A Selector is not safe for concurrent use.
type Selector struct {
	current  int8 // spatial layer forwarded, -1 before the first keyframe
	temporal int8 // highest temporal id forwarded
	want     int8 // spatial layer resolved for the last packet
	// Draining (see Drain): drain is asked for, draining drops the
	// current layer's frames, drained counts the frames dropped.
	drain, draining bool
	drained         int
}

// drainMaxFrames is how many frames of the current layer Drain drops at
// most while the lower layer's keyframe is awaited (a publisher slow to
// send it): about a second of video.
const drainMaxFrames = 30

// Drain makes the selector stop forwarding the current spatial layer, from
// its next frame start, while the wanted layer is a lower one whose
// keyframe is awaited. A path that became too narrow for the current layer
// then clears its queue before that keyframe, rather than queueing it
// behind more frames the path cannot carry (behind a token bucket that
// is seconds of them); the subscriber sees the last frame until the
// keyframe. Draining ends at the switch, when the wanted layer is no
// longer lower, or after drainMaxFrames frames.
func (s *Selector) Drain() {
	if s.current >= 0 && !s.drain {
		s.drain, s.draining, s.drained = true, false, 0
	}
}

// NewSelector returns a selector waiting for its first keyframe.
func NewSelector() *Selector { return &Selector{current: -1, temporal: AllTemporal, want: -1} }

// Reset makes the selector wait for a keyframe again (after a pause).
func (s *Selector) Reset() { s.current, s.drain, s.draining = -1, false, false }

// Current is the spatial layer being forwarded, or -1.
func (s *Selector) Current() int8 { return s.current }

// Wanted is the spatial layer the selector resolved for the last packet
// (the target, or the best available layer instead), or -1.
func (s *Selector) Wanted() int8 { return s.want }

// Select decides what to do with packet p, given the target layer and the
// layers the publisher currently sends.
func (s *Selector) Select(p PacketInfo, target Layer, avail LayerMask) Decision {
	want := Resolve(target.Spatial, avail|1<<uint(p.Layer))
	s.want = want
	if want < 0 {
		s.current = -1
		return Decision{Action: Drop, KeyframeFor: -1}
	}
	if p.Layer == s.current {
		if s.drainFrame(p, want) {
			return Decision{Action: DropInStream, KeyframeFor: want}
		}
		d := Decision{Action: s.filterTemporal(p, target.Temporal), KeyframeFor: -1}
		if want != s.current {
			d.KeyframeFor = want
		}
		return d
	}
	if p.Keyframe && s.closer(p.Layer, want) {
		s.current = p.Layer
		s.temporal = clampTemporal(target.Temporal)
		s.drain, s.draining = false, false
		return Decision{Action: SwitchForward, KeyframeFor: -1}
	}
	if p.Layer == want {
		return Decision{Action: Drop, KeyframeFor: want}
	}
	return Decision{Action: Drop, KeyframeFor: -1}
}

// drainFrame reports whether packet p of the current layer is dropped
// while draining (see Drain).
func (s *Selector) drainFrame(p PacketInfo, want int8) bool {
	if !s.drain {
		return false
	}
	if want >= s.current {
		s.drain, s.draining = false, false
		return false
	}
	if p.FrameStart {
		if s.drained >= drainMaxFrames {
			s.drain, s.draining = false, false
			return false
		}
		s.draining = true
		s.drained++
	}
	return s.draining
}

// closer reports whether switching to layer l brings the stream closer to
// the wanted layer. Before the first keyframe any layer up to the wanted
// one starts the stream (a fast first picture; the wanted layer follows).
func (s *Selector) closer(l, want int8) bool {
	if s.current < 0 {
		return l <= want
	}
	return abs8(l-want) < abs8(s.current-want)
}

// filterTemporal moves the forwarded temporal layer toward the target at
// frame starts and drops packets above it.
func (s *Selector) filterTemporal(p PacketInfo, target int8) Action {
	if p.TID < 0 {
		return Forward
	}
	target = clampTemporal(target)
	if p.FrameStart {
		switch {
		case target < s.temporal:
			s.temporal = target
		case target > s.temporal && (p.Keyframe || (p.LayerSync && p.TID > s.temporal && p.TID <= target)):
			if p.Keyframe {
				s.temporal = target
			} else {
				s.temporal = p.TID
			}
		}
	}
	if p.TID > s.temporal {
		return DropInStream
	}
	return Forward
}

func clampTemporal(t int8) int8 {
	if t < 0 || t > AllTemporal {
		return AllTemporal
	}
	return t
}

func abs8(v int8) int8 {
	if v < 0 {
		return -v
	}
	return v
}
