package sfu

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestQueuedConnNeverBlocksOnStalledPeer writes far more than the peer
// reads: Write must return at once, dropping whole packets, and what the
// peer eventually reads must be intact frames.
func TestQueuedConnNeverBlocksOnStalledPeer(t *testing.T) {
	defer goleak.VerifyNone(t)
	server, peer := net.Pipe() // synchronous: every write blocks until read
	q := newQueuedConn(server, 16*1024)
	frame := func(i int) []byte {
		b := make([]byte, 2+1000)
		binary.BigEndian.PutUint16(b, 1000)
		b[2] = byte(i)
		return b
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if _, err := q.Write(frame(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("writes to a stalled peer took %s", el)
	}
	if q.Dropped() == 0 {
		t.Fatal("a full queue must drop packets")
	}
	// The peer starts reading: every frame it gets is whole.
	buf := make([]byte, 1002)
	for i := 0; i < 5; i++ {
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint16(buf) != 1000 || !bytes.Equal(buf[3:], make([]byte, 999)) {
			t.Fatalf("frame %d corrupted", i)
		}
	}
	_ = q.Close()
	_ = peer.Close()
	<-q.done
	if _, err := q.Write(frame(0)); err == nil {
		t.Fatal("write after close must fail")
	}
}
