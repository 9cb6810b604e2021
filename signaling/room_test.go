package signaling_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// publishVideo publishes a synthetic VP8 track from c and starts sending.
func publishVideo(t *testing.T, c *client.Client, name string) (*livekit.TrackInfo, *webrtc.RTPSender) {
	t.Helper()
	tr := newVideoTrack(t, name)
	info, sender, err := c.Publish(ctxTimeout(t, 10*time.Second), tr, &livekit.AddTrackRequest{
		Type: livekit.TrackType_VIDEO, Name: name, Source: livekit.TrackSource_CAMERA,
	})
	if err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	startSource(t, tr, true)
	return info, sender
}

// trackCounter counts packets per received track id.
type trackCounter struct {
	mu     sync.Mutex
	counts map[string]*readCounter
}

func watchTracks(c *client.Client) *trackCounter {
	tc := &trackCounter{counts: map[string]*readCounter{}}
	c.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		rc := &readCounter{}
		tc.mu.Lock()
		tc.counts[tr.ID()] = rc
		tc.mu.Unlock()
		go countPackets(tr, rc)
	})
	return tc
}

func (tc *trackCounter) packets(id string) int64 {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if rc := tc.counts[id]; rc != nil {
		return rc.packets.Load()
	}
	return 0
}

func participantUpdate(identity string, pred func(*livekit.ParticipantInfo) bool) func(*livekit.SignalResponse) bool {
	return func(m *livekit.SignalResponse) bool {
		for _, p := range m.GetUpdate().GetParticipants() {
			if p.Identity == identity && pred(p) {
				return true
			}
		}
		return false
	}
}

func TestSubscribeUnsubscribeManual(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "manual", "alice", client.Options{})
	sub := n.join(t, "manual", "bob", client.Options{NoAutoSubscribe: true})
	tc := watchTracks(sub)
	info, _ := publishVideo(t, pub, "cam")
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := sub.WaitFor(ctx, participantUpdate("alice", func(p *livekit.ParticipantInfo) bool { return len(p.Tracks) == 1 })); err != nil {
		t.Fatalf("bob did not learn of alice's track: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if tc.packets(info.Sid) != 0 {
		t.Fatal("bob receives media without subscribing")
	}
	subscribe := func(on bool) {
		err := sub.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{
			Subscription: &livekit.UpdateSubscription{TrackSids: []string{info.Sid}, Subscribe: on},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	subscribe(true)
	eventually(t, 5*time.Second, "media after subscribe", func() bool { return tc.packets(info.Sid) > 20 })
	subscribe(false)
	bob := n.rooms.Room("manual").Participant("bob")
	eventually(t, 3*time.Second, "server-side unsubscribe", func() bool { return len(bob.SubscribedTracks()) == 0 })
	time.Sleep(200 * time.Millisecond)
	before := tc.packets(info.Sid)
	time.Sleep(500 * time.Millisecond)
	if after := tc.packets(info.Sid); after != before {
		t.Fatalf("packets still arriving after unsubscribe: %d -> %d", before, after)
	}
}

func TestMuteStopsMediaAndNotifies(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "mute", "alice", client.Options{})
	sub := n.join(t, "mute", "bob", client.Options{})
	tc := watchTracks(sub)
	info, _ := publishVideo(t, pub, "cam")
	eventually(t, 5*time.Second, "media", func() bool { return tc.packets(info.Sid) > 20 })
	mark := sub.Mark()
	mute := func(m bool) {
		if err := pub.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: info.Sid, Muted: m}}}); err != nil {
			t.Fatal(err)
		}
	}
	mute(true)
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := sub.WaitAfter(ctx, mark, participantUpdate("alice", func(p *livekit.ParticipantInfo) bool {
		return len(p.Tracks) == 1 && p.Tracks[0].Muted
	}))
	if err != nil {
		t.Fatalf("bob not told of mute: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	before := tc.packets(info.Sid)
	time.Sleep(400 * time.Millisecond)
	if after := tc.packets(info.Sid); after != before {
		t.Fatalf("media flows while muted: %d -> %d", before, after)
	}
	mute(false)
	eventually(t, 3*time.Second, "media after unmute", func() bool { return tc.packets(info.Sid) > before+20 })
}

func TestLeaveRemovesParticipant(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "leave", "alice", client.Options{})
	sub := n.join(t, "leave", "bob", client.Options{})
	publishVideo(t, pub, "cam")
	pub.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := sub.WaitFor(ctx, participantUpdate("alice", func(p *livekit.ParticipantInfo) bool {
		return p.State == livekit.ParticipantInfo_DISCONNECTED
	}))
	if err != nil {
		t.Fatalf("bob not told alice left: %v", err)
	}
	eventually(t, 2*time.Second, "alice gone from room", func() bool {
		return n.rooms.Room("leave").Participant("alice") == nil
	})
}

func TestOnePublisherTenSubscribers(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "ten", "alice", client.Options{})
	counters := make([]*trackCounter, 10)
	for i := range counters {
		c := n.join(t, "ten", "sub"+string(rune('a'+i)), client.Options{})
		counters[i] = watchTracks(c)
	}
	info, _ := publishVideo(t, pub, "cam")
	eventually(t, 10*time.Second, "all ten subscribers receive media", func() bool {
		for _, tc := range counters {
			if tc.packets(info.Sid) < 30 {
				return false
			}
		}
		return true
	})
}

// dropVideo drops the VP8 packets a subscriber receives for which drop
// returns true, before its NACK generator and receiver reports see them.
type dropVideo struct {
	interceptor.NoOp
	drop func(h *rtp.Header) bool
}

func (d *dropVideo) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	if info.MimeType != webrtc.MimeTypeVP8 {
		return reader
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := reader.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			var h rtp.Header
			if _, err := h.Unmarshal(b[:n]); err != nil || !d.drop(&h) {
				return n, attr, nil
			}
		}
	})
}

type dropVideoFactory struct{ d *dropVideo }

func (f dropVideoFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.d, nil }

// dropOnce drops the first copy of the nth video packet a subscriber
// receives.
type dropOnce struct {
	nth     int
	mu      sync.Mutex
	seen    int
	dropped int // sequence number dropped, -1 before
}

func (d *dropOnce) drop(h *rtp.Header) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen++
	if d.seen != d.nth {
		return false
	}
	d.dropped = int(h.SequenceNumber)
	return true
}

func TestNACKAnsweredFromCache(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "nack", "alice", client.Options{})
	drop := &dropOnce{nth: 40, dropped: -1}
	sub := n.join(t, "nack", "bob", client.Options{Configure: func(_ *webrtc.MediaEngine, ir *interceptor.Registry) error {
		ir.Add(dropVideoFactory{&dropVideo{drop: drop.drop}})
		return nil
	}, Settings: func(se *webrtc.SettingEngine) {
		// The packet is dropped after SRTP saw it: its retransmission
		// would otherwise be discarded as a replay.
		se.DisableSRTPReplayProtection(true)
	}})
	var mu sync.Mutex
	var seqs []uint16
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			seqs = append(seqs, p.SequenceNumber)
			mu.Unlock()
		}
	})
	publishVideo(t, pub, "cam")
	eventually(t, 10*time.Second, "the dropped packet to be retransmitted", func() bool {
		drop.mu.Lock()
		dropped := drop.dropped
		drop.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		return dropped >= 0 && slices.Contains(seqs, uint16(dropped))
	})
}

func TestSubscriberPLIReachesPublisher(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	pub := n.join(t, "pli", "alice", client.Options{})
	sub := n.join(t, "pli", "bob", client.Options{})
	tc := watchTracks(sub)
	info, sender := publishVideo(t, pub, "cam")
	var mu sync.Mutex
	plis := 0
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					mu.Lock()
					plis++
					mu.Unlock()
				}
			}
		}
	}()
	eventually(t, 5*time.Second, "media", func() bool { return tc.packets(info.Sid) > 30 })
	time.Sleep(600 * time.Millisecond)
	mu.Lock()
	before := plis
	mu.Unlock()
	var ssrc webrtc.SSRC
	for _, tr := range sub.Tracks() {
		if tr.ID() == info.Sid {
			ssrc = tr.SSRC()
		}
	}
	if err := sub.Sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the PLI at the publisher", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return plis > before
	})
}

func TestVanishedParticipantRemovedAfterTimeout(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{participantTimeout: time.Second})
	pub := n.join(t, "vanish", "alice", client.Options{})
	sub := n.join(t, "vanish", "bob", client.Options{})
	publishVideo(t, pub, "cam")
	start := time.Now()
	pub.Drop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sub.WaitFor(ctx, participantUpdate("alice", func(p *livekit.ParticipantInfo) bool {
		return p.State == livekit.ParticipantInfo_DISCONNECTED
	}))
	if err != nil {
		t.Fatalf("vanished alice not removed: %v", err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("removed after %s, before the 1 s timeout", el)
	}
	if n.rooms.Room("vanish").Participant("alice") != nil {
		t.Fatal("alice still in room")
	}
}
