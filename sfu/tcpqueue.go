package sfu

import (
	"net"
	"sync"
	"sync/atomic"
)

// maxTCPQueueBytes bounds what may wait for one slow ICE-TCP peer.
const maxTCPQueueBytes = 1 << 20

// queuedListener wraps the ICE-TCP listener so that every accepted
// connection writes through a bounded queue drained by its own goroutine.
// pion writes each framed packet with one blocking Write on the track's
// reader goroutine; without the queue one stalled TCP subscriber would
// stall the publisher and everyone else receiving the track.
type queuedListener struct {
	net.Listener
}

// Accept wraps the accepted connection in a queuedConn.
func (l queuedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newQueuedConn(c, maxTCPQueueBytes), nil
}

var tcpBufPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxPacketSize+64); return &b }}

// queuedConn is a net.Conn whose Write never blocks: each Write (one
// RFC 4571 framed packet) is copied into a bounded queue, and dropped whole
// when the queue is full, which keeps the stream's framing intact.
type queuedConn struct {
	net.Conn
	limit int

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*[]byte
	bytes   int
	closed  bool
	dropped atomic.Uint64
	done    chan struct{}
}

func newQueuedConn(c net.Conn, limit int) *queuedConn {
	q := &queuedConn{Conn: c, limit: limit, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.writeLoop()
	return q
}

// Write queues b; it fails only once the connection is closed.
func (q *queuedConn) Write(b []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, net.ErrClosed
	}
	if q.bytes+len(b) > q.limit {
		q.dropped.Add(1)
		return len(b), nil
	}
	buf := tcpBufPool.Get().(*[]byte)
	*buf = append((*buf)[:0], b...)
	q.queue = append(q.queue, buf)
	q.bytes += len(b)
	q.cond.Signal()
	return len(b), nil
}

func (q *queuedConn) writeLoop() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		buf := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.bytes -= len(*buf)
		q.mu.Unlock()
		_, err := q.Conn.Write(*buf)
		tcpBufPool.Put(buf)
		if err != nil {
			_ = q.Close()
			return
		}
	}
}

// Dropped returns how many packets were dropped because the queue was full.
func (q *queuedConn) Dropped() uint64 { return q.dropped.Load() }

// Close stops the writer and closes the connection.
func (q *queuedConn) Close() error {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.queue = nil
	q.bytes = 0
	q.cond.Broadcast()
	q.mu.Unlock()
	if already {
		return nil
	}
	return q.Conn.Close()
}
