package sfu

import (
	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PacketReader is where a Track reads RTP from: a *webrtc.TrackRemote, or a
// relay link from another node. The SFU cannot tell them apart.
type PacketReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// Packet is one received RTP packet as handed to sinks. It and everything it
// points to are valid only during Sink.WriteRTP.
type Packet struct {
	Header   *rtp.Header
	Payload  []byte // without padding
	Raw      []byte // the packet as received
	Arrival  int64  // unix nanoseconds
	Keyframe bool
	// AudioLevel is the RFC 6464 level (0 loudest .. 127 silence) and
	// Voice its voice-activity flag, when HasAudioLevel is set.
	AudioLevel    uint8
	Voice         bool
	HasAudioLevel bool
}

// Sink receives the packets of a Track: a subscriber's DownTrack, a relay to
// another node, an egress. WriteRTP runs on the track's reader goroutine: it
// must never block and never keep pkt.
type Sink interface {
	SinkID() string
	WriteRTP(pkt *Packet)
	// TrackClosed tells the sink that no more packets will come.
	TrackClosed()
}

// Track is one published media source, as seen by its sinks.
type Track interface {
	ID() livekit.TrackID
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
	AddSink(s Sink)
	RemoveSink(id string)
	// RequestKeyframe asks the publisher for a keyframe (rate-limited).
	RequestKeyframe()
	// ReadCached copies a recently forwarded packet, by its publisher
	// sequence number, into dst for a retransmission.
	ReadCached(seq uint16, dst []byte) (int, bool)
}
