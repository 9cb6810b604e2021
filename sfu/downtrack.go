package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

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
	Logger        *slog.Logger
}

// binding is what Bind learned from the negotiated transceiver.
type binding struct {
	ssrc         uint32
	payloadType  uint8
	audioLevelID uint8
	writer       webrtc.TrackLocalWriter
	// redToOpus: the publisher sends RED, the subscriber took plain Opus.
	redToOpus bool
}

// DownTrack forwards one published track to one subscriber. It implements
// webrtc.TrackLocal (pion binds it to the subscriber's transceiver) and Sink
// (the published track feeds it).
type DownTrack struct {
	p         DownTrackParams
	kind      webrtc.RTPCodecType
	codec     simulcast.Codec
	clockRate uint32
	munger    *simulcast.Munger

	bound        atomic.Pointer[binding]
	paused       atomic.Bool
	needKeyframe atomic.Bool
	closed       atomic.Bool
	packets      atomic.Uint64
	bytes        atomic.Uint64

	// Reader-goroutine state: touched only from WriteRTP.
	wasPaused bool
	hdr       rtp.Header
	extBuf    [1]rtp.Extension
	levelByte [1]byte

	// Retransmission state, used from the RTCP goroutine.
	rtxMu  sync.Mutex
	rtxBuf [MaxPacketSize]byte
	rtxPkt rtp.Packet
	rtxHdr rtp.Header
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
		munger:    simulcast.NewMunger(),
	}
	d.hdr.Extensions = d.extBuf[:0]
	d.needKeyframe.Store(d.kind == webrtc.RTPCodecTypeVideo)
	return d
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
			if ext.URI == sdp.AudioLevelURI {
				b.audioLevelID = uint8(ext.ID)
			}
		}
		d.bound.Store(b)
		if d.kind == webrtc.RTPCodecTypeVideo {
			if d.packets.Load() > 0 {
				d.munger.Pause() // re-bound while forwarding: no gap until the keyframe
			}
			d.needKeyframe.Store(true)
			d.p.Track.RequestKeyframe()
		}
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("bind %s for %s: %w", want.MimeType, d.p.Subscriber, ErrCodecNotNegotiated)
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
	if !paused && d.kind == webrtc.RTPCodecTypeVideo {
		d.munger.Pause() // packets dropped until the keyframe must leave no gap
		d.needKeyframe.Store(true)
		// No keyframe request here: callers may hold locks, and the next
		// non-keyframe packet through WriteRTP asks for one (rate-limited).
	}
}

// Paused reports whether forwarding is paused.
func (d *DownTrack) Paused() bool { return d.paused.Load() }

// WriteRTP forwards one packet; it runs on the track's reader goroutine and
// never allocates or blocks on anything but the socket write.
func (d *DownTrack) WriteRTP(p *Packet) {
	b := d.bound.Load()
	if b == nil {
		return
	}
	if d.paused.Load() {
		if !d.wasPaused {
			d.wasPaused = true
			d.munger.Pause()
		}
		return
	}
	d.wasPaused = false
	if d.needKeyframe.Load() {
		if !p.Keyframe {
			d.p.Track.RequestKeyframe()
			return
		}
		d.needKeyframe.Store(false)
	}
	payload, ok := payloadFor(b, p.Payload)
	if !ok {
		return // malformed RED: treated as lost, the subscriber may NACK it
	}
	seq, ts, ok := d.munger.Munge(p.Header.SequenceNumber, p.Header.Timestamp, p.Arrival, d.clockRate, len(p.Payload) == 0)
	if !ok {
		return
	}
	fillHeader(&d.hdr, b, p.Header, seq, ts)
	if p.HasAudioLevel && b.audioLevelID != 0 {
		d.levelByte[0] = p.AudioLevel & 0x7f
		if p.Voice {
			d.levelByte[0] |= 0x80
		}
		_ = d.hdr.SetExtension(b.audioLevelID, d.levelByte[:])
	}
	d.write(b, &d.hdr, payload)
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

func (d *DownTrack) write(b *binding, h *rtp.Header, payload []byte) {
	n, err := b.writer.WriteRTP(h, payload)
	if err != nil {
		return // closed or congested transport: the subscriber will NACK or PLI
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(n))
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
			d.p.Track.RequestKeyframe()
		case *rtcp.TransportLayerNack:
			for _, pair := range p.Nacks {
				for _, seq := range pair.PacketList() {
					d.retransmit(seq)
				}
			}
		}
	}
}

// retransmit resends a packet the subscriber reported lost, mapping its
// sequence number back to the publisher's and re-munging the cached copy.
func (d *DownTrack) retransmit(outSeq uint16) {
	b := d.bound.Load()
	if b == nil {
		return
	}
	inSeq, tsOffset, ok := d.munger.UnmungeSeq(outSeq)
	if !ok {
		return
	}
	d.rtxMu.Lock()
	defer d.rtxMu.Unlock()
	n, ok := d.p.Track.ReadCached(inSeq, d.rtxBuf[:])
	if !ok {
		return
	}
	if err := d.rtxPkt.Unmarshal(d.rtxBuf[:n]); err != nil {
		return
	}
	src := &d.rtxPkt.Header
	fillHeader(&d.rtxHdr, b, src, outSeq, src.Timestamp-tsOffset)
	if payload, ok := payloadFor(b, d.rtxPkt.Payload); ok {
		d.write(b, &d.rtxHdr, payload)
	}
}
