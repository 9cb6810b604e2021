package sfu

import (
	"encoding/binary"
	"sync"
)

// MaxPacketSize is the largest RTP packet, in bytes, that a PacketCache stores
// and that reader buffers need to hold.
const MaxPacketSize = 1500

const (
	minPacketCacheSize = 16
	maxPacketCacheSize = 8192
	rtpHeaderSize      = 12
	// cacheResyncAfter is how many packets in a row must look too old
	// before the cache decides the publisher's sequence numbers jumped
	// (stream restart, relay reconnect) and starts over from the new ones.
	cacheResyncAfter = 64
	// extSeqBase is the extended sequence number of the first stored packet
	// (plus its seq): far from zero so packets older than the first one still
	// get an extended number, and 0 can mean "empty slot".
	extSeqBase = 1 << 32
)

// PacketCache keeps the most recent raw RTP packets of one published layer so
// that subscribers' NACKs can be answered. Store is called by one reader
// goroutine; Get may be called by many goroutines at once.
type PacketCache struct {
	mu    sync.RWMutex
	slab  []byte      // len(slots) * MaxPacketSize bytes; slot i starts at i*MaxPacketSize
	slots []cacheSlot // what each slot of slab holds
	mask  uint64
	// highest is the extended sequence number of the newest stored packet,
	// 0 before the first Store.
	highest uint64
	// tooOld counts consecutive packets refused for being too old.
	tooOld int
	// first is the extended sequence number of the first packet since the
	// last resync, and received the packets stored since then: the
	// publisher's loss is what the sequence numbers expected but never came.
	first, received uint64
}

// cacheSlot describes the packet held in one slot of the slab.
type cacheSlot struct {
	ext uint64 // extended sequence number; 0 when the slot is empty
	n   int    // packet length in bytes
}

// NewPacketCache returns a cache holding the last size packets; size is
// clamped to [16, 8192] and rounded up to a power of two. All memory is
// allocated here, as one slab.
func NewPacketCache(size int) *PacketCache {
	n := minPacketCacheSize
	for n < size && n < maxPacketCacheSize {
		n <<= 1
	}
	return &PacketCache{
		slab:  make([]byte, n*MaxPacketSize),
		slots: make([]cacheSlot, n),
		mask:  uint64(n - 1),
	}
}

// Size returns how many packets the cache holds at most.
func (c *PacketCache) Size() int { return len(c.slots) }

// StoreResult says what Store did with a packet.
type StoreResult uint8

// Results of Store.
const (
	// StoredNewest: stored, and newer than every packet before it.
	StoredNewest StoreResult = iota
	// StoredLate: stored, older than the newest but not seen before (a
	// reordered packet, or a retransmission filling a gap).
	StoredLate
	// Duplicate: that sequence number is already stored (a retransmission
	// of a packet that arrived, or a sender's RTX probe); the first copy
	// is kept.
	Duplicate
	// Refused: not an RTP version 2 packet, larger than MaxPacketSize, or
	// older than the cache's window behind the newest packet.
	Refused
)

// Stored reports whether the packet is now in the cache as a new one.
func (r StoreResult) Stored() bool { return r == StoredNewest || r == StoredLate }

// Store copies an RTP packet into the cache and says whether it is new.
func (c *PacketCache) Store(raw []byte) StoreResult {
	if len(raw) < rtpHeaderSize || len(raw) > MaxPacketSize || raw[0]>>6 != 2 {
		return Refused
	}
	seq := binary.BigEndian.Uint16(raw[2:4])

	c.mu.Lock()
	defer c.mu.Unlock()
	ext := c.extend(seq)
	result := StoredNewest
	switch {
	case c.highest == 0 || ext > c.highest:
		c.highest = ext
	case c.highest-ext >= uint64(len(c.slots)):
		c.tooOld++
		if c.tooOld < cacheResyncAfter {
			return Refused
		}
		c.resync(seq)
		ext = c.highest
	default:
		result = StoredLate
		if c.slots[ext&c.mask].ext == ext {
			c.tooOld = 0
			return Duplicate
		}
	}
	c.tooOld = 0
	if c.first == 0 || ext < c.first {
		c.first = ext
	}
	c.received++
	i := ext & c.mask
	copy(c.slab[i*MaxPacketSize:], raw)
	c.slots[i] = cacheSlot{ext: ext, n: len(raw)}
	return result
}

// Get copies the packet with sequence number seq into dst and returns its
// length. It returns false if that packet is not in the cache or dst is too
// small for it.
func (c *PacketCache) Get(seq uint16, dst []byte) (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.highest == 0 {
		return 0, false
	}
	ext := c.extend(seq)
	if ext > c.highest {
		return 0, false
	}
	i := ext & c.mask
	s := c.slots[i]
	if s.ext != ext || len(dst) < s.n {
		return 0, false
	}
	off := int(i) * MaxPacketSize
	return copy(dst, c.slab[off:off+s.n]), true
}

// extend turns seq into an extended sequence number: the one closest to the
// newest stored packet. Callers hold c.mu.
func (c *PacketCache) extend(seq uint16) uint64 {
	if c.highest == 0 {
		return extSeqBase + uint64(seq)
	}
	diff := int16(seq - uint16(c.highest))
	return c.highest + uint64(int64(diff))
}

// resync empties the cache and makes seq the newest packet, after the
// publisher's sequence numbers jumped out of the window. Callers hold c.mu.
func (c *PacketCache) resync(seq uint16) {
	for i := range c.slots {
		c.slots[i] = cacheSlot{}
	}
	// Keep extended numbers increasing (and their low 16 bits equal to seq)
	// so no value from before the jump can be mistaken for a new one.
	c.highest += 1<<16 + uint64(seq-uint16(c.highest))
	c.tooOld = 0
	c.first, c.received = 0, 0
}

// Counts returns how many packets the sequence numbers say were sent since
// the first one stored, and how many of them arrived.
func (c *PacketCache) Counts() (expected, received uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.first == 0 {
		return 0, 0
	}
	return c.highest - c.first + 1, c.received
}
