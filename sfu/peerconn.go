package sfu

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

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

func (c *peerConn) close() {
	_ = c.pc.Close()
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
