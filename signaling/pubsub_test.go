package signaling_test

import (
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

func TestPublishSubscribe(t *testing.T) {
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "room1", "alice", client.Options{})
	sub := n.join(t, "room1", "bob", client.Options{})
	if !sub.Join.SubscriberPrimary || sub.Join.ServerVersion == "" || sub.Join.Participant.Permission == nil {
		t.Fatalf("join response incomplete: %v", sub.Join)
	}
	if len(sub.Join.OtherParticipants) != 1 || sub.Join.OtherParticipants[0].Identity != "alice" {
		t.Fatalf("bob should see alice in join: %v", sub.Join.OtherParticipants)
	}
	got := make(chan *webrtc.TrackRemote, 4)
	rc := map[string]*readCounter{}
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { got <- tr })

	video, audio := newVideoTrack(t, "cam"), newAudioTrack(t, "mic")
	ctx := ctxTimeout(t, 10*time.Second)
	vinfo, _, err := pub.Publish(ctx, video, &livekit.AddTrackRequest{Type: livekit.TrackType_VIDEO, Name: "cam", Source: livekit.TrackSource_CAMERA, Width: 640, Height: 360})
	if err != nil {
		t.Fatal(err)
	}
	ainfo, _, err := pub.Publish(ctx, audio, &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO, Name: "mic", Source: livekit.TrackSource_MICROPHONE})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vinfo.Sid, "TR_") || !strings.HasPrefix(ainfo.Sid, "TR_") {
		t.Fatalf("track sids: %s %s", vinfo.Sid, ainfo.Sid)
	}
	startSource(t, video, true)
	startSource(t, audio, false)
	for i := 0; i < 2; i++ {
		select {
		case tr := <-got:
			if tr.ID() != vinfo.Sid && tr.ID() != ainfo.Sid {
				t.Fatalf("unexpected track id %q", tr.ID())
			}
			if !strings.HasPrefix(tr.StreamID(), pub.Join.Participant.Sid+"|") {
				t.Fatalf("stream id %q should be PA|TR", tr.StreamID())
			}
			c := &readCounter{}
			rc[tr.ID()] = c
			go countPackets(tr, c)
		case <-ctx.Done():
			t.Fatal("subscriber did not get both tracks")
		}
	}
	eventually(t, 5*time.Second, "video and audio packets", func() bool {
		return rc[vinfo.Sid].packets.Load() > 50 && rc[ainfo.Sid].packets.Load() > 50
	})
}
