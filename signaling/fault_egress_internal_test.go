package signaling

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fanout-sfu/fanout/sfu"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// egressFixture is a signaling server whose egress list holds records
// made by hand (no media), and the HTTP mux serving it.
type egressFixture struct {
	s   *Server
	mux *http.ServeMux
}

func newEgressFixture(t *testing.T) *egressFixture {
	t.Helper()
	rooms := sfu.NewManager(sfu.ManagerParams{Logger: discardLog()})
	s := NewServer(ServerParams{Rooms: rooms, Keys: StaticKeys(map[string]string{"key": "secret-of-at-least-32-characters!"}), Logger: discardLog()})
	mux := http.NewServeMux()
	s.Register(mux)
	return &egressFixture{s: s, mux: mux}
}

// add records an egress that ended ago before now (0: still running).
func (f *egressFixture) add(id string, ago time.Duration) {
	info := &livekit.EgressInfo{EgressId: id, Status: livekit.EgressStatus_EGRESS_ACTIVE}
	if ago > 0 {
		info.Status, info.EndedAt = livekit.EgressStatus_EGRESS_COMPLETE, time.Now().Add(-ago).UnixNano()
	}
	f.s.egress.mu.Lock()
	f.s.egress.egresses[id] = &egressRecord{info: info, stop: make(chan struct{})}
	f.s.egress.mu.Unlock()
}

func (f *egressFixture) kept() int {
	f.s.egress.mu.Lock()
	defer f.s.egress.mu.Unlock()
	return len(f.s.egress.egresses)
}

// list calls ListEgress over HTTP, as a client with the roomRecord grant.
func (f *egressFixture) list(t *testing.T) []*livekit.EgressInfo {
	t.Helper()
	tok, err := auth.NewAccessToken("key", "secret-of-at-least-32-characters!").
		SetVideoGrant(&auth.VideoGrant{RoomRecord: true}).SetValidFor(time.Minute).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/twirp/livekit.Egress/ListEgress", bytes.NewReader([]byte("{}")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("ListEgress: %d %s", w.Code, w.Body)
	}
	var resp livekit.ListEgressResponse
	if err := protojson.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Items
}

// TestFault10EgressPrunedOnList is issue 12, fault 10 (c): finished
// egresses were forgotten only when a new egress started, so a node that
// starts none kept (and listed) them forever. ListEgress prunes too.
func TestFault10EgressPrunedOnList(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newEgressFixture(t)
	f.add("EG_old", 2*egressHistory)
	f.add("EG_recent", time.Minute)
	f.add("EG_running", 0)
	items := f.list(t)
	if len(items) != 2 {
		t.Errorf("ListEgress lists %d egresses, want the recent and the running one: %v", len(items), items)
	}
	if n := f.kept(); n != 2 {
		t.Errorf("%d egresses kept, want 2", n)
	}
}

// TestFault10EgressPrunedOnTimer checks the other half of fault 10 (c): an
// egress that ended is forgotten once its history time passed, with no
// call at all.
func TestFault10EgressPrunedOnTimer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newEgressFixture(t)
	f.s.egress.history = 20 * time.Millisecond
	f.add("EG_running", 0)
	f.add("EG_done", time.Nanosecond)
	f.s.egress.forgetLater()
	deadline := time.Now().Add(5 * time.Second)
	for f.kept() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d egresses kept 5 s after the history time, want 1 (the running one)", f.kept())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
