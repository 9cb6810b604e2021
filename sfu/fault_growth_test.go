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
