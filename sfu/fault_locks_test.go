package sfu

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// unsubscribingSink behaves as a subscriber's DownTrack does when its track
// ends: TrackClosed leads to the sink being removed from the track.
type unsubscribingSink struct {
	id     string
	up     *UpTrack
	closed atomic.Int32
}

func (s *unsubscribingSink) SinkID() string   { return s.id }
func (s *unsubscribingSink) WriteRTP(*Packet) {}
func (s *unsubscribingSink) TrackClosed() {
	s.closed.Add(1)
	s.up.RemoveSink(s.id)
}

// Fault 1, in isolation: a sink added to a track that has ended is told at
// once, and may remove itself from the track in that callback.
func TestFault1AddSinkOnClosedTrack(t *testing.T) {
	defer goleak.VerifyNone(t)
	up := NewUpTrack(UpTrackParams{
		ID: "TR_ended", Kind: webrtc.RTPCodecTypeVideo, Codec: fixtureVP8,
		Reader: &sliceReader{err: io.EOF}, Logger: discardLogger,
	})
	runUpTrack(t, up)
	s := &unsubscribingSink{id: "PA_late", up: up}
	within(t, "AddSink on an ended track whose sink unsubscribes in TrackClosed", 5*time.Second, func() { up.AddSink(s) })
	if n := s.closed.Load(); n != 1 {
		t.Fatalf("TrackClosed ran %d times, want 1", n)
	}
	if n := up.SinkCount(); n != 0 {
		t.Fatalf("ended track has %d sinks, want 0", n)
	}
}

// Fault 1 through the room: a participant starting (subscribing to what is
// published) while a track has ended but is not yet unpublished. Before the
// fix its Start hung in AddSink, so its client never got going.
func TestFault1SubscribeRacesUnpublish(t *testing.T) {
	r := newTestRoom(t)
	pubP, _ := r.join(t, "publisher")
	pubP.Start()
	early, _ := r.join(t, "early")
	early.Start()
	reader := newGateReader()
	track := publishTest(pubP, webrtc.RTPCodecTypeVideo, reader, nil)
	if early.DownTrack(track.up.ID()) == nil {
		t.Fatal("early subscriber did not get the track")
	}
	gate := newGateSink() // holds the track between "ended" and "unpublished"
	track.up.AddSink(gate)
	late, _ := r.join(t, "late")
	close(reader.pkts)
	<-gate.entered
	within(t, "Start of a participant subscribing to an ending track", 5*time.Second, late.Start)
	close(gate.release)
	deadline := time.Now().Add(5 * time.Second)
	for pubP.pub.track(track.up.ID()) != nil || len(late.SubscribedTracks()) != 0 || len(early.SubscribedTracks()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the track ended: published %v, late receives %v, early receives %v",
				pubP.pub.track(track.up.ID()) != nil, late.SubscribedTracks(), early.SubscribedTracks())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Fault 1 as a race: tracks end while participants join and subscribe to
// them, many times over.
func TestFault1SubscribeVsUnpublishLoop(t *testing.T) {
	r := newTestRoom(t)
	pubP, _ := r.join(t, "publisher")
	pubP.Start()
	for i := range 20 {
		reader := newGateReader()
		track := publishTest(pubP, webrtc.RTPCodecTypeVideo, reader, nil)
		subs := make([]*Participant, 3)
		for j := range subs {
			subs[j], _ = r.join(t, "sub"+string(rune('a'+j)))
		}
		var wg sync.WaitGroup
		for _, s := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Start()
			}()
		}
		if i%2 == 0 {
			time.Sleep(time.Duration(i) * 100 * time.Microsecond)
		}
		close(reader.pkts)
		done := make(chan struct{})
		go func() { wg.Wait(); <-track.up.Done(); close(done) }()
		watchdog(t, "participants starting while a track ends", 5*time.Second, done)
		for _, s := range subs {
			s.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
		}
	}
}

// Fault 2: dynacast updates (the track's wanted layers going up and down)
// racing the track's unpublish. Before the fix dynacast held its mutex
// while sending (which takes the publisher's) and unpublish held the
// publisher's while closing dynacast: the two deadlocked.
func TestFault2DynacastVsUnpublish(t *testing.T) {
	old := dynacastDownDelay
	dynacastDownDelay = time.Microsecond // settle runs all the time
	t.Cleanup(func() { dynacastDownDelay = old })
	r := newTestRoom(t)
	pubP, sig := r.join(t, "publisher")
	pubP.Start()
	stopAt := time.Now().Add(2 * time.Second)
	for i := 0; i < 400 && time.Now().Before(stopAt); i++ {
		reader := newGateReader()
		info := &livekit.TrackInfo{Type: livekit.TrackType_VIDEO, Simulcast: true, Layers: []*livekit.VideoLayer{
			{Quality: livekit.VideoQuality_LOW}, {Quality: livekit.VideoQuality_MEDIUM}, {Quality: livekit.VideoQuality_HIGH},
		}}
		track := publishTest(pubP, webrtc.RTPCodecTypeVideo, reader, info)
		stop := make(chan struct{})
		hammered := make(chan struct{})
		go func() {
			defer close(hammered)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				track.wantLayer("PA_x", int8(n%2*2)) // 0, 2, 0, 2: down (timer) and up (at once)
			}
		}()
		time.Sleep(time.Duration(i%5) * 50 * time.Microsecond)
		close(reader.pkts)
		done := make(chan struct{})
		go func() {
			for pubP.pub.track(track.up.ID()) != nil {
				time.Sleep(50 * time.Microsecond)
			}
			close(stop)
			<-hammered
			close(done)
		}()
		watchdog(t, "unpublish while dynacast updates run", 5*time.Second, done)
	}
	if sig.n("quality") == 0 {
		t.Fatal("no quality update was sent: the test did not exercise dynacast")
	}
}

// Fault 2, the room's side: Room.Info must not hold the room's mutex while
// it asks a participant (whose publisher may be busy), or the whole room
// and ListRooms wait with it.
func TestFault2RoomInfoDoesNotHoldRoomLock(t *testing.T) {
	r := newTestRoom(t)
	a, _ := r.join(t, "a")
	a.Start()
	a.pub.mu.Lock() // a publisher busy (or wedged)
	unlock := sync.OnceFunc(a.pub.mu.Unlock)
	defer unlock()
	infoDone := make(chan *livekit.Room, 1)
	go func() { infoDone <- r.Info() }()
	time.Sleep(50 * time.Millisecond) // Info is running
	within(t, "Room.Participants while Room.Info waits for a publisher", 2*time.Second, func() { r.Participants() })
	unlock()
	select {
	case info := <-infoDone:
		if info.NumParticipants != 1 {
			t.Fatalf("Info: %d participants, want 1", info.NumParticipants)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Room.Info did not return")
	}
}

// countingKeyframeSink asks for a keyframe on every packet, as a DownTrack
// waiting for a layer's keyframe does.
type countingKeyframeSink struct {
	up *UpTrack
	n  atomic.Int32
}

func (s *countingKeyframeSink) SinkID() string { return "PA_kf" }
func (s *countingKeyframeSink) WriteRTP(*Packet) {
	s.n.Add(1)
	s.up.RequestKeyframe(0)
}
func (s *countingKeyframeSink) TrackClosed() {}

// Fault 9b: a keyframe request whose RTCP write blocks (a publisher's
// congested connection) must not stop the track's forwarding: before the
// fix the PLI was written on the reader goroutine.
func TestFault9KeyframeRequestDoesNotBlockForwarding(t *testing.T) {
	defer goleak.VerifyNone(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var plis atomic.Int32
	reader := newGateReader()
	up := NewUpTrack(UpTrackParams{
		ID: "TR_kf", Kind: webrtc.RTPCodecTypeVideo, Codec: fixtureVP8, SSRC: 9, Reader: reader, Logger: discardLogger,
		WriteRTCP: func([]rtcp.Packet) error {
			plis.Add(1)
			once.Do(func() { close(entered) })
			<-release
			return nil
		},
	})
	sink := &countingKeyframeSink{up: up}
	up.AddSink(sink)
	go up.Run()
	const total = 50
	for i := range total {
		reader.pkts <- pubPacket{seq: uint16(i), ts: uint32(i) * 3000, marker: true, payload: mediaPayload(webrtc.MimeTypeVP8, i == 0, 200, byte(i)), level: -1}.marshal(96)
	}
	deadline := time.Now().Add(3 * time.Second)
	for sink.n.Load() < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := sink.n.Load()
	close(release)
	close(reader.pkts)
	<-up.Done()
	select {
	case <-entered:
	default:
		t.Fatal("no keyframe request reached WriteRTCP")
	}
	if got < total {
		t.Fatalf("forwarded %d of %d packets while a keyframe request was blocked in WriteRTCP", got, total)
	}
	if n := plis.Load(); n != 1 {
		t.Fatalf("%d PLIs written within the rate limit, want 1", n)
	}
}

// holdingHook returns a hook that blocks until release is closed, and a
// channel closed when it is first entered.
func holdingHook() (hook func(), entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return func() {
		once.Do(func() { close(entered) })
		<-release
	}, entered, release
}

// Fault 9c: while a participant's subscriber offer is being made (pion's
// CreateOffer held by a test hook), the room's calls into it, asking for
// a negotiation and subscribing to a newly published track, return at
// once. Before the fix negMu was held across the pion calls.
func TestFault9NegotiationDoesNotBlockRoom(t *testing.T) {
	r := newTestRoom(t)
	pubP, _ := r.join(t, "publisher")
	pubP.Start()
	viewer, sig := r.join(t, "viewer")
	hook, entered, release := holdingHook()
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	viewer.sub.beforeOffer = hook
	viewer.Start() // its first offer is made negotiationDelay later
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first offer was never made")
	}
	within(t, "requestNegotiation during an offer", 2*time.Second, viewer.sub.requestNegotiation)
	reader := newGateReader()
	var track *publishedTrack
	within(t, "publishing to a room whose subscriber is mid-offer", 2*time.Second, func() {
		track = publishTest(pubP, webrtc.RTPCodecTypeVideo, reader, nil)
	})
	if viewer.DownTrack(track.up.ID()) == nil {
		t.Fatal("the viewer did not subscribe to the new track")
	}
	releaseOnce()
	deadline := time.Now().Add(5 * time.Second)
	for sig.n("offer") < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := sig.n("offer"); n != 1 {
		t.Fatalf("%d offers sent, want 1 (the next waits for the answer)", n)
	}
	close(reader.pkts)
	<-track.up.Done()
}

// subscribeHeldInAddTransceiver publishes a video track to which a viewer
// subscribes, and holds that subscribe inside AddTransceiverFromTrack until
// release is called; it returns once the subscribe is held there.
func subscribeHeldInAddTransceiver(t *testing.T) (pubP, viewer *Participant, reader *gateReader, published chan *publishedTrack, release func()) {
	r := newTestRoom(t)
	pubP, _ = r.join(t, "publisher")
	pubP.Start()
	viewer, _ = r.join(t, "viewer")
	viewer.Start()
	hook, entered, held := holdingHook()
	release = sync.OnceFunc(func() { close(held) })
	add := viewer.sub.addTransceiver
	viewer.sub.addTransceiver = func(tl webrtc.TrackLocal, init ...webrtc.RTPTransceiverInit) (*webrtc.RTPTransceiver, error) {
		hook()
		return add(tl, init...)
	}
	reader = newGateReader()
	published = make(chan *publishedTrack, 1)
	go func() { published <- publishTest(pubP, webrtc.RTPCodecTypeVideo, reader, nil) }()
	<-entered
	return pubP, viewer, reader, published, release
}

// Fault 9c: a subscribe whose transceiver is being added (pion may wait
// for a negotiation there) holds no lock the room needs: the
// participant's subscription list and mute updates answer meanwhile, and
// an unsubscribe meanwhile wins.
func TestFault9SubscribeDoesNotHoldLockAcrossPion(t *testing.T) {
	pubP, viewer, reader, published, releaseOnce := subscribeHeldInAddTransceiver(t)
	defer releaseOnce()
	within(t, "SubscribedTracks during AddTransceiverFromTrack", 2*time.Second, func() { viewer.SubscribedTracks() })
	within(t, "setMuted during AddTransceiverFromTrack", 2*time.Second, func() { viewer.sub.setMuted("TR_other", true) })
	var id livekit.TrackID
	within(t, "finding the track being subscribed", 2*time.Second, func() {
		for _, tr := range pubP.pub.publishedTracks() {
			id = tr.up.ID()
		}
	})
	within(t, "unsubscribe during AddTransceiverFromTrack", 2*time.Second, func() { viewer.sub.unsubscribe(id) })
	releaseOnce()
	track := <-published
	if dt := viewer.DownTrack(track.up.ID()); dt != nil {
		t.Fatal("a subscribe cancelled while its transceiver was added went ahead")
	}
	if n := track.up.SinkCount(); n != 0 {
		t.Fatalf("track has %d sinks after the cancelled subscribe, want 0", n)
	}
	close(reader.pkts)
	<-track.up.Done()
}

// fakeLayer is a simulcast layer as pion delivers it: a reader with an
// SSRC and a RID.
type fakeLayer struct {
	*gateReader
	ssrc webrtc.SSRC
	rid  string
}

func (l *fakeLayer) SSRC() webrtc.SSRC { return l.ssrc }
func (l *fakeLayer) RID() string       { return l.rid }

// Fault 3: a simulcast layer whose track is created late (after the five
// seconds the old code waited) joins it. Before the fix addLayer read the
// track unsynchronized after its timeout (the race detector reports it)
// and dropped the layer silently.
func TestFault3LateLayerJoinsTrack(t *testing.T) {
	r := newTestRoom(t)
	p, _ := r.join(t, "publisher")
	p.Start()
	lt, first := p.pub.claimLayered("0")
	if !first {
		t.Fatal("claimLayered: not first")
	}
	second := &fakeLayer{gateReader: newGateReader(), ssrc: 2, rid: "h"}
	added := make(chan struct{})
	go func() {
		p.pub.addLayer(lt, second, 1)
		close(added)
	}()
	time.Sleep(5200 * time.Millisecond) // the first layer's track comes late
	reader := newGateReader()
	track := publishTest(p, webrtc.RTPCodecTypeVideo, reader, nil)
	lt.up, lt.track = track.up, track
	close(lt.ready)
	watchdog(t, "addLayer after its track was created", 5*time.Second, added)
	if track.up.layers[1].Load() == nil {
		t.Fatal("the late layer was dropped: not read by the track")
	}
	close(second.pkts)
	close(reader.pkts)
	<-track.up.Done()
}

// Fault 3: a layer waiting for a track that never comes stops waiting
// when the connection closes, and its packets are still read (drained)
// until it ends.
func TestFault3LayerWaitEndsWithConnection(t *testing.T) {
	r := newTestRoom(t)
	p, _ := r.join(t, "publisher")
	p.Start()
	lt, _ := p.pub.claimLayered("0")
	layer := &fakeLayer{gateReader: &gateReader{pkts: make(chan []byte)}, ssrc: 2, rid: "f"} // unbuffered: a send is a read
	added := make(chan struct{})
	go func() {
		p.pub.addLayer(lt, layer, 2)
		close(added)
	}()
	time.Sleep(20 * time.Millisecond)
	p.Close(livekit.DisconnectReason_CLIENT_INITIATED, false)
	watchdog(t, "addLayer after the connection closed", 2*time.Second, added)
	within(t, "a packet of the drained layer to be read", 2*time.Second, func() { layer.pkts <- []byte{0x80} })
	close(layer.pkts)
}

// A subscribe of a track whose subscribe is already under way returns once
// that one has finished, with the track there (a WHEP answer is made right
// after), and without holding a lock while it waits.
func TestFault9SecondSubscribeWaitsForFirst(t *testing.T) {
	pubP, viewer, reader, published, releaseOnce := subscribeHeldInAddTransceiver(t)
	defer releaseOnce()
	var track *publishedTrack
	within(t, "finding the track being subscribed", 2*time.Second, func() { track = pubP.pub.publishedTracks()[0] })
	second := make(chan error, 1)
	go func() { second <- viewer.sub.subscribe(pubP, track) }()
	select {
	case err := <-second:
		t.Fatalf("second subscribe returned (%v) while the first was still adding its transceiver", err)
	case <-time.After(50 * time.Millisecond):
	}
	within(t, "SubscribedTracks while two subscribes are under way", 2*time.Second, func() { viewer.SubscribedTracks() })
	releaseOnce()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("second subscribe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second subscribe did not return after the first finished")
	}
	if viewer.DownTrack(track.up.ID()) == nil {
		t.Fatal("the track is not subscribed after both subscribes returned")
	}
	<-published
	close(reader.pkts)
	<-track.up.Done()
}
