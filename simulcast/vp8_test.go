package simulcast

import (
	"bytes"
	"errors"
	"testing"
)

// vp8ParseTests are payloads (descriptor plus at least one payload byte) and
// the descriptor ParseVP8 must return, or its error.
var vp8ParseTests = []struct {
	name    string
	in      []byte
	want    VP8Descriptor
	wantErr error
}{
	{
		name: "no X, keyframe start",
		in:   []byte{0x10, 0x9c, 0x01, 0x2a},
		want: VP8Descriptor{Size: 1, Start: true, Keyframe: true},
	},
	{
		name: "no X, non-reference, partition 3",
		in:   []byte{0x23, 0x00},
		want: VP8Descriptor{Size: 1, NonReference: true, PartitionID: 3},
	},
	{
		name: "no X, start of partition 1 is no keyframe",
		in:   []byte{0x11, 0x00},
		want: VP8Descriptor{Size: 1, Start: true, PartitionID: 1},
	},
	{
		name: "R bits ignored",
		in:   []byte{0x58, 0x01},
		want: VP8Descriptor{Size: 1, Start: true},
	},
	{
		name: "X without fields",
		in:   []byte{0x80, 0x0f, 0x00},
		want: VP8Descriptor{Size: 2},
	},
	{
		name: "I, 7-bit picture id, inter frame",
		in:   []byte{0x90, 0x80, 0x05, 0x01},
		want: VP8Descriptor{Size: 3, Start: true, HasPictureID: true, PictureID: 5},
	},
	{
		name: "I, 15-bit picture id, keyframe",
		in:   []byte{0x90, 0x80, 0x81, 0x23, 0x00},
		want: VP8Descriptor{Size: 4, Start: true, HasPictureID: true, PictureID: 0x0123, LongPictureID: true, Keyframe: true},
	},
	{
		name: "I, L, T, K",
		in:   []byte{0x90, 0xf0, 0xff, 0xff, 0x2a, 0xb5, 0x00},
		want: VP8Descriptor{
			Size: 6, Start: true, HasPictureID: true, PictureID: 0x7fff, LongPictureID: true,
			HasTL0PICIDX: true, TL0PICIDX: 0x2a, HasTID: true, TID: 2, LayerSync: true,
			HasKEYIDX: true, KEYIDX: 0x15, Keyframe: true,
		},
	},
	{
		name: "I 7-bit, L, T without K",
		in:   []byte{0xa0, 0xe0, 0x7f, 0x00, 0x7f, 0x01},
		want: VP8Descriptor{
			Size: 5, NonReference: true, HasPictureID: true, PictureID: 0x7f,
			HasTL0PICIDX: true, HasTID: true, TID: 1, LayerSync: true,
		},
	},
	{
		name: "T without K ignores the KEYIDX bits",
		in:   []byte{0x80, 0x20, 0xdf, 0x00},
		want: VP8Descriptor{Size: 3, HasTID: true, TID: 3},
	},
	{
		name: "K without T ignores the TID and Y bits",
		in:   []byte{0x80, 0x10, 0xe7, 0x00},
		want: VP8Descriptor{Size: 3, HasKEYIDX: true, KEYIDX: 7},
	},
	{
		name: "L only",
		in:   []byte{0x80, 0x40, 0x09, 0x00},
		want: VP8Descriptor{Size: 3, HasTL0PICIDX: true, TL0PICIDX: 9},
	},
	{name: "empty", in: []byte{}, wantErr: ErrVP8Truncated},
	{name: "no payload after first byte", in: []byte{0x10}, wantErr: ErrVP8NoPayload},
	{name: "no extension byte", in: []byte{0x80}, wantErr: ErrVP8Truncated},
	{name: "no picture id", in: []byte{0x80, 0x80}, wantErr: ErrVP8Truncated},
	{name: "half a 15-bit picture id", in: []byte{0x80, 0x80, 0x80}, wantErr: ErrVP8Truncated},
	{name: "no TL0PICIDX", in: []byte{0x80, 0xc0, 0x01}, wantErr: ErrVP8Truncated},
	{name: "no TID/KEYIDX byte", in: []byte{0x80, 0x10}, wantErr: ErrVP8Truncated},
	{name: "no payload after descriptor", in: []byte{0x90, 0x80, 0x05}, wantErr: ErrVP8NoPayload},
}

func TestParseVP8(t *testing.T) {
	for _, tc := range vp8ParseTests {
		t.Run(tc.name, func(t *testing.T) {
			d := VP8Descriptor{Size: 99, PictureID: 7} // must be overwritten
			err := ParseVP8(tc.in, &d)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				tc.want = VP8Descriptor{}
			}
			if d != tc.want {
				t.Fatalf("got  %+v\nwant %+v", d, tc.want)
			}
			if d.FrameStart() != (d.Start && d.PartitionID == 0) {
				t.Fatalf("FrameStart %v", d.FrameStart())
			}
		})
	}
}

// TestParseVP8Truncated parses every prefix of every valid payload: the
// prefixes that end before the first payload byte must fail, and none may
// panic.
func TestParseVP8Truncated(t *testing.T) {
	for _, tc := range vp8ParseTests {
		if tc.wantErr != nil {
			continue
		}
		for n := 0; n <= tc.want.Size; n++ {
			var d VP8Descriptor
			err := ParseVP8(tc.in[:n], &d)
			if !errors.Is(err, ErrVP8Truncated) && !errors.Is(err, ErrVP8NoPayload) {
				t.Errorf("%s: prefix of %d bytes: error %v", tc.name, n, err)
			}
		}
	}
}

func TestVP8Keyframe(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"start, P clear", []byte{0x10, 0x00}, true},
		{"start, P set", []byte{0x10, 0x01}, false},
		{"not a start", []byte{0x00, 0x00}, false},
		{"start of partition 2", []byte{0x12, 0x00}, false},
		{"X with every field", []byte{0x90, 0xf0, 0x80, 0x01, 0x02, 0x03, 0x9c}, true},
		{"X with every field, inter frame", []byte{0x90, 0xf0, 0x80, 0x01, 0x02, 0x03, 0x9d}, false},
	}
	for _, tc := range tests {
		var d VP8Descriptor
		if err := ParseVP8(tc.in, &d); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if d.Keyframe != tc.want {
			t.Errorf("%s: Keyframe %v, want %v", tc.name, d.Keyframe, tc.want)
		}
		if d.Keyframe != IsKeyframe(CodecVP8, tc.in) {
			t.Errorf("%s: Keyframe %v disagrees with IsKeyframe", tc.name, d.Keyframe)
		}
	}
}

// vp8RoundTrip writes the descriptor of payload p followed by the rest of p,
// parses it again and checks it matches, apart from the 15-bit form of the
// PictureID.
func vp8RoundTrip(t *testing.T, p []byte) {
	t.Helper()
	var d, back VP8Descriptor
	if err := ParseVP8(p, &d); err != nil {
		return
	}
	buf := make([]byte, len(p)+1)
	n, err := WriteVP8Descriptor(buf, &d)
	if err != nil {
		t.Fatalf("%x: write: %v", p, err)
	}
	if n > d.Size+1 {
		t.Fatalf("%x: wrote %d bytes for a %d-byte descriptor", p, n, d.Size)
	}
	out := append(buf[:n], p[d.Size:]...)
	if err := ParseVP8(out, &back); err != nil {
		t.Fatalf("%x: parse of written %x: %v", p, out, err)
	}
	if back.Size != n {
		t.Fatalf("%x: wrote %d bytes, parsed size %d", p, n, back.Size)
	}
	want := d
	want.Size, want.LongPictureID = n, d.HasPictureID
	if back != want {
		t.Fatalf("%x: round trip via %x\ngot  %+v\nwant %+v", p, out, back, want)
	}
}

func TestWriteVP8DescriptorRoundTrip(t *testing.T) {
	for _, tc := range vp8ParseTests {
		vp8RoundTrip(t, tc.in)
	}
}

func TestWriteVP8Descriptor(t *testing.T) {
	tests := []struct {
		name string
		d    VP8Descriptor
		want []byte
	}{
		{"no X", VP8Descriptor{Start: true, NonReference: true, PartitionID: 2}, []byte{0x32}},
		{"7-bit picture id written 15-bit", VP8Descriptor{Start: true, HasPictureID: true, PictureID: 5}, []byte{0x90, 0x80, 0x80, 0x05}},
		{"picture id truncated to 15 bits", VP8Descriptor{HasPictureID: true, PictureID: 0xffff, LongPictureID: true}, []byte{0x80, 0x80, 0xff, 0xff}},
		{
			"every field",
			VP8Descriptor{
				Start: true, HasPictureID: true, PictureID: 0x1234, HasTL0PICIDX: true, TL0PICIDX: 0xfe,
				HasTID: true, TID: 2, LayerSync: true, HasKEYIDX: true, KEYIDX: 0x1f,
			},
			[]byte{0x90, 0xf0, 0x92, 0x34, 0xfe, 0xbf},
		},
		{"T without K", VP8Descriptor{HasTID: true, TID: 1, KEYIDX: 3}, []byte{0x80, 0x20, 0x40}},
		{"K without T", VP8Descriptor{HasKEYIDX: true, KEYIDX: 3, TID: 3, LayerSync: true}, []byte{0x80, 0x10, 0x03}},
		{"L only", VP8Descriptor{HasTL0PICIDX: true, TL0PICIDX: 7}, []byte{0x80, 0x40, 0x07}},
	}
	for _, tc := range tests {
		for size := 0; size < len(tc.want); size++ {
			if _, err := WriteVP8Descriptor(make([]byte, size), &tc.d); !errors.Is(err, ErrVP8ShortBuffer) {
				t.Errorf("%s: %d-byte buffer: error %v", tc.name, size, err)
			}
		}
		buf := make([]byte, 16)
		n, err := WriteVP8Descriptor(buf, &tc.d)
		if err != nil || !bytes.Equal(buf[:n], tc.want) {
			t.Errorf("%s: wrote %x, %v; want %x", tc.name, buf[:n], err, tc.want)
		}
	}
}

// vp8Step is one call in a VP8Munger test: Switch if sw is set, otherwise
// Munge(in, drop), expecting ok and, when ok, the output ids.
type vp8Step struct {
	sw   bool
	in   VP8Descriptor
	drop bool
	ok   bool
	pid  uint16
	tl0  uint8
	key  uint8
}

// vp8Pic is an input packet with a 15-bit PictureID, TL0PICIDX, TID 0 and
// KEYIDX.
func vp8Pic(pid uint16, tl0, key uint8) VP8Descriptor {
	return VP8Descriptor{
		Size: 6, Start: true, HasPictureID: true, PictureID: pid, LongPictureID: true,
		HasTL0PICIDX: true, TL0PICIDX: tl0, HasTID: true, HasKEYIDX: true, KEYIDX: key,
	}
}

// vp8Pic7 is vp8Pic with a 7-bit PictureID.
func vp8Pic7(pid uint16, tl0, key uint8) VP8Descriptor {
	d := vp8Pic(pid, tl0, key)
	d.LongPictureID, d.Size = false, 5
	return d
}

// vp8To expects in to be forwarded with the given output ids.
func vp8To(in VP8Descriptor, pid uint16, tl0, key uint8) vp8Step {
	return vp8Step{in: in, ok: true, pid: pid, tl0: tl0, key: key}
}

// vp8Same expects in to be forwarded with its own ids.
func vp8Same(in VP8Descriptor) vp8Step { return vp8To(in, in.PictureID, in.TL0PICIDX, in.KEYIDX) }

// vp8Drop is a packet of an upper temporal layer the caller drops.
func vp8Drop(in VP8Descriptor) vp8Step {
	in.TID = 2
	return vp8Step{in: in, drop: true}
}

// vp8Reject is a packet the caller forwards and the munger must refuse.
func vp8Reject(in VP8Descriptor) vp8Step { return vp8Step{in: in} }

var vp8Switch = vp8Step{sw: true}

var vp8MungerTests = []struct {
	name  string
	steps []vp8Step
}{
	{
		name: "pass-through",
		steps: []vp8Step{
			vp8Same(vp8Pic(100, 5, 3)), vp8Same(vp8Pic(100, 5, 3)), vp8Same(vp8Pic(101, 6, 3)),
			vp8Same(vp8Pic(102, 7, 3)),
		},
	},
	{
		name:  "switch before any output passes through",
		steps: []vp8Step{vp8Switch, vp8Same(vp8Pic(9000, 200, 30)), vp8Same(vp8Pic(9001, 201, 30))},
	},
	{
		name: "drop before any output",
		steps: []vp8Step{
			vp8Drop(vp8Pic(50, 1, 1)), vp8Same(vp8Pic(60, 2, 2)), vp8Same(vp8Pic(61, 3, 2)),
		},
	},
	{
		name: "7-bit wrap continues in 15 bits",
		steps: []vp8Step{
			vp8Same(vp8Pic7(126, 1, 0)), vp8Same(vp8Pic7(127, 2, 0)), vp8To(vp8Pic7(0, 3, 0), 128, 3, 0),
			vp8To(vp8Pic7(1, 4, 0), 129, 4, 0), vp8To(vp8Pic7(127, 2, 0), 127, 2, 0),
			vp8To(vp8Pic7(2, 5, 0), 130, 5, 0),
		},
	},
	{
		name: "15-bit wrap, TL0PICIDX and KEYIDX wrap",
		steps: []vp8Step{
			vp8Same(vp8Pic(32766, 254, 30)), vp8Same(vp8Pic(32767, 255, 31)), vp8Same(vp8Pic(0, 0, 0)),
			vp8Same(vp8Pic(1, 1, 0)), vp8Same(vp8Pic(32767, 255, 31)),
		},
	},
	{
		name: "switch between unrelated streams",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 3, 4)), vp8Same(vp8Pic(11, 4, 4)), vp8Same(vp8Pic(11, 4, 4)),
			vp8Switch,
			vp8To(vp8Pic(5000, 200, 30), 12, 5, 5), vp8To(vp8Pic(5000, 200, 30), 12, 5, 5),
			vp8To(vp8Pic(5001, 201, 30), 13, 6, 5),
			vp8Switch,
			vp8To(vp8Pic(11, 4, 4), 14, 7, 6), vp8To(vp8Pic(12, 5, 5), 15, 8, 7),
		},
	},
	{
		name: "switch continues across the 15-bit and index wraps",
		steps: []vp8Step{
			vp8Same(vp8Pic(32767, 255, 31)), vp8Switch, vp8To(vp8Pic(77, 9, 9), 0, 0, 0),
			vp8To(vp8Pic(78, 10, 9), 1, 1, 0),
		},
	},
	{
		name: "dropped temporal frames leave no gap",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Drop(vp8Pic(11, 1, 0)), vp8Drop(vp8Pic(11, 1, 0)),
			vp8To(vp8Pic(12, 1, 0), 11, 1, 0), vp8Drop(vp8Pic(13, 1, 0)),
			vp8To(vp8Pic(14, 2, 0), 12, 2, 0), vp8To(vp8Pic(14, 2, 0), 12, 2, 0),
			vp8Drop(vp8Pic(15, 2, 0)), vp8Drop(vp8Pic(16, 2, 0)), vp8To(vp8Pic(17, 2, 0), 13, 2, 0),
		},
	},
	{
		name: "late packets keep their frame's output id",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Drop(vp8Pic(11, 1, 0)), vp8To(vp8Pic(12, 1, 0), 11, 1, 0),
			vp8To(vp8Pic(13, 2, 0), 12, 2, 0),
			vp8To(vp8Pic(12, 1, 0), 11, 1, 0), // reordered packet of an earlier frame
			vp8Same(vp8Pic(10, 1, 0)),
			vp8Reject(vp8Pic(11, 1, 0)), // its frame was dropped
			vp8Drop(vp8Pic(11, 1, 0)),
			vp8Drop(vp8Pic(12, 1, 0)), // late drop of a forwarded frame: no shift
			vp8To(vp8Pic(14, 2, 0), 13, 2, 0),
		},
	},
	{
		name: "frames skipped over keep their place",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Same(vp8Pic(13, 1, 0)), vp8Same(vp8Pic(11, 1, 0)),
			vp8Drop(vp8Pic(14, 1, 0)), vp8Drop(vp8Pic(12, 1, 0)), // late drop: no shift
			vp8To(vp8Pic(15, 1, 0), 14, 1, 0), vp8Same(vp8Pic(12, 1, 0)),
		},
	},
	{
		name: "late window",
		steps: []vp8Step{
			vp8Same(vp8Pic(100, 1, 0)), vp8Same(vp8Pic(164, 2, 0)),
			vp8Reject(vp8Pic(100, 1, 0)), vp8Same(vp8Pic(101, 1, 0)), vp8Same(vp8Pic(163, 1, 0)),
			vp8Same(vp8Pic(16000, 3, 0)), vp8Reject(vp8Pic(164, 2, 0)),
		},
	},
	{
		name: "7-bit late window",
		steps: []vp8Step{
			vp8Same(vp8Pic7(100, 1, 0)), vp8To(vp8Pic7(35, 2, 0), 163, 2, 0),
			vp8Same(vp8Pic7(101, 1, 0)), vp8Same(vp8Pic7(100, 1, 0)), // 63 frames back
			vp8To(vp8Pic7(36, 2, 0), 164, 2, 0), vp8Reject(vp8Pic7(100, 1, 0)), // 64 back
		},
	},
	{
		name: "switch after drops",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Drop(vp8Pic(11, 1, 0)), vp8To(vp8Pic(12, 1, 0), 11, 1, 0),
			vp8Drop(vp8Pic(13, 1, 0)), vp8Switch, vp8To(vp8Pic(500, 90, 7), 12, 2, 1),
			vp8Drop(vp8Pic(501, 90, 7)), vp8To(vp8Pic(502, 90, 7), 13, 2, 1),
		},
	},
	{
		name: "packets from before the switch frame are refused",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Same(vp8Pic(11, 1, 0)), vp8Switch,
			vp8To(vp8Pic(300, 50, 5), 12, 2, 1), vp8Reject(vp8Pic(299, 49, 5)),
			vp8Reject(vp8Pic(11, 1, 0)), vp8To(vp8Pic(301, 50, 5), 13, 2, 1),
		},
	},
	{
		name: "a late frame of the new stream never maps to one of the old",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Same(vp8Pic(11, 1, 0)), vp8Switch,
			vp8To(vp8Pic(12, 7, 0), 12, 2, 1), vp8Reject(vp8Pic(11, 6, 0)),
		},
	},
	{
		name: "picture id width changing without a switch",
		steps: []vp8Step{
			vp8Same(vp8Pic(200, 1, 0)), vp8To(vp8Pic7(201&0x7f, 1, 0), 201, 1, 0),
			vp8Same(vp8Pic(202, 1, 0)), vp8To(vp8Pic7(200&0x7f, 1, 0), 200, 1, 0),
		},
	},
	{
		name: "drops after a switch before the switch frame are ignored",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 1, 0)), vp8Switch, vp8Drop(vp8Pic(700, 5, 0)),
			vp8To(vp8Pic(701, 6, 0), 11, 2, 1), vp8To(vp8Pic(702, 6, 0), 12, 2, 1),
		},
	},
	{
		name: "7-bit stream switching to 15-bit and back",
		steps: []vp8Step{
			vp8Same(vp8Pic7(126, 1, 0)), vp8Same(vp8Pic7(127, 2, 0)), vp8To(vp8Pic7(0, 3, 0), 128, 3, 0),
			vp8Switch,
			vp8To(vp8Pic(20000, 100, 9), 129, 4, 1), vp8To(vp8Pic(20001, 101, 9), 130, 5, 1),
			vp8Drop(vp8Pic(20002, 101, 9)), vp8To(vp8Pic(20003, 102, 9), 131, 6, 1),
			vp8Switch,
			vp8To(vp8Pic7(127, 0, 2), 132, 7, 2), vp8To(vp8Pic7(0, 1, 2), 133, 8, 2),
			vp8To(vp8Pic7(127, 0, 2), 132, 7, 2),
		},
	},
	{
		name: "late indices do not move the switch point back",
		steps: []vp8Step{
			vp8Same(vp8Pic(10, 10, 3)), vp8Same(vp8Pic(11, 11, 4)), vp8Same(vp8Pic(10, 10, 3)),
			vp8Switch, vp8To(vp8Pic(90, 70, 20), 12, 12, 5),
		},
	},
	{
		name: "packets without picture id",
		steps: []vp8Step{
			vp8Same(VP8Descriptor{Size: 1, Start: true}),
			vp8Same(vp8Pic(10, 4, 2)),
			vp8Same(VP8Descriptor{Size: 1}),
			vp8Switch,
			vp8To(VP8Descriptor{Size: 3, HasTL0PICIDX: true, TL0PICIDX: 99}, 0, 5, 0),
			vp8To(vp8Pic(600, 99, 8), 11, 5, 3),
			vp8Drop(VP8Descriptor{Size: 1}),
			vp8To(VP8Descriptor{Size: 3, HasKEYIDX: true, KEYIDX: 9}, 0, 0, 4),
		},
	},
}

func TestVP8Munger(t *testing.T) {
	for _, tc := range vp8MungerTests {
		t.Run(tc.name, func(t *testing.T) {
			var m VP8Munger
			for i, s := range tc.steps {
				if s.sw {
					m.Switch()
					continue
				}
				out, ok := m.Munge(&s.in, s.drop)
				if ok != s.ok {
					t.Fatalf("step %d (%+v, drop %v): ok %v, want %v", i, s.in, s.drop, ok, s.ok)
				}
				if !ok {
					continue
				}
				want := s.in
				if want.HasPictureID {
					want.PictureID, want.LongPictureID = s.pid, true
				}
				if want.HasTL0PICIDX {
					want.TL0PICIDX = s.tl0
				}
				if want.HasKEYIDX {
					want.KEYIDX = s.key
				}
				if out != want {
					t.Fatalf("step %d: in %+v\ngot  %+v\nwant %+v", i, s.in, out, want)
				}
			}
		})
	}
}

// TestVP8MungerTemporalStream forwards an L1T3 stream (two packets a frame,
// TID pattern 0 2 1 2) from three layers in turn, dropping TID 2 frames on
// the first and third, with frames of the second arriving in pairs swapped:
// the output picture ids of forwarded frames must be consecutive.
func TestVP8MungerTemporalStream(t *testing.T) {
	var m VP8Munger
	next := uint16(0)
	first := true
	streams := []struct {
		start    uint16
		long     bool
		dropTID2 bool
		swap     bool
	}{
		{start: 100, long: false, dropTID2: true},
		{start: 32700, long: true, swap: true},
		{start: 3, long: false, dropTID2: true},
	}
	for si, st := range streams {
		if si > 0 {
			m.Switch()
		}
		const frames = 200
		order := make([]int, frames)
		for i := range order {
			order[i] = i
			if st.swap && i%2 == 0 && i > 0 && i+1 < frames {
				order[i] = i + 1
			} else if st.swap && i%2 == 1 && i > 1 {
				order[i] = i - 1
			}
		}
		outOf := map[int]uint16{}
		for _, f := range order {
			tid := []uint8{0, 2, 1, 2}[f%4]
			mask := uint16(vp8PicMask15)
			if !st.long {
				mask = vp8PicMask7
			}
			d := VP8Descriptor{
				HasPictureID: true, PictureID: (st.start + uint16(f)) & mask, LongPictureID: st.long,
				HasTID: true, TID: tid, HasTL0PICIDX: true, TL0PICIDX: uint8(f / 4),
			}
			drop := st.dropTID2 && tid == 2
			for p := 0; p < 2; p++ {
				d.Start = p == 0
				out, ok := m.Munge(&d, drop)
				if ok == drop {
					t.Fatalf("stream %d frame %d packet %d: ok %v with drop %v", si, f, p, ok, drop)
				}
				if !ok {
					continue
				}
				if prev, seen := outOf[f]; seen {
					if out.PictureID != prev {
						t.Fatalf("stream %d frame %d: second packet id %d, first %d", si, f, out.PictureID, prev)
					}
					continue
				}
				outOf[f] = out.PictureID
			}
		}
		for f := 0; f < frames; f++ {
			id, ok := outOf[f]
			if !ok {
				continue
			}
			if !first && id != next {
				t.Fatalf("stream %d frame %d: output id %d, want %d", si, f, id, next)
			}
			first = false
			next = (id + 1) & vp8PicMask15
		}
	}
}

// TestVP8MungerSent checks which packets Sent reports as belonging to a
// frame packets were forwarded of: not those of dropped frames, of frames
// skipped over (lost) until a packet of theirs is forwarded, of frames
// before a Switch or too old to remember, nor packets without a PictureID.
func TestVP8MungerSent(t *testing.T) {
	type step struct {
		in   VP8Descriptor
		drop bool // munge it as dropped (true) or forwarded; skip: only ask
		skip bool
		sw   bool
		want bool // Sent, asked before munging it
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"forwarded, dropped and lost frames", []step{
			{in: vp8Pic(100, 1, 0)},
			{in: vp8Pic(100, 1, 0), want: true}, // its second packet
			{in: vp8Pic(101, 1, 0), drop: true}, // dropped
			{in: vp8Pic(101, 1, 0), skip: true}, // still dropped
			{in: vp8Pic(104, 1, 0)},             // 102 and 103 lost
			{in: vp8Pic(102, 1, 0), skip: true}, // lost: nothing sent
			{in: vp8Pic(103, 1, 0)},             // a late packet of a lost frame, forwarded
			{in: vp8Pic(103, 1, 0), skip: true, want: true},
			{in: vp8Pic(105, 1, 0), skip: true},      // not seen yet
			{in: VP8Descriptor{Size: 1}, skip: true}, // no PictureID
		}},
		{"frames before a switch", []step{
			{in: vp8Pic(7, 1, 0)},
			{sw: true},
			{in: vp8Pic(7, 1, 0), skip: true},
			{in: vp8Pic(500, 1, 0)},
			{in: vp8Pic(7, 1, 0), skip: true},
			{in: vp8Pic(500, 1, 0), skip: true, want: true},
		}},
		{"frames too old", []step{
			{in: vp8Pic(1, 1, 0)},
			{in: vp8Pic(1+vp8Window, 1, 0)},
			{in: vp8Pic(1, 1, 0), skip: true},
			{in: vp8Pic(2+vp8Window, 1, 0), skip: true},
			{in: vp8Pic(1+vp8Window, 1, 0), skip: true, want: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m VP8Munger
			for i, st := range tt.steps {
				if st.sw {
					m.Switch()
					continue
				}
				if got := m.Sent(&st.in); got != st.want {
					t.Fatalf("step %d (picture id %d): Sent %v, want %v", i, st.in.PictureID, got, st.want)
				}
				if !st.skip {
					m.Munge(&st.in, st.drop)
				}
			}
		})
	}
}

// vp8BenchPacket is a typical simulcast VP8 packet start: X, I (15-bit), L,
// T, and some payload.
var vp8BenchPacket = []byte{0x90, 0xe0, 0x80, 0x00, 0x00, 0x40, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x00}

// vp8ForwardOne parses, munges and writes one packet into out, the hot path
// of a VP8 DownTrack.
func vp8ForwardOne(m *VP8Munger, d *VP8Descriptor, in, out []byte, drop bool) int {
	if ParseVP8(in, d) != nil {
		return 0
	}
	md, ok := m.Munge(d, drop)
	if !ok {
		return 0
	}
	n, err := WriteVP8Descriptor(out, &md)
	if err != nil {
		return 0
	}
	return n + copy(out[n:], in[d.Size:])
}

func TestVP8ForwardAllocs(t *testing.T) {
	var m VP8Munger
	var d VP8Descriptor
	in := bytes.Clone(vp8BenchPacket)
	out := make([]byte, 64)
	pid := uint16(0)
	allocs := testing.AllocsPerRun(1000, func() {
		pid++
		in[2], in[3] = 0x80|byte(pid>>8)&0x7f, byte(pid)
		if vp8ForwardOne(&m, &d, in, out, pid%2 == 1) == 0 && pid%2 == 0 {
			t.Fatal("not forwarded")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}

func BenchmarkVP8Munge(b *testing.B) {
	var m VP8Munger
	var d VP8Descriptor
	in := bytes.Clone(vp8BenchPacket)
	out := make([]byte, 64)
	b.ReportAllocs()
	pid := uint16(0)
	for b.Loop() {
		pid++
		in[2], in[3] = 0x80|byte(pid>>9)&0x7f, byte(pid>>1) // two packets a frame
		vp8ForwardOne(&m, &d, in, out, pid&6 == 2)
	}
}

// FuzzParseVP8 parses arbitrary payloads: no input may panic, and a parsed
// descriptor written back and parsed again must give the same fields.
func FuzzParseVP8(f *testing.F) {
	for _, tc := range vp8ParseTests {
		f.Add(tc.in)
	}
	f.Add(vp8BenchPacket)
	f.Fuzz(func(t *testing.T, payload []byte) {
		orig := bytes.Clone(payload)
		var d VP8Descriptor
		err := ParseVP8(payload, &d)
		if !bytes.Equal(payload, orig) {
			t.Fatal("ParseVP8 modified the payload")
		}
		if err != nil {
			if d != (VP8Descriptor{}) {
				t.Fatalf("descriptor %+v left after error %v", d, err)
			}
			return
		}
		if d.Size < 1 || d.Size > 6 || d.Size >= len(payload) {
			t.Fatalf("size %d of a %d-byte payload", d.Size, len(payload))
		}
		if d.Keyframe != IsKeyframe(CodecVP8, payload) {
			t.Fatalf("Keyframe %v disagrees with IsKeyframe", d.Keyframe)
		}
		vp8RoundTrip(t, payload)
	})
}
