package signaling

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"go.uber.org/goleak"
)

// TestSessionCloseDoesNotWaitForAStalledClient: a session closed while its
// client has stopped reading (its TCP window full) ends within the close
// drain timeout, not after writeTimeout for each message still queued.
func TestSessionCloseDoesNotWaitForAStalledClient(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sess := newSession(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ended := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		sess.setConn(conn)
		go func() {
			sess.writeLoop(time.Hour)
			close(ended)
		}()
	}))
	defer srv.Close()
	dialer := websocket.Dialer{NetDialContext: (&net.Dialer{}).DialContext, ReadBufferSize: 1024}
	client, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if tcp, ok := client.UnderlyingConn().(*net.TCPConn); ok {
		_ = tcp.SetReadBuffer(4096)
	}
	sess.sendJoin(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: &livekit.JoinResponse{}}})
	big := strings.Repeat("m", 60_000)
	for i := 0; i < 200; i++ { // 12 MB the client never reads
		sess.SendSignal(&livekit.SignalResponse{Message: &livekit.SignalResponse_RoomUpdate{
			RoomUpdate: &livekit.RoomUpdate{Room: &livekit.Room{Metadata: big}},
		}})
	}
	time.Sleep(300 * time.Millisecond) // the writer is now blocked on the full window
	start := time.Now()
	sess.CloseSignal()
	select {
	case <-ended:
	case <-time.After(writeTimeout):
		t.Fatalf("the session's writer still runs %s after close (the client stopped reading)", writeTimeout)
	}
	if took := time.Since(start); took > closeDrainTimeout+writeTimeout/4 {
		t.Fatalf("closing took %s, want about %s", took, closeDrainTimeout)
	}
}
