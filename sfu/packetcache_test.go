package sfu

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
)

// testPacket builds an n-byte RTP packet with sequence number seq whose
// payload bytes are all tag.
func testPacket(seq uint16, tag byte, n int) []byte {
	b := make([]byte, n)
	b[0] = 0x80
	b[1] = 96
	binary.BigEndian.PutUint16(b[2:4], seq)
	for i := rtpHeaderSize; i < n; i++ {
		b[i] = tag
	}
	return b
}

func TestNewPacketCacheSize(t *testing.T) {
	tests := []struct{ in, want int }{
		{-5, 16}, {0, 16}, {1, 16}, {16, 16}, {17, 32}, {128, 128},
		{1000, 1024}, {8192, 8192}, {8193, 8192}, {1 << 20, 8192},
	}
	for _, tt := range tests {
		c := NewPacketCache(tt.in)
		if c.Size() != tt.want {
			t.Errorf("NewPacketCache(%d).Size() = %d, want %d", tt.in, c.Size(), tt.want)
		}
		if len(c.slab) != tt.want*MaxPacketSize {
			t.Errorf("NewPacketCache(%d) slab = %d bytes, want %d", tt.in, len(c.slab), tt.want*MaxPacketSize)
		}
	}
}

// cacheStore is one Store call of a test case.
type cacheStore struct {
	seq  uint16
	tag  byte
	size int // packet length; 100 when 0
	raw  []byte
	want bool
}

// cacheGet is one Get check of a test case; tag is the expected payload byte.
type cacheGet struct {
	seq  uint16
	dst  int // dst length; MaxPacketSize when 0
	want bool
	tag  byte
	n    int // expected length; 100 when 0
}

// cacheSeqs returns count in-order stores from seq from, all accepted.
func cacheSeqs(from uint16, count int, tag byte) []cacheStore {
	out := make([]cacheStore, count)
	for i := range out {
		out[i] = cacheStore{seq: from + uint16(i), tag: tag, want: true}
	}
	return out
}

// cacheRefused marks stores as expected to be refused.
func cacheRefused(in []cacheStore) []cacheStore {
	for i := range in {
		in[i].want = false
	}
	return in
}

// packetCacheTests are the Store/Get scripts of TestPacketCache.
var packetCacheTests = []struct {
	name   string
	size   int
	stores []cacheStore
	gets   []cacheGet
}{
	{
		name:   "in order, window of size",
		size:   16,
		stores: cacheSeqs(1, 20, 1),
		gets: []cacheGet{
			{seq: 20, want: true, tag: 1}, {seq: 5, want: true, tag: 1},
			{seq: 4}, {seq: 1}, {seq: 21}, {seq: 0},
		},
	},
	{
		name: "out of order within window",
		size: 16,
		stores: []cacheStore{
			{seq: 10, tag: 1, want: true}, {seq: 12, tag: 2, want: true}, {seq: 11, tag: 3, want: true},
			{seq: 14, tag: 4, want: true}, {seq: 13, tag: 5, want: true}, {seq: 0, tag: 6, want: true},
		},
		gets: []cacheGet{
			{seq: 10, want: true, tag: 1}, {seq: 11, want: true, tag: 3}, {seq: 12, want: true, tag: 2},
			{seq: 13, want: true, tag: 5}, {seq: 14, want: true, tag: 4}, {seq: 0, want: true, tag: 6},
			{seq: 15}, {seq: 9},
		},
	},
	{
		name:   "wrap at 65535",
		size:   16,
		stores: cacheSeqs(65530, 12, 7),
		gets: []cacheGet{
			{seq: 65530, want: true, tag: 7}, {seq: 65535, want: true, tag: 7},
			{seq: 0, want: true, tag: 7}, {seq: 5, want: true, tag: 7},
			{seq: 65529}, {seq: 6},
		},
	},
	{
		name: "wrap out of order",
		size: 16,
		stores: []cacheStore{
			{seq: 65534, tag: 1, want: true}, {seq: 1, tag: 2, want: true},
			{seq: 65535, tag: 3, want: true}, {seq: 0, tag: 4, want: true},
		},
		gets: []cacheGet{
			{seq: 65534, want: true, tag: 1}, {seq: 65535, want: true, tag: 3},
			{seq: 0, want: true, tag: 4}, {seq: 1, want: true, tag: 2},
		},
	},
	{
		name:   "too old not stored",
		size:   16,
		stores: []cacheStore{{seq: 100, tag: 1, want: true}, {seq: 84, tag: 2}, {seq: 85, tag: 3, want: true}},
		gets:   []cacheGet{{seq: 84}, {seq: 85, want: true, tag: 3}, {seq: 100, want: true, tag: 1}},
	},
	{
		name:   "stale slot from previous lap not returned",
		size:   16,
		stores: []cacheStore{{seq: 3, tag: 1, want: true}, {seq: 19, tag: 2, want: true}},
		gets:   []cacheGet{{seq: 3}, {seq: 19, want: true, tag: 2}},
	},
	{
		name: "stale packet with same seq 65536 later not returned",
		size: 16,
		stores: []cacheStore{
			{seq: 5, tag: 1, want: true}, {seq: 20000, tag: 2, want: true}, {seq: 40000, tag: 3, want: true},
			{seq: 60000, tag: 4, want: true}, {seq: 10000, tag: 5, want: true},
		},
		gets: []cacheGet{{seq: 5}, {seq: 10000, want: true, tag: 5}, {seq: 60000}},
	},
	{
		name: "too big, max size",
		size: 16,
		stores: []cacheStore{
			{seq: 1, tag: 1, size: MaxPacketSize + 1}, {seq: 2, tag: 2, size: MaxPacketSize, want: true},
		},
		gets: []cacheGet{
			{seq: 1}, {seq: 2, want: true, tag: 2, n: MaxPacketSize},
			{seq: 2, dst: MaxPacketSize - 1},
		},
	},
	{
		name: "too short or not version 2",
		size: 16,
		stores: []cacheStore{
			{seq: 1, tag: 1, size: rtpHeaderSize - 1}, {raw: []byte{}},
			{raw: append([]byte{0x40}, testPacket(3, 3, 100)[1:]...)},
			{seq: 4, tag: 4, size: rtpHeaderSize, want: true},
		},
		gets: []cacheGet{{seq: 1}, {seq: 3}, {seq: 4, want: true, n: rtpHeaderSize}},
	},
	{
		name: "duplicates keep the first copy",
		size: 16,
		stores: []cacheStore{
			{seq: 7, tag: 1, want: true}, {seq: 8, tag: 1, want: true},
			{seq: 7, tag: 2, size: 60}, {seq: 8, tag: 3},
		},
		gets: []cacheGet{{seq: 7, want: true, tag: 1}, {seq: 8, want: true, tag: 1}},
	},
	{
		name:   "dst too small",
		size:   16,
		stores: []cacheStore{{seq: 1, tag: 1, want: true}},
		gets:   []cacheGet{{seq: 1, dst: 99}, {seq: 1, dst: 100, want: true, tag: 1}},
	},
	{
		name:   "empty cache",
		size:   16,
		stores: nil,
		gets:   []cacheGet{{seq: 0}, {seq: 1}},
	},
	{
		name:   "sequence jump backwards resyncs",
		size:   16,
		stores: append(cacheSeqs(30000, 20, 1), append(cacheRefused(cacheSeqs(1000, cacheResyncAfter-1, 2)), cacheSeqs(1000+cacheResyncAfter-1, 20, 3)...)...),
		gets: []cacheGet{
			{seq: 30019}, {seq: 1000 + cacheResyncAfter - 1}, {seq: 1000 + cacheResyncAfter + 4, want: true, tag: 3},
			{seq: 1000 + cacheResyncAfter + 18, want: true, tag: 3},
		},
	},
}

func TestPacketCache(t *testing.T) {
	for _, tt := range packetCacheTests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewPacketCache(tt.size)
			for i, s := range tt.stores {
				raw := s.raw
				if raw == nil {
					n := s.size
					if n == 0 {
						n = 100
					}
					raw = testPacket(s.seq, s.tag, n)
				}
				if got := c.Store(raw).Stored(); got != s.want {
					t.Fatalf("store #%d seq %d: got %v, want %v", i, s.seq, got, s.want)
				}
			}
			for _, g := range tt.gets {
				checkCacheGet(t, c, g)
			}
		})
	}
}

func checkCacheGet(t *testing.T, c *PacketCache, g cacheGet) {
	t.Helper()
	dstLen, wantN := g.dst, g.n
	if dstLen == 0 {
		dstLen = MaxPacketSize
	}
	if wantN == 0 {
		wantN = 100
	}
	dst := make([]byte, dstLen)
	n, ok := c.Get(g.seq, dst)
	if ok != g.want {
		t.Fatalf("Get(%d) ok = %v, want %v", g.seq, ok, g.want)
	}
	if !ok {
		return
	}
	if n != wantN {
		t.Fatalf("Get(%d) n = %d, want %d", g.seq, n, wantN)
	}
	if got := binary.BigEndian.Uint16(dst[2:4]); got != g.seq {
		t.Fatalf("Get(%d) returned seq %d", g.seq, got)
	}
	for i := rtpHeaderSize; i < n; i++ {
		if dst[i] != g.tag {
			t.Fatalf("Get(%d) payload byte %d = %d, want tag %d", g.seq, i, dst[i], g.tag)
		}
	}
}

// TestPacketCacheConcurrent stores on one goroutine while several others
// read; under -race it checks locking, and every packet read must be intact.
func TestPacketCacheConcurrent(t *testing.T) {
	const total = 70000
	c := NewPacketCache(256)
	var newest atomic.Uint32
	var done atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			dst := make([]byte, MaxPacketSize)
			for i := r; !done.Load(); i++ {
				seq := uint16(newest.Load()) - uint16(i%300)
				n, ok := c.Get(seq, dst)
				if !ok {
					continue
				}
				if got := binary.BigEndian.Uint16(dst[2:4]); got != seq || n != 64+int(seq%128) {
					t.Errorf("Get(%d): seq %d len %d", seq, got, n)
					return
				}
				for _, b := range dst[rtpHeaderSize:n] {
					if b != byte(seq) {
						t.Errorf("Get(%d): torn payload", seq)
						return
					}
				}
			}
		}(r)
	}
	pkt := make([]byte, MaxPacketSize)
	for i := 0; i < total; i++ {
		seq := uint16(i)
		p := pkt[:64+int(seq%128)]
		copy(p, testPacket(seq, byte(seq), len(p)))
		c.Store(p)
		newest.Store(uint32(seq))
	}
	done.Store(true)
	wg.Wait()
}

func BenchmarkPacketCacheStore(b *testing.B) {
	c := NewPacketCache(1024)
	pkt := testPacket(0, 1, 1200)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint16(pkt[2:4], uint16(i))
		c.Store(pkt)
	}
}

func BenchmarkPacketCacheGet(b *testing.B) {
	c := NewPacketCache(1024)
	for i := 0; i < 1024; i++ {
		c.Store(testPacket(uint16(i), 1, 1200))
	}
	dst := make([]byte, MaxPacketSize)
	b.SetBytes(1200)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := c.Get(uint16(i&1023), dst); !ok {
			b.Fatal("miss")
		}
	}
}

func TestPacketCacheStoreResult(t *testing.T) {
	c := NewPacketCache(16)
	steps := []struct {
		seq  uint16
		want StoreResult
	}{
		{100, StoredNewest}, {102, StoredNewest}, {101, StoredLate}, {101, Duplicate}, {102, Duplicate},
		{103, StoredNewest}, {103, Duplicate}, {80, Refused}, {104, StoredNewest},
	}
	for i, s := range steps {
		if got := c.Store(testPacket(s.seq, 1, 100)); got != s.want {
			t.Fatalf("step %d seq %d: %d, want %d", i, s.seq, got, s.want)
		}
	}
	if got := c.Store([]byte{0x80}); got != Refused {
		t.Errorf("short packet: %d", got)
	}
}
