package simulcast

import (
	"bytes"
	"errors"
	"testing"
)

// TestFault11WalkH264 checks the one H.264 NAL walker that keyframe detection and
// the HLS egress share: single NAL units, STAP-A and FU-A, and malformed
// payloads (issue 12, item 11).
func TestFault11WalkH264(t *testing.T) {
	idr := []byte{0x65, 0x88, 0x84}
	sps := []byte{0x67, 0x42, 0xe0}
	pps := []byte{0x68, 0xce}
	stap := func(units ...[]byte) []byte {
		out := []byte{0x78}
		for _, u := range units {
			out = append(out, byte(len(u)>>8), byte(len(u)))
			out = append(out, u...)
		}
		return out
	}
	tests := []struct {
		name    string
		payload []byte
		want    []H264NALU
		err     error
		key     bool
	}{
		{name: "single IDR", payload: idr, want: []H264NALU{{Type: 5, Data: idr}}, key: true},
		{name: "single slice", payload: []byte{0x41, 0x9a}, want: []H264NALU{{Type: 1, Data: []byte{0x41, 0x9a}}}},
		{name: "single SPS", payload: sps, want: []H264NALU{{Type: 7, Data: sps}}, key: true},
		{
			name: "STAP-A SPS PPS IDR", payload: stap(sps, pps, idr),
			want: []H264NALU{{Type: 7, Data: sps}, {Type: 8, Data: pps}, {Type: 5, Data: idr}}, key: true,
		},
		{name: "STAP-A PPS only", payload: stap(pps), want: []H264NALU{{Type: 8, Data: pps}}},
		{
			name: "STAP-A oversized unit", payload: []byte{0x78, 0x00, 0x02, 0x68, 0xce, 0xff, 0xff, 0x65},
			want: []H264NALU{{Type: 8, Data: pps}}, err: ErrH264Truncated,
		},
		{name: "STAP-A truncated size", payload: append(stap(pps), 0x00), want: []H264NALU{{Type: 8, Data: pps}}, err: ErrH264Truncated},
		{name: "STAP-A empty unit", payload: []byte{0x78, 0x00, 0x00, 0x65}, err: ErrH264EmptyNALU},
		{
			name: "FU-A start of an IDR", payload: []byte{0x7c, 0x85, 1, 2},
			want: []H264NALU{{Type: 5, Data: []byte{1, 2}, Fragment: true, Header: 0x65, Start: true}}, key: true,
		},
		{
			name: "FU-A middle of an IDR", payload: []byte{0x7c, 0x05, 3},
			want: []H264NALU{{Type: 5, Data: []byte{3}, Fragment: true, Header: 0x65}},
		},
		{
			name: "FU-A end of a slice", payload: []byte{0x5c, 0x41, 4},
			want: []H264NALU{{Type: 1, Data: []byte{4}, Fragment: true, Header: 0x41, End: true}},
		},
		{name: "FU-A truncated", payload: []byte{0x7c}, err: ErrH264Truncated},
		{name: "empty", payload: nil, err: ErrH264Truncated},
		{name: "STAP-B", payload: []byte{0x79, 0, 0}, err: ErrH264Unsupported},
		{name: "FU-B", payload: []byte{0x7d, 0x85}, err: ErrH264Unsupported},
		{name: "type 0", payload: []byte{0x00, 1}, err: ErrH264Unsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []H264NALU
			err := WalkH264(tt.payload, func(u H264NALU) bool { got = append(got, u); return true })
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("error %v, want %v", err, tt.err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d units %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i, u := range got {
				w := tt.want[i]
				if u.Type != w.Type || !bytes.Equal(u.Data, w.Data) || u.Fragment != w.Fragment || u.Header != w.Header || u.Start != w.Start || u.End != w.End {
					t.Errorf("unit %d: %+v, want %+v", i, u, w)
				}
			}
			if k := IsKeyframe(CodecH264, tt.payload); k != tt.key {
				t.Errorf("keyframe %v, want %v", k, tt.key)
			}
		})
	}
}

// TestFault11WalkH264Stops checks that the walk ends when fn returns false.
func TestFault11WalkH264Stops(t *testing.T) {
	n := 0
	err := WalkH264([]byte{0x78, 0, 1, 0x67, 0, 1, 0x68, 0, 1, 0x65}, func(H264NALU) bool { n++; return n < 2 })
	if err != nil || n != 2 {
		t.Errorf("%d units walked (%v), want 2", n, err)
	}
}

// TestFault11WalkH264Allocs checks that walking (and so keyframe detection on
// the forwarding path) does not allocate.
func TestFault11WalkH264Allocs(t *testing.T) {
	p := []byte{0x78, 0, 3, 0x67, 0x42, 0xe0, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x84}
	if n := testing.AllocsPerRun(100, func() { IsKeyframe(CodecH264, p) }); n != 0 {
		t.Errorf("%v allocations per keyframe check", n)
	}
}
