package egress

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fanout-sfu/fanout/simulcast"
)

// Test NAL units: the header byte (nal_ref_idc 3) and a body naming them.
var (
	tSPS   = []byte{0x67, 's', 'p', 's'}
	tPPS   = []byte{0x68, 'p', 'p', 's'}
	tIDR   = append([]byte{0x65}, bytes.Repeat([]byte{'I'}, 3000)...)
	tSlice = []byte{0x41, 'p'}
	tAUD   = []byte{0x09, 0xf0}
)

// rtpPkt is one test RTP packet.
type rtpPkt struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

// stapA aggregates NAL units.
func stapA(nalus ...[]byte) []byte {
	p := []byte{0x78} // F=0, NRI=3, type 24
	for _, n := range nalus {
		p = append(p, byte(len(n)>>8), byte(len(n)))
		p = append(p, n...)
	}
	return p
}

// fuA splits a NAL unit into fragments of at most size bytes of payload.
func fuA(n []byte, size int) [][]byte {
	var out [][]byte
	body := n[1:]
	for i := 0; i < len(body); i += size {
		end := min(i+size, len(body))
		hdr := n[0]&0x1f | 0
		if i == 0 {
			hdr |= 0x80
		}
		if end == len(body) {
			hdr |= 0x40
		}
		out = append(out, append([]byte{n[0]&0xe0 | simulcast.H264NALFUA, hdr}, body[i:end]...))
	}
	return out
}

// picture packetizes one access unit: its payloads get consecutive
// sequence numbers from *seq, the timestamp ts, and the marker on the last.
func picture(seq *uint16, ts uint32, payloads ...[]byte) []rtpPkt {
	var out []rtpPkt
	for i, p := range payloads {
		out = append(out, rtpPkt{seq: *seq, ts: ts, marker: i == len(payloads)-1, payload: p})
		*seq++
	}
	return out
}

// describe names an access unit's NAL unit types, e.g. "7 8 5".
func describe(au AccessUnit) string {
	var b strings.Builder
	for i, n := range au.NALUs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, n[0]&0x1f)
	}
	return b.String()
}

func TestH264Assembler(t *testing.T) {
	idrFrags := fuA(tIDR, 1000)
	cases := []struct {
		name  string
		build func(seq *uint16) []rtpPkt
		drop  map[int]bool // indexes of packets lost
		want  []string     // units out: their NAL types
		errs  int
	}{
		{"STAP-A parameter sets, FU-A IDR, single-NAL slices", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, append([][]byte{stapA(tSPS, tPPS)}, idrFrags...)...)
			p = append(p, picture(s, 4000, tSlice)...)
			return append(p, picture(s, 7000, tAUD, tSlice)...)
		}, nil, []string{"7 8 5", "1", "1"}, 0},
		{"nothing before the first IDR", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, tSlice)
			p = append(p, picture(s, 4000, tSlice)...)
			return append(p, picture(s, 7000, append([][]byte{tSPS, tPPS}, idrFrags...)...)...)
		}, nil, []string{"7 8 5"}, 0},
		{"parameter sets sent apart are put before the IDR", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, stapA(tSPS, tPPS), tIDR)
			p = append(p, picture(s, 4000, tSlice)...)
			return append(p, picture(s, 7000, idrFrags...)...)
		}, nil, []string{"7 8 5", "1", "7 8 5"}, 0},
		{"a lost fragment drops everything up to the next IDR", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, append([][]byte{stapA(tSPS, tPPS)}, idrFrags...)...)
			p = append(p, picture(s, 4000, tSlice)...) // index 5
			p = append(p, picture(s, 7000, idrFrags...)...)
			p = append(p, picture(s, 10000, tSlice)...)
			p = append(p, picture(s, 13000, idrFrags...)...)
			return append(p, picture(s, 16000, tSlice)...)
		}, map[int]bool{7: true}, []string{"7 8 5", "1", "7 8 5", "1"}, 0},
		{"a lost last packet (the marker) drops its unit, and the next", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, stapA(tSPS, tPPS), tIDR)
			p = append(p, picture(s, 4000, tSlice)...) // index 2: lost
			p = append(p, picture(s, 7000, tSlice)...)
			return append(p, picture(s, 10000, tIDR)...)
		}, map[int]bool{2: true}, []string{"7 8 5", "7 8 5"}, 0},
		{"a unit without its marker ends at the next timestamp", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, stapA(tSPS, tPPS), tIDR)
			p[1].marker = false
			return append(p, picture(s, 4000, tSlice)...)
		}, nil, []string{"7 8 5", "1"}, 0},
		{"malformed payloads are refused and resynchronize", func(s *uint16) []rtpPkt {
			p := picture(s, 1000, stapA(tSPS, tPPS), tIDR)
			p = append(p, picture(s, 4000, []byte{0x78, 0x00, 0x09, 0x41})...) // STAP-A claims 9 bytes
			p = append(p, picture(s, 7000, []byte{0x7c})...)                   // truncated FU-A
			p = append(p, picture(s, 10000, []byte{0x7d, 0x01})...)            // FU-B: unsupported
			p = append(p, picture(s, 13000, []byte{})...)                      // empty
			p = append(p, picture(s, 16000, tSlice)...)
			return append(p, picture(s, 19000, tIDR)...)
		}, nil, []string{"7 8 5", "7 8 5"}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := uint16(65530) // wraps
			var a H264Assembler
			var got []string
			errs := 0
			for i, p := range c.build(&seq) {
				if c.drop[i] {
					continue
				}
				err := a.Push(p.seq, p.ts, p.marker, p.payload, func(au AccessUnit) { got = append(got, describe(au)) })
				if err != nil {
					if !errors.Is(err, ErrH264Packet) && !errors.Is(err, ErrUnsupported) {
						t.Errorf("packet %d: unexpected error %v", i, err)
					}
					errs++
				}
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") || errs != c.errs {
				t.Errorf("units %q with %d errors, want %q with %d", got, errs, c.want, c.errs)
			}
		})
	}
}

// TestH264AssemblerKeepsPayloads: the units out carry the NAL units'
// bytes, copied (the caller reuses its packet buffers).
func TestH264AssemblerKeepsPayloads(t *testing.T) {
	var a H264Assembler
	var got []AccessUnit
	emit := func(au AccessUnit) { got = append(got, au) }
	seq := uint16(1)
	for _, p := range picture(&seq, 9000, append([][]byte{stapA(tSPS, tPPS)}, fuA(tIDR, 700)...)...) {
		buf := append([]byte(nil), p.payload...)
		if err := a.Push(p.seq, p.ts, p.marker, buf, emit); err != nil {
			t.Fatal(err)
		}
		clear(buf)
	}
	if len(got) != 1 || got[0].TS != 9000 || !got[0].IDR || !a.Synced() {
		t.Fatalf("units %v, synced %v", got, a.Synced())
	}
	for i, want := range [][]byte{tSPS, tPPS, tIDR} {
		if !bytes.Equal(got[0].NALUs[i], want) {
			t.Errorf("NAL unit %d: %d bytes, not the original %d", i, len(got[0].NALUs[i]), len(want))
		}
	}
	if !bytes.Equal(a.SPS(), tSPS) || !bytes.Equal(a.PPS(), tPPS) {
		t.Errorf("parameter sets %q %q", a.SPS(), a.PPS())
	}
}

// FuzzH264Assembler: any packets are assembled or refused without a panic,
// and what comes out starts at an IDR with its parameter sets.
func FuzzH264Assembler(f *testing.F) {
	seq := uint16(1)
	var seed []byte
	for _, p := range picture(&seq, 1, append([][]byte{stapA(tSPS, tPPS)}, fuA(tIDR, 500)...)...) {
		seed = append(seed, byte(len(p.payload)>>8), byte(len(p.payload)))
		seed = append(seed, p.payload...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var a H264Assembler
		first := true
		for i := uint16(0); len(data) >= 2; i++ {
			n := min(int(data[0])<<8|int(data[1]), len(data)-2)
			payload := data[2 : 2+n]
			data = data[2+n:]
			_ = a.Push(i, uint32(i/3), i%3 == 2, payload, func(au AccessUnit) {
				if first && (!au.IDR || au.NALUs[0][0]&0x1f != nalSPS) {
					t.Fatalf("first unit %s does not start with the SPS of an IDR unit", describe(au))
				}
				first = false
			})
		}
	})
}
