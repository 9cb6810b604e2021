package signaling_test

import (
	"slices"
	"time"
)

// A model of what a subscriber's decoder shows, from the packets it
// received: a VP8 frame is complete once all its packets arrived (the
// retransmission of a lost one counts when it comes), and it is decoded
// once it is complete and the frame before it (by picture id) was decoded,
// or it is a keyframe. Padding-only packets belong to no frame.

// decodedFrame is a frame of a video track and when it was decoded.
type decodedFrame struct {
	pid       uint16
	at        time.Time // when its last packet arrived
	key       bool
	width     int // a keyframe's width
	complete  bool
	decodedAt time.Time // zero: never decoded
}

// frameParts gathers the packets of one frame.
type frameParts struct {
	pid             uint16
	width           int
	key, start, end bool
	lo, hi          int64 // unwrapped sequence numbers
	seqs            map[int64]bool
	last            time.Time
	first           time.Time
}

// decodedFrames rebuilds the frames of track id from every packet
// received, in picture id order, with the time each was decoded.
func (w *layerWatch) decodedFrames(id string) []decodedFrame {
	w.mu.Lock()
	var arr []arrival
	if s := w.streams[id]; s != nil {
		arr = slices.Clone(s.arrivals)
	}
	w.mu.Unlock()
	parts := map[uint32]*frameParts{}
	var order []uint32
	var last int64
	started := false
	for _, a := range arr {
		if !a.vp8 {
			continue // padding
		}
		seq := int64(a.seq)
		if started {
			seq = unwrapNear(a.seq, last)
		}
		started, last = true, max(last, seq)
		f := parts[a.ts]
		if f == nil {
			f = &frameParts{pid: a.pid, lo: seq, hi: seq, seqs: map[int64]bool{}, first: a.at}
			parts[a.ts] = f
			order = append(order, a.ts)
		}
		if f.seqs[seq] {
			continue // a duplicate
		}
		f.seqs[seq] = true
		f.lo, f.hi = min(f.lo, seq), max(f.hi, seq)
		f.start = f.start || a.start
		f.end = f.end || a.end
		f.key = f.key || a.key
		f.width = max(f.width, a.width)
		f.last = a.at
	}
	frames := make([]decodedFrame, 0, len(order))
	for _, ts := range order {
		f := parts[ts]
		complete := f.start && f.end && int64(len(f.seqs)) == f.hi-f.lo+1
		frames = append(frames, decodedFrame{pid: f.pid, at: f.last, key: f.key, width: f.width, complete: complete})
	}
	slices.SortStableFunc(frames, func(a, b decodedFrame) int {
		return int(int16(a.pid - b.pid))
	})
	var prev *decodedFrame
	for i := range frames {
		f := &frames[i]
		chained := prev != nil && f.pid == (prev.pid+1)&0x7fff && !prev.decodedAt.IsZero()
		if f.complete && (f.key || chained) {
			f.decodedAt = f.at
			if chained && prev.decodedAt.After(f.at) {
				f.decodedAt = prev.decodedAt
			}
		}
		prev = f
	}
	return frames
}

// unwrapNear is the unwrapped sequence number of seq nearest to ref.
func unwrapNear(seq uint16, ref int64) int64 {
	return ref + int64(int16(seq-uint16(ref)))
}

// longestDecodeGap is the longest time in [from, to) without a newly
// decoded frame of track id (the stretches before the first and after the
// last decoded frame in the window count), and the frames decoded then.
func (w *layerWatch) longestDecodeGap(id string, from, to time.Time) (gap time.Duration, decoded int) {
	gap, _, decoded = w.decodeGapAt(id, from, to)
	return gap, decoded
}

// decodeGapAt is longestDecodeGap with the time the longest gap ended.
func (w *layerWatch) decodeGapAt(id string, from, to time.Time) (gap time.Duration, at time.Time, decoded int) {
	var times []time.Time
	for _, f := range w.decodedFrames(id) {
		if !f.decodedAt.IsZero() && !f.decodedAt.Before(from) && f.decodedAt.Before(to) {
			times = append(times, f.decodedAt)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	last := from
	for _, t := range times {
		if t.Sub(last) > gap {
			gap, at = t.Sub(last), t
		}
		last = t
	}
	if to.Sub(last) > gap {
		gap, at = to.Sub(last), to
	}
	return gap, at, len(times)
}

// firstDecodedWidth is when the first keyframe of track id of width want
// was decoded, at or after from; zero when none was.
func (w *layerWatch) firstDecodedWidth(id string, want int, from time.Time) time.Time {
	for _, f := range w.decodedFrames(id) {
		if f.width == want && !f.decodedAt.IsZero() && !f.decodedAt.Before(from) {
			return f.decodedAt
		}
	}
	return time.Time{}
}

// videoLoss counts the packets of the frames of track id first seen in
// [from, to), and those of them that never arrived, even as a
// retransmission: the missing packets inside a frame, one for a frame
// whose first or last packet is missing, and one for a frame missing
// altogether (a gap in picture ids). Padding between frames is not video.
func (w *layerWatch) videoLoss(id string, from, to time.Time) (packets, lost int) {
	packets, lost, _ = w.videoLossAt(id, from, to)
	return packets, lost
}

// videoLossAt is videoLoss with when each frame that lost packets was
// first seen (a frame missing altogether counts at the next one's).
func (w *layerWatch) videoLossAt(id string, from, to time.Time) (packets, lost int, at []time.Time) {
	w.mu.Lock()
	var arr []arrival
	if s := w.streams[id]; s != nil {
		arr = slices.Clone(s.arrivals)
	}
	w.mu.Unlock()
	type frame struct {
		lo, hi     int64
		n          int
		start, end bool
		first      time.Time
		seqs       map[int64]bool
	}
	frames := map[uint16]*frame{}
	var hi int64
	started := false
	for _, a := range arr {
		if !a.vp8 {
			continue
		}
		seq := int64(a.seq)
		if started {
			seq = unwrapNear(a.seq, hi)
		}
		started, hi = true, max(hi, seq)
		f := frames[a.pid]
		if f == nil {
			f = &frame{lo: seq, hi: seq, first: a.at, seqs: map[int64]bool{}}
			frames[a.pid] = f
		}
		if f.seqs[seq] {
			continue
		}
		f.seqs[seq] = true
		f.n++
		f.lo, f.hi = min(f.lo, seq), max(f.hi, seq)
		f.start, f.end = f.start || a.start, f.end || a.end
	}
	var pids []uint16
	for pid, f := range frames {
		if !f.first.Before(from) && f.first.Before(to) {
			pids = append(pids, pid)
		}
	}
	slices.SortFunc(pids, func(a, b uint16) int { return int(int16(a - b)) })
	for i, pid := range pids {
		f := frames[pid]
		before := lost
		packets += int(f.hi - f.lo + 1)
		lost += int(f.hi-f.lo+1) - f.n
		if !f.start || !f.end {
			packets++
			lost++
		}
		if i > 0 {
			if missing := int(int16(pid-pids[i-1])) - 1; missing > 0 {
				packets += missing
				lost += missing
			}
		}
		if lost > before {
			at = append(at, f.first)
		}
	}
	return packets, lost, at
}
