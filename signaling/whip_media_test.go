package signaling_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// layerTagAt is where a test VP8 payload carries its simulcast layer
// (after the one-byte payload descriptor and the frame tag).
const layerTagAt = 4

// sendTaggedLayers writes VP8 frames on each layer every 20 ms, a keyframe
// every 10 frames, with payloads of 100, 300 and 900 bytes tagged with the
// layer's index.
func sendTaggedLayers(t *testing.T, layers []*simLayer) {
	seq, ts := uint16(100), uint32(1000)
	everyFrame(t, func(frame int) error {
		for i, l := range layers {
			payload := make([]byte, []int{100, 300, 900}[i])
			payload[0], payload[1] = 0x10, 0x01 // S bit; inter frame
			if frame%10 == 0 {
				payload[1] = 0x00
			}
			payload[layerTagAt] = byte(i)
			if err := l.write(seq, ts, true, payload); err != nil {
				return err
			}
		}
		seq++
		ts += 1800
		return nil
	})
}

// TestWHIPSimulcast publishes three simulcast layers over WHIP (send rids
// q, h, f): one simulcast track appears, and a subscriber selects its
// layers with trackSetting.
func TestWHIPSimulcast(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whip-simulcast"
	bob := n.join(t, room, "bob", client.Options{})
	var lastLayer atomic.Int32
	lastLayer.Store(-1)
	bob.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go func() {
			var pkt rtp.Packet
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				if pkt.Unmarshal(buf[:n]) == nil && len(pkt.Payload) > layerTagAt {
					lastLayer.Store(int32(pkt.Payload[layerTagAt]))
				}
			}
		}()
	})
	pub := newHTTPPeer(t, n, whipToken(t, room, "gst"))
	var layers []*simLayer
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"cam", "stream", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, &simLayer{TrackLocalStaticRTP: tr})
	}
	tr, err := pub.pc.AddTransceiverFromTrack(layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[1:] {
		if err := tr.Sender().AddEncoding(l); err != nil {
			t.Fatal(err)
		}
	}
	if status, body := pub.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, body)
	}
	for _, l := range layers {
		l.mu.Lock()
		l.mid = tr.Mid()
		l.mu.Unlock()
	}
	pub.waitConnected(10 * time.Second)
	go drainRTCP(tr.Sender())
	sendTaggedLayers(t, layers)

	gst := n.rooms.Room(room).Participant("gst")
	eventually(t, 10*time.Second, "gst publishes its camera", func() bool { return len(gst.Info().Tracks) == 1 })
	info := gst.Info().Tracks[0]
	if !info.Simulcast || len(info.Layers) != 3 || info.Source != livekit.TrackSource_CAMERA {
		t.Errorf("track %v: want a simulcast camera with three layers", info)
	}
	for _, want := range []struct {
		quality livekit.VideoQuality
		layer   int32
	}{{livekit.VideoQuality_LOW, 0}, {livekit.VideoQuality_HIGH, 2}, {livekit.VideoQuality_MEDIUM, 1}} {
		mustSend(t, bob, &livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{
			TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{info.Sid}, Quality: want.quality},
		}})
		eventually(t, 10*time.Second, "bob receives layer "+want.quality.String(), func() bool { return lastLayer.Load() == want.layer })
	}
}

// drainRTCP reads a sender's RTCP until it closes (all its layers).
func drainRTCP(s *webrtc.RTPSender) {
	var wg sync.WaitGroup
	for _, enc := range s.GetParameters().Encodings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := s.ReadSimulcastRTCP(enc.RID); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestWHEPPlayback plays a LiveKit-protocol publisher over WHEP: the
// viewer receives its audio and video (the audio published just after the
// viewer's offer), is hidden from the room, and its DELETE ends the
// session.
func TestWHEPPlayback(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whep-play"
	alice := n.join(t, room, "alice", client.Options{})
	video, audio := newVideoTrack(t, "cam"), newAudioTrack(t, "mic")
	ctx := ctxTimeout(t, 10*time.Second)
	if _, _, err := alice.Publish(ctx, video, &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA}); err != nil {
		t.Fatal(err)
	}
	startSource(t, video, true)
	startSource(t, audio, false)
	eventually(t, 10*time.Second, "alice publishes her camera", func() bool {
		return len(n.rooms.Room(room).Participant("alice").Info().Tracks) == 1
	})

	fan := token(t, room, "fan", func(g *auth.VideoGrant) { g.SetCanSubscribe(true) })
	noVP8 := strings.ReplaceAll(testOffer(t, n, webrtc.RTPTransceiverDirectionRecvonly, webrtc.RTPCodecTypeVideo), "VP8/90000", "XVP8/90000")
	status, body, _ := doHTTP(t, http.MethodPost, n.http.URL+"/whep?participant=alice", fan, "application/sdp", noVP8, nil)
	if status != http.StatusBadRequest || !strings.Contains(body, `"alice" publishes VP8, which the offer's video section does not take`) {
		t.Errorf("WHEP offer without VP8: %d %q, want 400 naming the codec", status, body)
	}
	// The microphone comes 300 ms after the viewer's offer: the answer
	// waits for it (WHEP cannot add it later).
	published := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _, err := alice.Publish(ctx, audio, &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE})
		published <- err
	}()
	viewer, kinds := startWHEPViewer(t, n, fan, "alice")
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"audio", "video"} {
		eventually(t, 10*time.Second, "the viewer receives "+k, func() bool { return kinds.count(k) > 50 })
	}
	for _, p := range n.rooms.Room(room).Participants() {
		if p.Identity() != "alice" && !p.Info().Permission.Hidden {
			t.Errorf("viewer %s is visible in the room", p.Identity())
		}
	}
	if status, _, _ := viewer.request(http.MethodDelete, "", "", nil); status != http.StatusOK {
		t.Errorf("DELETE: %d", status)
	}
	eventually(t, 5*time.Second, "the viewer leaves", func() bool { return len(n.rooms.Room(room).Participants()) == 1 })
}

// packetCounter counts the packets of received tracks by a key of each.
type packetCounter struct {
	key    func(*webrtc.TrackRemote) string
	mu     sync.Mutex
	counts map[string]*atomic.Int64
}

func newPacketCounter(key func(*webrtc.TrackRemote) string) *packetCounter {
	return &packetCounter{key: key, counts: map[string]*atomic.Int64{}}
}

// onTrack reads a track until it ends, counting its packets.
func (c *packetCounter) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	cnt := &atomic.Int64{}
	c.mu.Lock()
	c.counts[c.key(tr)] = cnt
	c.mu.Unlock()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			cnt.Add(1)
		}
	}()
}

// count is how many packets the tracks of key brought.
func (c *packetCounter) count(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.counts[key]; n != nil {
		return n.Load()
	}
	return 0
}

// startWHEPViewer plays a participant over WHEP with a pion peer that
// receives one audio and one video track, counting packets by kind.
func startWHEPViewer(t *testing.T, n *node, token, participant string) (*httpPeer, *packetCounter) {
	t.Helper()
	viewer := newHTTPPeer(t, n, token)
	kinds := newPacketCounter(func(tr *webrtc.TrackRemote) string { return tr.Kind().String() })
	viewer.pc.OnTrack(kinds.onTrack)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := viewer.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	if status, body := viewer.negotiate("/whep?participant=" + participant); status != http.StatusCreated {
		t.Fatalf("POST /whep: %d %s", status, body)
	}
	return viewer, kinds
}

// TestWHEPEndsWithBroadcaster: when the WHIP broadcaster a viewer plays
// leaves, the viewer's session ends (it cannot be given the tracks of a
// new session), so its client can see that and play afresh.
func TestWHEPEndsWithBroadcaster(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "whep-ends"
	pub := newHTTPPeer(t, n, whipToken(t, room, "studio"))
	video := newVideoTrack(t, "v")
	if _, err := pub.pc.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if status, body := pub.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, body)
	}
	startSource(t, video, true)
	r := n.rooms.Room(room)
	eventually(t, 10*time.Second, "studio publishes", func() bool {
		p := r.Participant("studio")
		return p != nil && len(p.Info().Tracks) == 1
	})
	viewer, kinds := startWHEPViewer(t, n, token(t, room, "fan", nil), "studio")
	eventually(t, 10*time.Second, "the viewer receives video", func() bool { return kinds.count("video") > 20 })
	if status, _, _ := pub.request(http.MethodDelete, "", "", nil); status != http.StatusOK {
		t.Fatalf("DELETE the broadcast: %d", status)
	}
	eventually(t, 5*time.Second, "the viewer's session ends", func() bool {
		status, _, _ := viewer.request(http.MethodPatch, "a=mid:0\r\n", "application/trickle-ice-sdpfrag", nil)
		return status == http.StatusNotFound
	})
	eventually(t, 5*time.Second, "the room empties", func() bool { return len(r.Participants()) == 0 })
}

// TestWHIPCodecs publishes VP9, H.264 High and AV1 over WHIP (VP8 and
// H.264 Constrained Baseline have tests of their own): a subscriber
// receives each in its codec.
func TestWHIPCodecs(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	for _, c := range []struct {
		capability webrtc.RTPCodecCapability
		key, inter byte // first payload byte of a keyframe and of another frame
	}{
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}, 0x0c, 0x4c}, // B, E (+ P)
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, // High, as OBS sends by default
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"}, 0x65, 0x41}, // IDR, non-IDR slice
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}, 0x18, 0x10}, // W=1 (+ N)
	} {
		t.Run(c.capability.MimeType, func(t *testing.T) {
			room := "whip-" + strings.ReplaceAll(c.capability.MimeType, "/", "-")
			if strings.Contains(c.capability.SDPFmtpLine, "profile-level-id=64") {
				room += "-high"
			}
			bob := n.join(t, room, "bob", client.Options{})
			received := newPacketCounter(func(tr *webrtc.TrackRemote) string { return strings.ToLower(tr.Codec().MimeType) })
			bob.OnTrack(received.onTrack)
			track, err := webrtc.NewTrackLocalStaticRTP(c.capability, "v", "s")
			if err != nil {
				t.Fatal(err)
			}
			pub := newHTTPPeer(t, n, whipToken(t, room, "encoder"))
			if _, err := pub.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
			if status, body := pub.negotiate("/whip"); status != http.StatusCreated {
				t.Fatalf("POST /whip: %d %s", status, body)
			}
			seq, ts := uint16(1), uint32(0)
			everyFrame(t, func(frame int) error {
				payload := make([]byte, 300)
				payload[0] = c.inter
				if frame%10 == 0 {
					payload[0] = c.key
				}
				seq++
				ts += 1800
				return track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}, Payload: payload})
			})
			mime := strings.ToLower(c.capability.MimeType)
			eventually(t, 10*time.Second, "bob receives "+mime, func() bool { return received.count(mime) > 30 })
		})
	}
}
