package sfu

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// maxPendingCandidates bounds candidates queued before the remote description.
const maxPendingCandidates = 64

// peerConn wraps a pion PeerConnection with the bookkeeping signaling needs:
// candidates that arrive before the remote description are held, not lost.
type peerConn struct {
	pc      *webrtc.PeerConnection
	mu      sync.Mutex
	pending []webrtc.ICECandidateInit
	remote  bool
}

func newPeerConn(pc *webrtc.PeerConnection) *peerConn {
	return &peerConn{pc: pc}
}

// addCandidate applies or queues a remote candidate.
func (c *peerConn) addCandidate(init webrtc.ICECandidateInit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.remote {
		if len(c.pending) >= maxPendingCandidates {
			return fmt.Errorf("%d candidates before the offer: %w", len(c.pending), ErrNoRemoteDescription)
		}
		c.pending = append(c.pending, init)
		return nil
	}
	if err := c.pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("add candidate: %w: %v", ErrBadCandidate, err)
	}
	return nil
}

// setRemote applies a remote description, then any queued candidates.
func (c *peerConn) setRemote(desc webrtc.SessionDescription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pc.SetRemoteDescription(desc); err != nil {
		return fmt.Errorf("set remote %s: %w: %v", desc.Type, ErrBadSDP, err)
	}
	c.remote = true
	for _, cand := range c.pending {
		_ = c.pc.AddICECandidate(cand)
	}
	c.pending = nil
	return nil
}

// pcCloseTimeout bounds how long closing a peer connection may hold up the
// close of its participant. pion v4.2.26 can wedge in PeerConnection.Close:
// an SRTP or SRTCP packet for an SSRC nobody opened blocks its session's
// reader on a channel that no goroutine accepts from any more (its
// undeclared-media loop has ended), and Close waits for that reader
// forever. The participant and its room close anyway; the goroutines pion
// keeps are counted (StuckPeerConnectionCloses) and logged.
var pcCloseTimeout = 5 * time.Second

var stuckPCCloses atomic.Int64

// StuckPeerConnectionCloses is how many peer connections did not finish
// closing within pcCloseTimeout since the process started (see above).
func StuckPeerConnectionCloses() int64 { return stuckPCCloses.Load() }

func (c *peerConn) close() {
	done := make(chan struct{})
	go func() {
		_ = c.pc.Close()
		close(done)
	}()
	timer := time.NewTimer(pcCloseTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		n := stuckPCCloses.Add(1)
		slog.Error("peer connection close did not finish: pion's SRTP session is wedged; going on without it",
			"timeout", pcCloseTimeout, "stuck_total", n)
	}
}

func parseCandidate(js string) (webrtc.ICECandidateInit, error) {
	var init webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(js), &init); err != nil {
		return init, fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	if init.Candidate != "" {
		return init, checkCandidate(strings.TrimPrefix(init.Candidate, "a="))
	}
	return init, nil
}

// checkCandidate checks a candidate attribute value starts as one must.
func checkCandidate(c string) error {
	if !strings.HasPrefix(c, "candidate:") {
		return fmt.Errorf("%w: %q does not start with candidate:", ErrBadCandidate, c)
	}
	return nil
}

func marshalCandidate(init webrtc.ICECandidateInit) (string, error) {
	b, err := json.Marshal(init)
	if err != nil {
		return "", fmt.Errorf("marshal candidate: %w", err)
	}
	return string(b), nil
}
