package simulcast

import "strings"

// LayerForRID maps a simulcast RID to a spatial layer: LiveKit clients send
// q, h, f (quarter, half, full); other publishers use names such as low,
// mid, high or 0, 1, 2. ok is false for names it does not know.
func LayerForRID(rid string) (layer int8, ok bool) {
	switch strings.ToLower(rid) {
	case "q", "l", "lo", "low", "0":
		return 0, true
	case "h", "m", "mid", "medium", "1":
		return 1, true
	case "f", "hi", "high", "full", "2":
		return 2, true
	}
	return 0, false
}

// Dims is the size of a spatial layer.
type Dims struct {
	Width, Height uint32
}

// LayerForSize picks the smallest spatial layer that covers a viewport of
// width x height (comparing the longer sides, so rotated video works), or
// the largest layer when none does. layers are ordered low to high; a zero
// entry is a layer the publisher did not describe and is skipped.
func LayerForSize(layers []Dims, width, height uint32) int8 {
	want := max(width, height)
	best := int8(-1)
	for i, l := range layers {
		side := max(l.Width, l.Height)
		if side == 0 {
			continue
		}
		best = int8(i)
		if side >= want {
			return best
		}
	}
	return best
}

// SenderReport is the clock mapping of an RTCP sender report: the RTP
// timestamp of a stream at an NTP time (RFC 3550 64-bit fixed point).
type SenderReport struct {
	NTP uint64
	RTP uint32
}

// TimestampDelta is how many ticks the timestamps of stream to run ahead of
// those of stream from for the same instant, given a sender report of each
// (simulcast layers carry their own random timestamp bases).
func TimestampDelta(from, to SenderReport, clockRate uint32) uint32 {
	// The NTP difference in 32.32 fixed point, converted to ticks.
	dt := int64(to.NTP - from.NTP)
	ticks := (dt >> 16) * int64(clockRate) >> 16
	return to.RTP - from.RTP - uint32(int32(ticks))
}
