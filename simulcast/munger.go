package simulcast

import (
	"sync"
	"sync/atomic"
)

// mungerRanges is how many offset ranges a Munger remembers for mapping NACKs
// and late packets back across recent padding drops and resumes.
const mungerRanges = 32

// extSeqStart is added to the first input sequence number so that extended
// (unwrapped) sequence numbers never go below zero.
const extSeqStart = 1 << 32

// seqRange is one stretch of input packets forwarded with the same offsets.
// Sequence numbers are extended (64-bit, unwrapped).
type seqRange struct {
	inStart  uint64 // first input sequence number of the range
	inEnd    uint64 // last input sequence number (inclusive), once the range is closed
	outStart uint64 // output sequence number of inStart
	tsOffset uint32 // subtracted from input timestamps
	// padTS is the timestamp of the made-up padding packets (InsertPadding)
	// that took the output numbers between the previous range and this one.
	padTS uint32
	layer uint8 // input stream (simulcast layer) the range was read from
}

// offset is what is subtracted from input sequence numbers in this range.
func (r *seqRange) offset() uint64 { return r.inStart - r.outStart }

// Munger rewrites the sequence numbers and timestamps of one forwarded stream
// so the subscriber sees a continuous stream across pauses, layer switches
// and dropped padding. The zero value waits for its first packet, which
// keeps its sequence number and timestamp; later ones are shifted by offsets that change only when the
// input stream restarts (SwitchLayer) and on padding drops.
//
// Munge, SwitchLayer and InsertPadding must not run concurrently with each
// other (the caller serializes them). UnmungeSeq may be called concurrently
// with them: they take the Munger's mutex only when the offsets change, and
// publish the per-packet position with an atomic.
type Munger struct {
	// Owned by the Munge goroutine.
	started     bool
	restart     bool   // the next packet starts a new input stream (SwitchLayer)
	highestIn   uint64 // newest input sequence number seen (forwarded or padding)
	lastOutTS   uint32 // output timestamp of the newest forwarded packet
	lastArrival int64  // arrival (unix nanos) of the newest forwarded packet
	nextLayer   uint8  // input layer of the range the next resume starts
	nextDelta   uint32 // with haveDelta: next layer's timestamps minus the current layer's
	haveDelta   bool

	// highestOut is the output sequence number of highestIn under the
	// current offset: the last output number handed out (or skipped over
	// as a loss gap). Written by Munge, read by UnmungeSeq.
	highestOut atomic.Uint64

	mu     sync.Mutex // guards writes of ranges/head/count, and UnmungeSeq's reads
	ranges [mungerRanges]seqRange
	head   int // index of the current (open) range
	count  int // ranges in use, the current one included
}

// SwitchLayer tells the munger that the next packet given to Munge starts
// an input stream anew: another simulcast layer, with its own sequence
// numbers and timestamps, or the same one after a pause (a keyframe for
// video: the caller ensures it). Its range continues the output at the next
// sequence number, with a timestamp advanced by the wall time elapsed since
// the last forwarded packet. The layer is reported back by UnmungeSeq so
// that a NACK is answered from the right layer's cache.
func (m *Munger) SwitchLayer(layer uint8) {
	m.nextLayer = layer
	m.haveDelta = false
	m.restart = true
}

// SwitchLayerAligned is SwitchLayer for a new layer whose timestamps are
// known to run delta ticks ahead of the current layer's for the same
// capture instant (from the layers' sender reports): the output timestamps
// then keep the capture timeline exactly instead of estimating it from
// arrival times. A delta far from what the arrival times suggest (half a
// second or more) is not trusted.
func (m *Munger) SwitchLayerAligned(layer uint8, delta uint32) {
	m.SwitchLayer(layer)
	m.nextDelta, m.haveDelta = delta, true
}

// Layer is the input layer of the newest range, and whether any packet was
// munged yet.
func (m *Munger) Layer() (layer uint8, started bool) {
	if !m.started {
		return 0, false
	}
	return m.ranges[m.head].layer, true
}

// Munge returns the sequence number and timestamp to send a packet with, or
// ok=false if it must not be sent. arrival is the packet's arrival time in
// unix nanoseconds, clockRate the codec's RTP clock rate, and paddingOnly
// says the payload is empty once padding is removed.
//
// Padding-only packets are dropped and later packets shifted down so they
// leave no gap. Lost packets stay as gaps, for the subscriber to NACK.
// Late packets are sent with the offsets of the range they belong to, if
// that range is still remembered; late padding and packets that arrived
// while paused are dropped.
func (m *Munger) Munge(seq uint16, ts uint32, arrival int64, clockRate uint32, paddingOnly bool) (outSeq uint16, outTS uint32, ok bool) {
	if !m.started {
		if paddingOnly {
			return 0, 0, false
		}
		return m.start(seq, ts, arrival)
	}
	if m.restart {
		if paddingOnly {
			return 0, 0, false
		}
		m.restart = false
		return m.resume(seq, ts, arrival, clockRate)
	}
	ext := m.highestIn + uint64(int64(int16(seq-uint16(m.highestIn))))
	switch {
	case ext > m.highestIn && paddingOnly:
		m.dropPadding(ext)
		return 0, 0, false
	case ext > m.highestIn:
		cur := &m.ranges[m.head]
		out := ext - cur.offset()
		outTS = ts - cur.tsOffset
		m.highestIn = ext
		m.highestOut.Store(out)
		m.lastOutTS, m.lastArrival = outTS, arrival
		return uint16(out), outTS, true
	case paddingOnly:
		return 0, 0, false
	default:
		return m.late(ext, ts)
	}
}

// start makes the first packet pass through unchanged.
func (m *Munger) start(seq uint16, ts uint32, arrival int64) (uint16, uint32, bool) {
	ext := extSeqStart + uint64(seq)
	m.mu.Lock()
	m.ranges[0] = seqRange{inStart: ext, outStart: ext, layer: m.nextLayer}
	m.head, m.count = 0, 1
	m.highestOut.Store(ext)
	m.mu.Unlock()
	m.started = true
	m.restart = false
	m.highestIn = ext
	m.lastOutTS, m.lastArrival = ts, arrival
	return seq, ts, true
}

// dropPadding skips an in-order padding-only packet with extended sequence
// number ext: packets after it are shifted down by one more.
func (m *Munger) dropPadding(ext uint64) {
	cur := m.ranges[m.head]
	m.mu.Lock()
	if ext == cur.inStart {
		// Nothing forwarded in the current range yet (a run of padding):
		// shift it instead of using up a remembered range.
		m.ranges[m.head].inStart++
	} else {
		m.ranges[m.head].inEnd = ext - 1
		m.push(seqRange{inStart: ext + 1, outStart: ext - cur.offset(), tsOffset: cur.tsOffset, layer: cur.layer})
	}
	m.highestIn = ext
	m.highestOut.Store(ext - cur.offset() - 1)
	m.mu.Unlock()
}

// InsertPadding hands out the next output sequence number to a packet the
// caller makes up (padding to probe the subscriber's bandwidth), with the
// timestamp of the last forwarded packet; later packets are shifted up by
// one. A NACK for it maps to that padding (see UnmungeSeq), to be sent
// again. ok is false before the first packet.
// Like Munge, it must not run concurrently with Munge or SwitchLayer.
func (m *Munger) InsertPadding() (outSeq uint16, outTS uint32, ok bool) {
	if !m.started {
		return 0, 0, false
	}
	out := m.highestOut.Load() + 1
	m.mu.Lock()
	cur := &m.ranges[m.head]
	if m.highestIn < cur.inStart {
		// Nothing forwarded in the current range yet (a run of padding):
		// shift it instead of using up a remembered range.
		cur.outStart++
		cur.padTS = m.lastOutTS
	} else {
		cur.inEnd = m.highestIn
		m.push(seqRange{inStart: m.highestIn + 1, outStart: out + 1, tsOffset: cur.tsOffset, padTS: m.lastOutTS, layer: cur.layer})
	}
	m.highestOut.Store(out)
	m.mu.Unlock()
	return uint16(out), m.lastOutTS, true
}

// resume starts a new range after a pause: output continues at the next
// sequence number, and the timestamp advances by the wall time elapsed since
// the last forwarded packet (at least one tick).
func (m *Munger) resume(seq uint16, ts uint32, arrival int64, clockRate uint32) (uint16, uint32, bool) {
	// The input may have moved on by any amount while paused: count it as
	// forward, so ranges stay ordered.
	diff := uint64(seq - uint16(m.highestIn))
	if diff == 0 {
		diff = 1 << 16
	}
	ext := m.highestIn + diff
	outStart := m.highestOut.Load() + 1
	outTS := m.resumeTS(ts, arrival, clockRate)

	m.mu.Lock()
	if cur := &m.ranges[m.head]; m.highestIn >= cur.inStart {
		cur.inEnd = m.highestIn
		m.push(seqRange{})
	}
	// padTS: padding made up while paused took the numbers before outStart.
	m.ranges[m.head] = seqRange{inStart: ext, outStart: outStart, tsOffset: ts - outTS, padTS: m.lastOutTS, layer: m.nextLayer}
	m.highestIn = ext
	m.highestOut.Store(outStart)
	m.mu.Unlock()
	m.lastOutTS, m.lastArrival = outTS, arrival
	return uint16(outStart), outTS, true
}

// resumeTS is the output timestamp of the first packet after a pause or
// switch: from the sender-report alignment when there is one and it is
// plausible, else the last output timestamp advanced by the wall time
// elapsed. It is always after the last output timestamp.
func (m *Munger) resumeTS(ts uint32, arrival int64, clockRate uint32) uint32 {
	byArrival := m.lastOutTS + elapsedTicks(arrival-m.lastArrival, clockRate)
	if !m.haveDelta {
		return byArrival
	}
	m.haveDelta = false
	aligned := ts - m.nextDelta - m.ranges[m.head].tsOffset
	if off := int64(int32(aligned - byArrival)); off >= int64(clockRate/2) || -off >= int64(clockRate/2) {
		return byArrival
	}
	if int32(aligned-m.lastOutTS) <= 0 {
		return m.lastOutTS + 1
	}
	return aligned
}

// push makes r the current range, forgetting the oldest one if the ring is
// full. Callers hold m.mu.
func (m *Munger) push(r seqRange) {
	m.head = (m.head + 1) % mungerRanges
	m.ranges[m.head] = r
	if m.count < mungerRanges {
		m.count++
	}
}

// late maps a packet older than the newest one with the offsets of the range
// it belongs to, or drops it if it belongs to none (arrived while paused, or
// too old to remember).
func (m *Munger) late(ext uint64, ts uint32) (uint16, uint32, bool) {
	for k, i := 0, m.head; k < m.count; k++ {
		r := &m.ranges[i]
		if ext >= r.inStart {
			if i != m.head && ext > r.inEnd {
				return 0, 0, false
			}
			return uint16(ext - r.offset()), ts - r.tsOffset, true
		}
		i = (i + mungerRanges - 1) % mungerRanges
	}
	return 0, 0, false
}

// Unmunged is where a forwarded packet came from: its input layer and
// sequence number, and the timestamp offset it was sent with
// (outTS = inTS - TSOffset).
type Unmunged struct {
	Layer    uint8
	Seq      uint16
	TSOffset uint32
	// Padding: the number went to a padding packet the caller made up
	// (InsertPadding), sent with timestamp PaddingTS; Layer, Seq and
	// TSOffset are then unset.
	Padding   bool
	PaddingTS uint32
}

// UnmungeSeq maps an output sequence number (from a subscriber's NACK) back
// to the input packet, or to the made-up padding packet (InsertPadding) it
// was given to (Padding). It fails for numbers not yet sent, or sent before
// the remembered ranges. Safe to call concurrently with Munge.
func (m *Munger) UnmungeSeq(outSeq uint16) (Unmunged, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count == 0 {
		return Unmunged{}, false
	}
	hi := m.highestOut.Load()
	ext := hi + uint64(int64(int16(outSeq-uint16(hi))))
	if ext > hi {
		return Unmunged{}, false
	}
	newer := m.head // the range after ranges[i]
	for k, i := 0, m.head; k < m.count; k++ {
		r := &m.ranges[i]
		if ext >= r.outStart {
			if i != m.head && ext > r.inEnd-r.offset() {
				// Between this range and the next, which continue each
				// other but for the padding made up in between.
				return Unmunged{Padding: true, PaddingTS: m.ranges[newer].padTS}, true
			}
			return Unmunged{Layer: r.layer, Seq: uint16(ext + r.offset()), TSOffset: r.tsOffset}, true
		}
		newer = i
		i = (i + mungerRanges - 1) % mungerRanges
	}
	return Unmunged{}, false
}

// elapsedTicks converts a wall-clock duration in nanoseconds to RTP clock
// ticks at clockRate, never less than one.
func elapsedTicks(elapsed int64, clockRate uint32) uint32 {
	if elapsed <= 0 || clockRate == 0 {
		return 1
	}
	const second = int64(1e9)
	rate := uint64(clockRate)
	ticks := uint64(elapsed/second)*rate + uint64(elapsed%second)*rate/uint64(second)
	if uint32(ticks) == 0 {
		return 1
	}
	return uint32(ticks)
}
