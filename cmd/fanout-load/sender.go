package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

const (
	frameInterval = 50 * time.Millisecond // the test media's 20 fps
	frameTicks    = 4500                  // 90 kHz ticks per frame
	rtpMTU        = 1200                  // largest RTP payload written
	audioInterval = 20 * time.Millisecond // one Opus packet
	jumpInterval  = 200 * time.Millisecond
)

var errNotBound = errors.New("layer not bound with mid and rid extensions")

// publisher sends the simulcast layers and the audio until Stop.
type publisher struct {
	videoSid, audioSid string
	sender             *webrtc.RTPSender
	layers             []*sendLayer
	audio              *webrtc.TrackLocalStaticSample
	audioPkts          [][]byte

	stop, done chan struct{}
	failed     chan struct{} // closed when sending cannot go on
	failOnce   sync.Once
	failErr    atomic.Pointer[error]
	readers    sync.WaitGroup
	stopOnce   sync.Once
}

// sendLayer is one simulcast layer's sending state.
type sendLayer struct {
	*webrtc.TrackLocalStaticRTP
	rid    string
	frames []vp8Frame
	pay    codecs.VP8Payloader // sender goroutine only
	seq    uint16              // sender goroutine only
	ssrc   uint32

	mu             sync.Mutex
	midExt, ridExt uint8
	mid            string
	next           int
	lastJump       time.Time

	sent, keys, plis, nacks atomic.Int64 // plis counts FIRs too
}

// Bind learns the extension ids pion negotiated for MID and RID.
func (l *sendLayer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := l.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ext := range ctx.HeaderExtensions() {
		switch ext.URI {
		case sdp.SDESMidURI:
			l.midExt = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			l.ridExt = uint8(ext.ID)
		}
	}
	return codec, nil
}

// startPublisher announces both tracks, negotiates once and starts sending.
func startPublisher(ctx context.Context, c *client.Client, video [][]vp8Frame, audio [][]byte) (*publisher, error) {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{}), failed: make(chan struct{}), audioPkts: audio}
	req := &livekit.AddTrackRequest{Cid: "camera", Name: "camera", Type: livekit.TrackType_VIDEO,
		Source: livekit.TrackSource_CAMERA, Width: 1280, Height: 720}
	for i, l := range simLayers {
		req.Layers = append(req.Layers, &livekit.VideoLayer{Quality: livekit.VideoQuality(i), Width: uint32(l.w), Height: uint32(l.h)})
	}
	info, err := addTrack(ctx, c, req)
	if err != nil {
		return nil, err
	}
	p.videoSid = info.GetSid()
	tr, err := p.addVideo(c.Pub, video)
	if err != nil {
		return nil, err
	}
	if len(audio) > 0 {
		ainfo, err := addTrack(ctx, c, &livekit.AddTrackRequest{Cid: "microphone", Name: "microphone",
			Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE})
		if err != nil {
			return nil, err
		}
		p.audioSid = ainfo.GetSid()
		if p.audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "microphone", "stream-microphone"); err != nil {
			return nil, fmt.Errorf("audio track: %w", err)
		}
		if _, err := c.Pub.AddTransceiverFromTrack(p.audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			return nil, fmt.Errorf("audio transceiver: %w", err)
		}
	}
	if err := c.NegotiatePublisher(ctx); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := p.bind(ctx, tr.Mid()); err != nil {
		return nil, err
	}
	for _, l := range p.layers {
		p.readers.Add(1)
		go p.readRTCP(l)
	}
	go p.run()
	return p, nil
}

// addVideo adds one send-only transceiver with the encodings q, h and f.
func (p *publisher) addVideo(pc *webrtc.PeerConnection, video [][]vp8Frame) (*webrtc.RTPTransceiver, error) {
	capability := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}}
	for i, l := range simLayers {
		track, err := webrtc.NewTrackLocalStaticRTP(capability, "camera", "stream-camera", webrtc.WithRTPStreamID(l.rid))
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.rid, err)
		}
		p.layers = append(p.layers, &sendLayer{TrackLocalStaticRTP: track, rid: l.rid, frames: video[i],
			pay: codecs.VP8Payloader{EnablePictureID: true}, seq: uint16(1000 * (i + 1))})
	}
	tr, err := pc.AddTransceiverFromTrack(p.layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("video transceiver: %w", err)
	}
	for _, l := range p.layers[1:] {
		if err := tr.Sender().AddEncoding(l); err != nil {
			return nil, fmt.Errorf("add encoding %s: %w", l.rid, err)
		}
	}
	if err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{{RTPCodecCapability: capability, PayloadType: 96}}); err != nil {
		return nil, fmt.Errorf("codec preferences: %w", err)
	}
	p.sender = tr.Sender()
	return tr, nil
}

// bind waits until pion bound every layer and learns each layer's SSRC.
func (p *publisher) bind(ctx context.Context, mid string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for _, l := range p.layers {
			l.mu.Lock()
			l.mid = mid
			ok = ok && l.midExt != 0 && l.ridExt != 0
			l.mu.Unlock()
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", errNotBound, ctx.Err())
		case <-tick.C:
		}
	}
	ssrcs := map[string]uint32{}
	for _, e := range p.sender.GetParameters().Encodings {
		ssrcs[e.RID] = uint32(e.SSRC)
	}
	for _, l := range p.layers {
		if l.ssrc = ssrcs[l.rid]; l.ssrc == 0 {
			return fmt.Errorf("no SSRC for layer %s in %v: %w", l.rid, ssrcs, errNotBound)
		}
	}
	return nil
}
