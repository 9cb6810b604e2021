package signaling_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// TestREDPublisherToOpusSubscriber: a publisher sends RED audio (as
// browsers do); a subscriber without RED support gets plain Opus carrying
// RED's primary encoding.
func TestREDPublisherToOpusSubscriber(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	red := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: "audio/red", ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111",
	}, PayloadType: 63}
	pub := n.join(t, "red", "alice", client.Options{Configure: func(me *webrtc.MediaEngine, _ *interceptor.Registry) error {
		return me.RegisterCodec(red, webrtc.RTPCodecTypeAudio)
	}})
	sub := n.join(t, "red", "bob", client.Options{})
	var mu sync.Mutex
	var got [][]byte
	var mime string
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mu.Lock()
		mime = tr.Codec().MimeType
		mu.Unlock()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, p.Payload)
			mu.Unlock()
		}
	})
	track, err := webrtc.NewTrackLocalStaticRTP(red.RTPCodecCapability, "mic", "s")
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := pub.Publish(ctxTimeout(t, 10*time.Second), track, &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		seq, ts := uint16(1), uint32(0)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			// One redundant block (the previous frame), then the primary.
			payload := []byte{0x80 | 111, 0x03, 0xc0, 3, 111, 0xee, 0xee, 0xee, 0xab, byte(i)}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
			seq++
			ts += 960
		}
	}()
	defer func() { close(stop); <-done }()
	eventually(t, 5*time.Second, "plain Opus packets at bob", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 20
	})
	if tracks := n.rooms.Room("red").Participant("alice").Info().Tracks; len(tracks) != 1 || !strings.EqualFold(tracks[0].MimeType, "audio/red") {
		t.Fatalf("published track %s is not RED: %v", info.Sid, tracks)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.EqualFold(mime, webrtc.MimeTypeOpus) {
		t.Fatalf("bob negotiated %s, want Opus", mime)
	}
	for _, p := range got {
		if len(p) != 2 || p[0] != 0xab {
			t.Fatalf("bob got %x, want the primary encoding only", p)
		}
	}
}
