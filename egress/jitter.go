package egress

import "time"

// jitterSlots is how many packets a JitterBuffer holds: at 2 Mbit/s of
// 1200-byte packets, about 2.4 s.
const jitterSlots = 512

// JitterBuffer puts the RTP packets of one stream back in sequence order.
// A missing packet is waited for up to maxWait after the first packet
// behind it arrived (the SFU asks the publisher again meanwhile: its NACK
// generator runs on the publisher's connection), then given up: Pop
// reports it lost and goes on. Not safe for concurrent use.
type JitterBuffer struct {
	slots   [jitterSlots]jitterSlot
	next    uint16 // next sequence number to release
	highest uint16 // highest sequence number held
	started bool
	held    int
	skipped int // given up by a jump, not reported by Pop yet
	maxWait time.Duration
}

type jitterSlot struct {
	used bool
	seq  uint16
	at   time.Time
	data []byte // a copy, its capacity reused
}

// NewJitterBuffer creates a buffer that waits up to maxWait for a packet.
func NewJitterBuffer(maxWait time.Duration) *JitterBuffer {
	return &JitterBuffer{maxWait: maxWait}
}

// Push stores a copy of a packet that arrived at now. Duplicates and
// packets already released or given up are ignored; a packet so far ahead
// that the buffer cannot hold the gap gives up everything before it.
func (j *JitterBuffer) Push(seq uint16, now time.Time, pkt []byte) {
	if !j.started {
		j.next, j.highest, j.started = seq, seq, true
	}
	if int16(seq-j.next) < 0 {
		return // late: released or given up already
	}
	if seq-j.next >= jitterSlots {
		j.skipTo(seq - jitterSlots + 1)
	}
	s := &j.slots[seq%jitterSlots]
	if s.used {
		return // a duplicate (a retransmission of a packet that arrived)
	}
	s.used, s.seq, s.at = true, seq, now
	s.data = append(s.data[:0], pkt...)
	j.held++
	if int16(seq-j.highest) > 0 {
		j.highest = seq
	}
}

// skipTo gives up every packet before seq, held or not.
func (j *JitterBuffer) skipTo(seq uint16) {
	for j.next != seq {
		if s := &j.slots[j.next%jitterSlots]; s.used {
			s.used = false
			j.held--
		}
		j.next++
		j.skipped++
	}
}

// Pop returns the next packet in order (valid until the next Push or Pop),
// with how many packets before it were given up (lost), or ok false when
// the next one is still awaited.
func (j *JitterBuffer) Pop(now time.Time) (pkt []byte, seq uint16, lost int, ok bool) {
	lost, j.skipped = j.skipped, 0
	for j.held > 0 {
		s := &j.slots[j.next%jitterSlots]
		if s.used && s.seq == j.next {
			s.used = false
			j.held--
			j.next++
			return s.data, s.seq, lost, true
		}
		// The next packet is missing: give it up once the oldest packet
		// waiting behind it has waited maxWait.
		if now.Sub(j.oldestWaiting()) < j.maxWait {
			return nil, 0, lost, false
		}
		j.next++
		lost++
	}
	return nil, 0, lost, false
}

// oldestWaiting is the arrival of the first packet held after the gap.
func (j *JitterBuffer) oldestWaiting() time.Time {
	for seq := j.next; ; seq++ {
		if s := &j.slots[seq%jitterSlots]; s.used && s.seq == seq {
			return s.at
		}
	}
}

// Missing appends to dst the sequence numbers not yet arrived between the
// next one to release and the highest held (at most max of them).
func (j *JitterBuffer) Missing(dst []uint16, max int) []uint16 {
	if j.held == 0 {
		return dst
	}
	for seq := j.next; seq != j.highest && len(dst) < max; seq++ {
		if s := &j.slots[seq%jitterSlots]; !s.used || s.seq != seq {
			dst = append(dst, seq)
		}
	}
	return dst
}
