package signaling_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// simLayer is one simulcast encoding published with pion. pion does not
// write the MID and RID header extensions by which a receiver tells the
// layers of one m-line apart (browsers do), so simLayer adds them.
type simLayer struct {
	*webrtc.TrackLocalStaticRTP
	mu             sync.Mutex
	midExt, ridExt uint8
	mid            string
}

func (l *simLayer) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
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

func (l *simLayer) write(seq uint16, ts uint32, marker bool, payload []byte) error {
	l.mu.Lock()
	midExt, ridExt, mid := l.midExt, l.ridExt, l.mid
	l.mu.Unlock()
	h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: marker}
	if midExt == 0 || ridExt == 0 || mid == "" {
		return fmt.Errorf("layer %s not negotiated with mid and rid extensions", l.RID())
	}
	if err := h.SetExtension(midExt, []byte(mid)); err != nil {
		return err
	}
	if err := h.SetExtension(ridExt, []byte(l.RID())); err != nil {
		return err
	}
	return l.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
}

// sendLayers writes VP8 frames (3 packets, keyframe every 25 frames) on all
// layers in lockstep every 20 ms, so that the server sees them start at the
// same instant; every 40th sequence number of each layer is skipped, a loss
// the receiver NACKs.
func sendLayers(t *testing.T, layers []*simLayer) {
	seq, ts := uint16(100), uint32(1000)
	everyFrame(t, func(frame int) error {
		for i := 0; i < 3; i++ {
			payload := make([]byte, 400)
			if i == 0 {
				payload[0] = 0x10 // S bit, partition 0
				payload[1] = 0x01 // inter frame
				if frame%25 == 0 {
					payload[1] = 0x00
				}
			}
			if seq%40 != 0 {
				for _, l := range layers {
					if err := l.write(seq, ts, i == 2, payload); err != nil {
						return err
					}
				}
			}
			seq++
		}
		ts += 4500
		return nil
	})
}

// everyFrame calls send every 20 ms with the frame's number, from its own
// goroutine, until the test ends or send fails.
func everyFrame(t *testing.T, send func(frame int) error) {
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := send(frame); err != nil {
				t.Error(err)
				return
			}
		}
	}()
}

// TestSimulcastLayers publishes a three-layer simulcast track whose layers
// start together: exactly one track must be published and forwarded (pion
// reports each layer in its own goroutine), and the layers that are not
// forwarded must still be read, so the publisher gets feedback (here NACKs)
// for them; unread, a browser's bandwidth estimate collapses.
func TestSimulcastLayers(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	room := "simulcast-layers"
	bobC := n.join(t, room, "bob", client.Options{})
	bob := watchMedia(bobC)
	alice := n.join(t, room, "alice", client.Options{Configure: func(me *webrtc.MediaEngine, _ *interceptor.Registry) error {
		return webrtc.ConfigureSimulcastExtensionHeaders(me)
	}})

	rids := []string{"q", "h", "f"}
	layers := make([]*simLayer, 0, len(rids))
	for _, rid := range rids {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"cam", "stream-cam", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, &simLayer{TrackLocalStaticRTP: tr})
	}
	ctx := ctxTimeout(t, 10*time.Second)
	mark := alice.Mark()
	mustSend(t, alice, &livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{
		Cid: "cam", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, Width: 1280, Height: 720,
		Layers: []*livekit.VideoLayer{
			{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180},
			{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
			{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
		},
	}}})
	msg, err := alice.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool { return m.GetTrackPublished() != nil })
	if err != nil {
		t.Fatalf("addTrack: %v", err)
	}
	info := msg.GetTrackPublished().Track
	tr, err := alice.Pub.AddTransceiverFromTrack(layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[1:] {
		if err := tr.Sender().AddEncoding(l); err != nil {
			t.Fatalf("add encoding %s: %v", l.RID(), err)
		}
	}
	if err := alice.NegotiatePublisher(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		l.mu.Lock()
		l.mid = tr.Mid()
		l.mu.Unlock()
	}

	var nacked sync.Map // rid -> *atomic.Int64
	for _, rid := range rids {
		cnt := &atomic.Int64{}
		nacked.Store(rid, cnt)
		go func() {
			for {
				pkts, _, err := tr.Sender().ReadSimulcastRTCP(rid)
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.TransportLayerNack); ok {
						cnt.Add(1)
					}
				}
			}
		}()
	}
	sendLayers(t, layers)

	eventually(t, 10*time.Second, "bob receives alice's simulcast camera", func() bool { return bob.packets(info.Sid) > 50 })
	for _, rid := range rids {
		v, _ := nacked.Load(rid)
		cnt := v.(*atomic.Int64)
		eventually(t, 5*time.Second, "a NACK for lost packets of layer "+rid, func() bool { return cnt.Load() > 0 })
	}
	alicePart := n.rooms.Room(livekit.RoomName(room)).Participant("alice")
	if tracks := alicePart.Info().Tracks; len(tracks) != 1 || tracks[0].Sid != info.Sid || !tracks[0].Simulcast {
		t.Errorf("alice publishes %v, want the one simulcast track %s", tracks, info.Sid)
	}
	if got := bob.tracks(); len(got) != 1 {
		t.Errorf("bob receives tracks %v, want only alice's camera", got)
	}
	before := bob.packets(info.Sid)
	time.Sleep(300 * time.Millisecond)
	if bob.packets(info.Sid) <= before {
		t.Errorf("forwarding stopped at %d packets", before)
	}
}
