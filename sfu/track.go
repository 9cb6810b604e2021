package sfu

import (
	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// PacketReader is where a Track reads RTP from: a *webrtc.TrackRemote
// today (a relay link from another node would be one too: the SFU could
// not tell them apart).
type PacketReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// Packet is one received RTP packet as handed to sinks. It and everything it
// points to are valid only during Sink.WriteRTP.
type Packet struct {
	Header  *rtp.Header
	Payload []byte // without padding
	Raw     []byte // the packet as received
	Arrival int64  // unix nanoseconds
	// Keyframe marks a packet a decoder can start at: for VP8 the first
	// packet of a keyframe, for H.264 one carrying an SPS or IDR slice
	// (see simulcast.IsKeyframe). Never set on a late (reordered or
	// retransmitted) packet: an old keyframe must not pass for a new one.
	Keyframe bool
	// Layer is the spatial (simulcast) layer the packet arrived on.
	Layer int8
	// FrameStart marks the first packet of a frame (VP8 S bit on partition
	// 0; set for every packet of codecs whose frames the SFU does not
	// parse). Never set on a late packet either.
	FrameStart bool
	// TID is the temporal layer id (-1: none) and LayerSync the VP8 Y bit.
	TID       int8
	LayerSync bool
	// VP8 is the parsed payload descriptor, when HasVP8.
	VP8    simulcast.VP8Descriptor
	HasVP8 bool
	// AudioLevel is the RFC 6464 level (0 loudest .. 127 silence) and
	// Voice its voice-activity flag, when HasAudioLevel is set.
	AudioLevel    uint8
	Voice         bool
	HasAudioLevel bool
}

// Sink receives the packets of a Track: a subscriber's DownTrack, an
// egress (a relay to another node would be one too). WriteRTP runs on the
// reader goroutine of the packet's layer, one per simulcast layer, so calls
// for different layers may come at once: it must never block and never
// keep pkt.
type Sink interface {
	SinkID() string
	WriteRTP(pkt *Packet)
	// TrackClosed tells the sink that no more packets will come. The
	// track holds none of its locks when it calls it: the sink may call
	// back into the track (RemoveSink).
	TrackClosed()
}

// LayerListener is implemented by sinks that want to know when the set of
// simulcast layers the publisher sends changes. LayersChanged runs on a
// reader goroutine, or on the room's periodic check for layers that
// stopped (UpTrack.ExpireLayers): it must not block.
type LayerListener interface {
	LayersChanged(avail simulcast.LayerMask)
}

// Track is one published media source, as seen by its sinks.
type Track interface {
	ID() livekit.TrackID
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
	AddSink(s Sink)
	RemoveSink(id string)
	// RequestKeyframe asks the publisher for a keyframe of a spatial
	// layer (rate-limited).
	RequestKeyframe(layer int8)
	// ReadCached copies a recently forwarded packet of a layer, by its
	// publisher sequence number, into dst for a retransmission.
	ReadCached(layer int8, seq uint16, dst []byte) (int, bool)
	// AvailableLayers is the set of spatial layers the publisher sends;
	// it is read for every packet and must be cheap.
	AvailableLayers() simulcast.LayerMask
	// TimestampDelta is how far the RTP timestamps of layer to run ahead
	// of those of layer from for the same capture instant, known when
	// both layers sent a sender report.
	TimestampDelta(from, to int8) (uint32, bool)
}
