package signaling_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/signaling/client"
)

// rawHTTP is one TCP connection to the node on which a test writes a
// request by hand: a body announced but not (yet) sent, or sent slowly.
type rawHTTP struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialHTTP(t *testing.T, n *node) *rawHTTP {
	t.Helper()
	conn, err := net.Dial("tcp", n.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawHTTP{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// head writes a POST's request line and headers (token "" sends none).
func (h *rawHTTP) head(path, token string, contentLength int64, chunked bool) {
	h.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: fanout\r\nContent-Type: application/protobuf\r\n", path)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if chunked {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	}
	b.WriteString("\r\n")
	h.write([]byte(b.String()))
}

// write sends bytes; a write the server refused (it closed the
// connection) is not an error here.
func (h *rawHTTP) write(p []byte) bool {
	_ = h.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := h.conn.Write(p)
	return err == nil
}

// response reads the server's answer within timeout.
func (h *rawHTTP) response(timeout time.Duration) (int, string, error) {
	_ = h.conn.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// TestFault4UnauthenticatedBodyNotRead: a Twirp request announcing a
// 100 MB body is answered, before its body is sent, when its token is
// missing (401) or lacks the method's grant (403), and when its
// Content-Length is over limits.max_api_body_size (413); a chunked body
// over the limit is cut off at it (413). Before the fix every one of
// them was read whole before any check, so no answer came.
func TestFault4UnauthenticatedBodyNotRead(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	admin := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomAdmin: true, Room: "r"})
	list := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomList: true})
	const huge = 100 << 20
	cases := []struct {
		name, path, token string
		chunked           bool
		status            int
		msg               string
	}{
		{"no token", "/twirp/livekit.RoomService/ListRooms", "", false, http.StatusUnauthorized, "no access token"},
		{"bad token", "/twirp/livekit.Egress/ListEgress", "garbage", false, http.StatusUnauthorized, "malformed access token"},
		{"no roomAdmin grant", "/twirp/livekit.RoomService/UpdateParticipant", list, false, http.StatusForbidden, "lacks the roomAdmin grant"},
		{"no roomRecord grant", "/twirp/livekit.Egress/StartParticipantEgress", admin, false, http.StatusForbidden, "lacks the roomRecord grant"},
		{"too large", "/twirp/livekit.RoomService/UpdateParticipant", admin, false, http.StatusRequestEntityTooLarge, "limits.max_api_body_size is 1048576 bytes"},
		{"too large, chunked", "/twirp/livekit.RoomService/UpdateParticipant", admin, true, http.StatusRequestEntityTooLarge, "limits.max_api_body_size is 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := dialHTTP(t, n)
			h.head(tc.path, tc.token, huge, tc.chunked)
			// Send 2 MB of the 100 MB (chunked: in 64 KB chunks) and
			// stop: the answer must come without the rest.
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < 2<<20; sent += len(chunk) {
				data := chunk
				if tc.chunked {
					data = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, "\r\n"...)...)
				}
				if !h.write(data) {
					break // the server answered and closed already
				}
			}
			status, body, err := h.response(3 * time.Second)
			if err != nil {
				t.Fatalf("no answer while the body is still coming: %v", err)
			}
			if status != tc.status || !strings.Contains(body, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tc.status, tc.msg)
			}
		})
	}
}

// TestFault4SlowlorisBodyTimesOut: a body trickled in a byte at a time is
// cut off by the server's read timeout (408 or a closed connection)
// instead of holding a goroutine and its buffer for as long as the
// client likes. Before the fix the server set only ReadHeaderTimeout.
func TestFault4SlowlorisBodyTimesOut(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{timeouts: &signaling.HTTPTimeouts{Read: time.Second}})
	tok := signToken(t, testKey, testSecret, "", time.Hour, &auth.VideoGrant{RoomList: true})
	h := dialHTTP(t, n)
	h.head("/twirp/livekit.RoomService/ListRooms", tok, 1000, false)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if !h.write([]byte{0}) {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	start := time.Now()
	status, body, err := h.response(4 * time.Second)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server still reads a trickled body after %s", time.Since(start).Round(time.Millisecond))
		}
		return // closed by the server: cut off
	}
	if status != http.StatusRequestTimeout || !strings.Contains(body, "not received in time") {
		t.Fatalf("got %d %q, want 408", status, body)
	}
}

// TestFault4WebSocketOutlivesServerTimeouts: a signal WebSocket stays
// open and working long past the HTTP server's read, write and idle
// timeouts (the upgrade clears the connection's deadlines).
func TestFault4WebSocketOutlivesServerTimeouts(t *testing.T) {
	checkLeaks(t)
	short := 300 * time.Millisecond
	n := startNode(t, nodeOptions{timeouts: &signaling.HTTPTimeouts{ReadHeader: short, Read: short, Write: short, Idle: short}})
	c := n.join(t, "ws", "alice", client.Options{})
	time.Sleep(5 * short)
	mark := c.Mark()
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 1}}}); err != nil {
		t.Fatalf("send after the timeouts: %v", err)
	}
	if _, err := c.WaitAfter(ctxTimeout(t, 3*time.Second), mark, func(m *livekit.SignalResponse) bool { return m.GetPongResp() != nil }); err != nil {
		t.Fatalf("no pong after the server's timeouts passed: %v", err)
	}
}
