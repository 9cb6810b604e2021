package sfu

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/livekit/protocol/livekit"
)

// TestFault10ZeroRoomTimeouts is issue 12, fault 10 (a): timeouts of zero
// (in the config, or a CreateRoom request) used to make rooms that never
// close. Zero means the default, so an empty room always closes.
func TestFault10ZeroRoomTimeouts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := NewManager(ManagerParams{Logger: discardLogger})
	for _, opts := range []RoomOptions{{}, {EmptyTimeout: 0, DepartureTimeout: 0}, {EmptyTimeout: 7 * time.Second}} {
		r, created, err := m.GetOrCreateRoom("zero", opts)
		if err != nil || !created {
			t.Fatalf("GetOrCreateRoom: %v, created %v", err, created)
		}
		info := r.Info()
		wantEmpty := uint32(DefaultEmptyTimeout / time.Second)
		if opts.EmptyTimeout > 0 {
			wantEmpty = uint32(opts.EmptyTimeout / time.Second)
		}
		if info.EmptyTimeout != wantEmpty || info.DepartureTimeout != uint32(DefaultDepartureTimeout/time.Second) {
			t.Errorf("options %+v: empty timeout %d s, departure %d s; want %d and %d", opts,
				info.EmptyTimeout, info.DepartureTimeout, wantEmpty, DefaultDepartureTimeout/time.Second)
		}
		r.mu.Lock()
		armed := r.idleTimer != nil
		r.mu.Unlock()
		if !armed {
			t.Errorf("options %+v: an empty room with no idle timer never closes", opts)
		}
		r.Close(livekit.DisconnectReason_ROOM_CLOSED)
		<-r.Done()
	}
}

// nopSignal is a SignalSink that drops every message.
type nopSignal struct{}

func (nopSignal) SendSignal(*livekit.SignalResponse) {}
func (nopSignal) CloseSignal()                       {}

// TestFault10TrackChoicesForgotten is issue 12, fault 10 (b): a
// subscriber's choices (explicit unsubscribe, trackSetting) for a track
// it does not receive used to stay after the track was unpublished, so
// the maps grew with every track ever published in the room. They go
// with the track now, and ids of tracks that never existed are never
// recorded.
func TestFault10TrackChoicesForgotten(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tr, err := NewTransport(TransportParams{BindIP: "127.0.0.1", NodeIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	m := NewManager(ManagerParams{Transport: tr, ServerInfo: &livekit.ServerInfo{}, Logger: discardLogger})
	room, _, err := m.GetOrCreateRoom("choices", RoomOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		room.Close(livekit.DisconnectReason_ROOM_CLOSED)
		<-room.Done()
	}()
	join := func(identity string) *Participant {
		p, _, err := room.Join(ParticipantParams{Identity: livekit.ParticipantIdentity(identity), Signal: nopSignal{}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	alice, bob := join("alice"), join("bob")
	for i := range 20 {
		// alice publishes a track; bob, not subscribed, unsubscribes
		// from it explicitly and disables it; then it is unpublished.
		up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
		up.p.ID = livekit.TrackID(NewID(TrackPrefix))
		id := up.ID()
		info := &livekit.TrackInfo{Sid: string(id), Type: livekit.TrackType_VIDEO, MimeType: fixtureVP8.MimeType}
		alice.pub.mu.Lock()
		alice.pub.tracks[id] = newPublishedTrack(info, up, alice.pub.sendQualities)
		alice.pub.order = append(alice.pub.order, id)
		alice.pub.mu.Unlock()
		if err := bob.UpdateSubscriptions([]livekit.TrackID{id}, false); err != nil {
			t.Fatal(err)
		}
		bob.UpdateTrackSettings(&livekit.UpdateTrackSettings{TrackSids: []string{string(id)}, Disabled: true})
		bob.UpdateTrackSettings(&livekit.UpdateTrackSettings{TrackSids: []string{"TR_never" + string(rune('a'+i))}, Quality: livekit.VideoQuality_LOW})
		if n := bob.sub.trackChoices(); n != 1 {
			t.Fatalf("track %d published: choices kept for %d tracks, want 1", i, n)
		}
		alice.pub.unpublish(id)
	}
	if n := bob.sub.trackChoices(); n != 0 {
		t.Errorf("20 tracks published and unpublished: choices kept for %d tracks, want 0", n)
	}
	// Past the cap, a choice applies but is not remembered.
	bob.sub.mu.Lock()
	for i := range maxTrackChoices {
		bob.sub.explicit[livekit.TrackID(NewID(TrackPrefix))] = i%2 == 0
	}
	bob.sub.mu.Unlock()
	up, _, _ := newFixtureUpTrack(fixtureVP8, 0)
	alice.pub.mu.Lock()
	alice.pub.tracks[up.ID()] = newPublishedTrack(&livekit.TrackInfo{Sid: string(up.ID())}, up, alice.pub.sendQualities)
	alice.pub.mu.Unlock()
	if err := bob.UpdateSubscriptions([]livekit.TrackID{up.ID()}, false); err != nil {
		t.Fatal(err)
	}
	if n := bob.sub.trackChoices(); n != maxTrackChoices {
		t.Errorf("choices kept for %d tracks, want the cap %d", n, maxTrackChoices)
	}
}

// trackChoices is how many tracks the participant's choices are kept for.
func (s *subscriber) trackChoices() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.explicit), len(s.disabled), len(s.maxLayer))
}
