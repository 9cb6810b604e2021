package signaling_test

import (
	"cmp"
	"fmt"
)

// bitReader reads an H.264 RBSP bit by bit; its first error sticks.
type bitReader struct {
	data []byte
	pos  int
	err  error
}

func (r *bitReader) u(n int) int {
	v := 0
	for range n {
		if r.err != nil || r.pos >= 8*len(r.data) {
			r.err = cmp.Or(r.err, errShortRBSP)
			return 0
		}
		v = v<<1 | int(r.data[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

// ue reads an unsigned exp-Golomb code.
func (r *bitReader) ue() int {
	zeros := 0
	for r.u(1) == 0 {
		if r.err != nil || zeros == 31 {
			r.err = cmp.Or(r.err, errExpGolomb)
			return 0
		}
		zeros++
	}
	return 1<<zeros - 1 + r.u(zeros)
}

// se reads a signed exp-Golomb code.
func (r *bitReader) se() int {
	k := r.ue()
	if k%2 == 1 {
		return (k + 1) / 2
	}
	return -k / 2
}

// unescapeRBSP removes emulation prevention bytes (00 00 03 -> 00 00).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// h264SPSSize parses an SPS NAL unit (H.264 section 7.3.2.1.1) as far as
// the frame cropping fields and returns the cropped picture size.
func h264SPSSize(nal []byte) (w, h int, err error) {
	if len(nal) < 4 || nal[0]&0x1f != 7 {
		return 0, 0, errNotSPS
	}
	r := &bitReader{data: unescapeRBSP(nal[1:])}
	profile := r.u(8)
	r.u(16) // constraint flags, level_idc
	r.ue()  // seq_parameter_set_id
	chroma, separate := 1, false
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			separate = r.u(1) == 1
		}
		r.ue()           // bit_depth_luma_minus8
		r.ue()           // bit_depth_chroma_minus8
		r.u(1)           // qpprime_y_zero_transform_bypass_flag
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			skipScalingLists(r, chroma)
		}
	}
	r.ue() // log2_max_frame_num_minus4
	skipPicOrderCnt(r)
	r.ue() // max_num_ref_frames
	r.u(1) // gaps_in_frame_num_value_allowed_flag
	widthMBs, heightMapUnits := r.ue()+1, r.ue()+1
	frameMBsOnly := r.u(1)
	if frameMBsOnly == 0 {
		r.u(1) // mb_adaptive_frame_field_flag
	}
	r.u(1) // direct_8x8_inference_flag
	var left, right, top, bottom int
	if r.u(1) == 1 { // frame_cropping_flag
		left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil {
		return 0, 0, fmt.Errorf("sps: %w", r.err)
	}
	if chroma > 3 || widthMBs > 1024 || heightMapUnits > 1024 {
		return 0, 0, fmt.Errorf("sps: chroma_format_idc %d, %dx%d macroblocks: %w", chroma, widthMBs, heightMapUnits, errBadSPS)
	}
	cropX, cropY := h264CropUnits(chroma, separate, frameMBsOnly)
	w = 16*widthMBs - cropX*(left+right)
	h = 16*(2-frameMBsOnly)*heightMapUnits - cropY*(top+bottom)
	if w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("sps: cropped to %dx%d: %w", w, h, errBadSPS)
	}
	return w, h, nil
}

// skipScalingLists skips the SPS scaling lists (7.3.2.1.1.1).
func skipScalingLists(r *bitReader, chroma int) {
	lists := 8
	if chroma == 3 {
		lists = 12
	}
	for i := 0; i < lists && r.err == nil; i++ {
		if r.u(1) == 0 { // seq_scaling_list_present_flag
			continue
		}
		size := 16
		if i >= 6 {
			size = 64
		}
		last, next := 8, 8
		for j := 0; j < size && next != 0 && r.err == nil; j++ {
			next = (last + r.se() + 256) % 256
			if next != 0 {
				last = next
			}
		}
	}
}

// skipPicOrderCnt skips pic_order_cnt_type and the fields it brings.
func skipPicOrderCnt(r *bitReader) {
	switch r.ue() {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.u(1) // delta_pic_order_always_zero_flag
		r.se() // offset_for_non_ref_pic
		r.se() // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			r.err = cmp.Or(r.err, errBadSPS)
		}
		for i := 0; i < n && r.err == nil; i++ {
			r.se() // offset_for_ref_frame
		}
	case 2:
	default:
		r.err = cmp.Or(r.err, errBadSPS)
	}
}

// h264CropUnits returns CropUnitX and CropUnitY (equations 7-19 to 7-22).
func h264CropUnits(chroma int, separate bool, frameMBsOnly int) (x, y int) {
	if separate {
		chroma = 0 // ChromaArrayType
	}
	switch chroma {
	case 1: // 4:2:0
		return 2, 2 * (2 - frameMBsOnly)
	case 2: // 4:2:2
		return 2, 2 - frameMBsOnly
	}
	return 1, 2 - frameMBsOnly // monochrome, 4:4:4
}
