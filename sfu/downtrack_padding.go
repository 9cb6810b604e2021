package sfu

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Padding-only packets on a DownTrack: what probe clusters are made of.

// maxPaddingBytes is the most padding one packet carries (RFC 3550
// padding ends in a one-byte count).
const maxPaddingBytes = 255

// maxPaddingWait is how long WritePadding waits for the frame being
// forwarded to end before it gives up: the packets of one frame arrive
// within milliseconds, so a frame still open after this lost its last
// packet on the way.
const maxPaddingWait = 50 * time.Millisecond

// WritePadding sends up to n padding-only packets of size bytes of padding
// (at most 255) on the video stream, to probe the subscriber's bandwidth,
// and returns the bytes sent. They take output sequence numbers of their
// own (a NACK for one maps to nothing) and the timestamp of the last
// forwarded packet, and are sent while the allocator pauses the stream too
// (probing is how it comes back), but not while the track is muted or
// disabled, nor before the first packet was forwarded.
//
// Padding only goes out between frames: while a frame is being forwarded
// it waits for the frame's last packet, and stops if that does not come
// within maxPaddingWait. A receiver assembles a frame from consecutive
// sequence numbers only (libwebrtc's packet buffer does), so one padding
// packet among a frame's packets loses that frame without any packet
// lost; for a base-layer frame every later frame depends on, the picture
// freezes until the receiver gives up waiting and asks for a keyframe.
func (d *DownTrack) WritePadding(n, size int) int {
	b := d.bound.Load()
	if b == nil || d.kind != webrtc.RTPCodecTypeVideo || d.paused.Load() || n <= 0 {
		return 0
	}
	size = min(max(size, 1), maxPaddingBytes)
	d.padMu.Lock()
	defer d.padMu.Unlock()
	var none rtp.Header
	sent := 0
	waiting := false // padTimer runs: the call waited for a frame to end
	defer func() {
		if waiting {
			d.padTimer.Stop()
		}
	}()
	for i := 0; i < n; i++ {
		seq, ts, ok := d.insertPadding(&waiting)
		if !ok {
			break
		}
		h := &d.pad.hdr
		fillHeader(h, b, &none, seq, ts)
		h.Padding, h.PaddingSize = true, byte(size)
		d.write(b, &d.pad, nil, time.Now().UnixNano())
		sent += h.MarshalSize() + size
	}
	return sent
}

// insertPadding hands out the output sequence number and timestamp of a
// padding packet once no frame is open, waiting for the open one to end
// until padTimer fires: it is started on the first wait of a WritePadding
// call (*waiting), so that the call waits maxPaddingWait in all at most.
// ok is false if the frame did not end in time, if the track was paused
// meanwhile, or before the first packet. Callers hold d.padMu.
func (d *DownTrack) insertPadding(waiting *bool) (seq uint16, ts uint32, ok bool) {
	for !d.paused.Load() {
		d.mu.Lock()
		if !d.frameOpen || d.selector.Current() < 0 {
			seq, ts, ok = d.munger.InsertPadding()
			d.mu.Unlock()
			return seq, ts, ok
		}
		d.padWaiting = true
		d.mu.Unlock()
		if !*waiting {
			*waiting = true
			if d.padTimer == nil {
				d.padTimer = time.NewTimer(maxPaddingWait)
			} else {
				d.padTimer.Reset(maxPaddingWait)
			}
		}
		select {
		case <-d.frameEnd:
		case <-d.padTimer.C:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// mungerStarted reports whether a packet was forwarded yet: padding
// continues the output sequence, so it needs one.
func (d *DownTrack) mungerStarted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, started := d.munger.Layer()
	return started
}
