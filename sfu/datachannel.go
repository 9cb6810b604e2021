package sfu

import (
	"sync"

	"github.com/pion/webrtc/v4"
)

// Limits of what waits for a data channel to open.
const (
	maxPendingDataMessages = 256
	maxPendingDataBytes    = 1 << 20
)

// dataChannel sends on a server-created data channel. Messages sent before
// the channel opens wait (bounded) instead of being lost, so a participant
// that just joined still gets the reliable messages sent meanwhile.
type dataChannel struct {
	dc *webrtc.DataChannel

	mu      sync.Mutex
	open    bool
	pending [][]byte
	bytes   int
}

func newDataChannel(dc *webrtc.DataChannel) *dataChannel {
	d := &dataChannel{dc: dc}
	dc.OnOpen(d.flush)
	return d
}

func (d *dataChannel) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open = true
	for _, m := range d.pending {
		_ = d.dc.Send(m)
	}
	d.pending, d.bytes = nil, 0
}

// send writes or queues one message; it reports false when it was dropped.
func (d *dataChannel) send(buf []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.open {
		if len(d.pending) >= maxPendingDataMessages || d.bytes+len(buf) > maxPendingDataBytes {
			return false
		}
		d.pending = append(d.pending, append([]byte(nil), buf...))
		d.bytes += len(buf)
		return true
	}
	if d.dc.BufferedAmount() > maxBufferedData {
		return false
	}
	return d.dc.Send(buf) == nil
}
