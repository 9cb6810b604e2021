package egress

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// jbEvent is a push (seq >= 0) or a pop at a time offset.
type jbEvent struct {
	at  time.Duration
	seq int // -1: pop everything ready
}

func TestJitterBuffer(t *testing.T) {
	const wait = 100 * time.Millisecond
	push := func(ms int, seqs ...int) []jbEvent {
		var out []jbEvent
		for _, s := range seqs {
			out = append(out, jbEvent{time.Duration(ms) * time.Millisecond, s})
		}
		return out
	}
	pop := func(ms int) jbEvent { return jbEvent{time.Duration(ms) * time.Millisecond, -1} }
	cases := []struct {
		name    string
		events  []jbEvent
		want    string // released: seq, or !n for n given up
		missing []uint16
	}{
		{"in order", append(push(0, 10, 11, 12), pop(0)), "10 11 12", nil},
		{"reordered", append(push(0, 10, 12, 11, 13), pop(0)), "10 11 12 13", nil},
		{"a gap waits, then the packet fills it",
			append(append(push(0, 10, 12, 13), pop(50)), append(push(60, 11), pop(60))...), "10 11 12 13", nil},
		{"a gap is given up after the wait", append(push(0, 10, 12, 13), pop(99), pop(100)), "10 !1 12 13", nil},
		{"duplicates and late packets are ignored", append(push(0, 10, 10, 11), pop(0), push(1, 10, 11, 12)[0], push(1, 10, 11, 12)[1], push(1, 10, 11, 12)[2], pop(1)), "10 11 12", nil},
		{"the missing are listed", append(push(0, 10, 13, 15), pop(0)), "10", []uint16{11, 12, 14}},
		{"sequence numbers wrap", append(push(0, 65534, 0, 65535, 1), pop(0)), "65534 65535 0 1", nil},
		{"a jump past the buffer gives up the gap", append(push(0, 10, 10+jitterSlots+5), pop(0), pop(100)), "!6 !511 527", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := NewJitterBuffer(wait)
			base := time.Unix(1000, 0)
			var got []string
			for _, e := range c.events {
				now := base.Add(e.at)
				if e.seq >= 0 {
					j.Push(uint16(e.seq), now, []byte{byte(e.seq)})
					continue
				}
				for {
					pkt, seq, lost, ok := j.Pop(now)
					if lost > 0 {
						got = append(got, fmt.Sprintf("!%d", lost))
					}
					if !ok {
						break
					}
					if len(pkt) != 1 || pkt[0] != byte(seq) {
						t.Fatalf("packet %d carries %v", seq, pkt)
					}
					got = append(got, fmt.Sprint(seq))
				}
			}
			if s := fmt.Sprint(got); s != "["+c.want+"]" {
				t.Errorf("released %s, want [%s]", s, c.want)
			}
			if m := j.Missing(nil, 10); !slices.Equal(m, c.missing) {
				t.Errorf("missing %v, want %v", m, c.missing)
			}
		})
	}
}

// BenchmarkJitterBuffer: a packet through the buffer costs no allocation
// once the slots' buffers have grown.
func BenchmarkJitterBuffer(b *testing.B) {
	j := NewJitterBuffer(100 * time.Millisecond)
	pkt := make([]byte, 1200)
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j.Push(uint16(i), now, pkt)
		if _, _, _, ok := j.Pop(now); !ok {
			b.Fatal("nothing released")
		}
	}
}
