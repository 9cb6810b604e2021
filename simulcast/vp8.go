package simulcast

import "errors"

// Errors of the VP8 payload descriptor parser and writer.
var (
	// ErrVP8Truncated is returned by ParseVP8 when the payload ends inside
	// the payload descriptor.
	ErrVP8Truncated = errors.New("simulcast: VP8 payload descriptor truncated")
	// ErrVP8NoPayload is returned by ParseVP8 when no VP8 payload byte
	// follows the payload descriptor.
	ErrVP8NoPayload = errors.New("simulcast: VP8 payload descriptor not followed by a payload")
	// ErrVP8ShortBuffer is returned by WriteVP8Descriptor when the
	// destination cannot hold the descriptor.
	ErrVP8ShortBuffer = errors.New("simulcast: buffer too small for a VP8 payload descriptor")
)

// Bits of the VP8 payload descriptor (RFC 7741 section 4.2).
const (
	vp8BitX   = 0x80 // first byte: extension byte present
	vp8BitN   = 0x20 // first byte: non-reference frame
	vp8BitS   = 0x10 // first byte: start of a partition
	vp8PIDMax = 0x07 // first byte: partition index
	vp8BitI   = 0x80 // extension byte: PictureID present
	vp8BitL   = 0x40 // extension byte: TL0PICIDX present
	vp8BitT   = 0x20 // extension byte: TID and Y present
	vp8BitK   = 0x10 // extension byte: KEYIDX present
	vp8BitM   = 0x80 // first PictureID byte: 15-bit PictureID
	vp8BitY   = 0x20 // TID/Y/KEYIDX byte: layer sync
	vp8BitP   = 0x01 // first VP8 payload header byte: inter frame

	vp8PicMask15 = 0x7fff // 15-bit PictureID
	vp8PicMask7  = 0x7f   // 7-bit PictureID
	vp8KeyIdxMax = 0x1f   // KEYIDX is 5 bits
)

// VP8Descriptor is the parsed VP8 payload descriptor of one RTP packet
// (RFC 7741 section 4.2). Fields whose Has flag is false are zero.
type VP8Descriptor struct {
	Size          int    // bytes of descriptor before the VP8 payload
	NonReference  bool   // N: the frame is not used as a reference
	Start         bool   // S: the packet starts a partition
	PartitionID   uint8  // PID: partition index, 0 to 7
	HasPictureID  bool   // I: PictureID present
	PictureID     uint16 // 7 or 15 bits, see LongPictureID
	LongPictureID bool   // M: PictureID in the 15-bit form
	HasTL0PICIDX  bool   // L: TL0PICIDX present
	TL0PICIDX     uint8  // index of the last temporal layer 0 frame
	HasTID        bool   // T: TID and LayerSync present
	TID           uint8  // temporal layer index, 0 to 3
	LayerSync     bool   // Y: frame depends only on temporal layer 0
	HasKEYIDX     bool   // K: KEYIDX present
	KEYIDX        uint8  // 5-bit keyframe index
	Keyframe      bool   // first packet of a keyframe
}

// FrameStart reports whether the packet is the first one of a frame: the
// start of partition 0.
func (d *VP8Descriptor) FrameStart() bool { return d.Start && d.PartitionID == 0 }

// ParseVP8 parses the payload descriptor at the start of a VP8 RTP payload
// into d. The descriptor must be followed by at least one payload byte, which
// decides Keyframe on a frame start. On error d is zeroed. It does not
// allocate and accepts any input.
func ParseVP8(payload []byte, d *VP8Descriptor) error {
	*d = VP8Descriptor{}
	if len(payload) == 0 {
		return ErrVP8Truncated
	}
	b := payload[0]
	d.NonReference = b&vp8BitN != 0
	d.Start = b&vp8BitS != 0
	d.PartitionID = b & vp8PIDMax
	size := 1
	if b&vp8BitX != 0 {
		n, err := parseVP8Extension(payload, d)
		if err != nil {
			*d = VP8Descriptor{}
			return err
		}
		size = n
	}
	if len(payload) <= size {
		*d = VP8Descriptor{}
		return ErrVP8NoPayload
	}
	d.Size = size
	d.Keyframe = d.FrameStart() && payload[size]&vp8BitP == 0
	return nil
}

// parseVP8Extension parses the extension byte at p[1] and the optional fields
// it announces, and returns the descriptor size.
func parseVP8Extension(p []byte, d *VP8Descriptor) (int, error) {
	if len(p) < 2 {
		return 0, ErrVP8Truncated
	}
	x, i := p[1], 2
	if x&vp8BitI != 0 {
		if len(p) <= i {
			return 0, ErrVP8Truncated
		}
		d.HasPictureID = true
		if p[i]&vp8BitM == 0 {
			d.PictureID = uint16(p[i])
			i++
		} else {
			if len(p) <= i+1 {
				return 0, ErrVP8Truncated
			}
			d.LongPictureID = true
			d.PictureID = uint16(p[i]&^vp8BitM)<<8 | uint16(p[i+1])
			i += 2
		}
	}
	if x&vp8BitL != 0 {
		if len(p) <= i {
			return 0, ErrVP8Truncated
		}
		d.HasTL0PICIDX, d.TL0PICIDX = true, p[i]
		i++
	}
	if x&(vp8BitT|vp8BitK) != 0 {
		if len(p) <= i {
			return 0, ErrVP8Truncated
		}
		if x&vp8BitT != 0 {
			d.HasTID, d.TID, d.LayerSync = true, p[i]>>6, p[i]&vp8BitY != 0
		}
		if x&vp8BitK != 0 {
			d.HasKEYIDX, d.KEYIDX = true, p[i]&vp8KeyIdxMax
		}
		i++
	}
	return i, nil
}

// vp8DescriptorSize is the length WriteVP8Descriptor writes for d.
func vp8DescriptorSize(d *VP8Descriptor) int {
	if !d.HasPictureID && !d.HasTL0PICIDX && !d.HasTID && !d.HasKEYIDX {
		return 1
	}
	n := 2
	if d.HasPictureID {
		n += 2
	}
	if d.HasTL0PICIDX {
		n++
	}
	if d.HasTID || d.HasKEYIDX {
		n++
	}
	return n
}

// WriteVP8Descriptor writes the payload descriptor of d into dst and returns
// its length, which may differ from d.Size: a PictureID is always written in
// the 15-bit form. Size, LongPictureID and Keyframe are not read; values are
// truncated to their field widths. It does not allocate.
func WriteVP8Descriptor(dst []byte, d *VP8Descriptor) (int, error) {
	n := vp8DescriptorSize(d)
	if len(dst) < n {
		return 0, ErrVP8ShortBuffer
	}
	b := d.PartitionID & vp8PIDMax
	if d.NonReference {
		b |= vp8BitN
	}
	if d.Start {
		b |= vp8BitS
	}
	if n == 1 {
		dst[0] = b
		return 1, nil
	}
	dst[0] = b | vp8BitX
	var x byte
	i := 2
	if d.HasPictureID {
		x |= vp8BitI
		dst[i] = vp8BitM | byte(d.PictureID>>8)&^vp8BitM
		dst[i+1] = byte(d.PictureID)
		i += 2
	}
	if d.HasTL0PICIDX {
		x |= vp8BitL
		dst[i] = d.TL0PICIDX
		i++
	}
	if d.HasTID || d.HasKEYIDX {
		dst[i] = 0
		if d.HasTID {
			x |= vp8BitT
			dst[i] = d.TID << 6
			if d.LayerSync {
				dst[i] |= vp8BitY
			}
		}
		if d.HasKEYIDX {
			x |= vp8BitK
			dst[i] |= d.KEYIDX & vp8KeyIdxMax
		}
		i++
	}
	dst[1] = x
	return i, nil
}

// vp8Window is how many recent input frames a VP8Munger remembers, so that
// late packets of those frames keep their output PictureID.
const vp8Window = 64

// vp8ExtStart is the extended PictureID of the first frame a VP8Munger sees
// (modulo 2^15), far enough from zero that late packets never go below it.
const vp8ExtStart = 1 << 32

// vp8Frame maps one recent input frame to its output PictureID.
type vp8Frame struct {
	ext     uint64 // extended input PictureID; slot unused if it differs
	out     uint16 // output PictureID (15 bits)
	dropped bool   // the frame was dropped and its output id reused
	sent    bool   // a packet of the frame was forwarded
}

// vp8Index rewrites one small wrapping index (TL0PICIDX or KEYIDX) by a
// constant offset per input stream.
type vp8Index struct {
	offset uint8
	last   uint8 // newest output value
	live   bool  // offset set for the current input stream
	have   bool  // some value was output
}

// munge returns the output value of in, an index of width mask+1, and
// rebases the offset on the first value of a new input stream.
func (x *vp8Index) munge(in, mask uint8) uint8 {
	if !x.live {
		x.offset = 0
		if x.have {
			x.offset = x.last + 1 - in
		}
		x.live, x.have = true, true
		x.last = (in + x.offset) & mask
		return x.last
	}
	out := (in + x.offset) & mask
	if d := (out - x.last) & mask; d <= mask>>1 {
		x.last = out
	}
	return out
}

// VP8Munger rewrites the PictureID, TL0PICIDX and KEYIDX of one forwarded
// VP8 stream, so a subscriber sees them continuous across layer switches and
// dropped temporal-layer frames. Output PictureIDs are always 15 bits. The
// zero value is ready to use; it must be used from one goroutine.
type VP8Munger struct {
	picLive bool   // input PictureIDs of the current stream are mapped
	picHave bool   // some PictureID was output
	picMask uint16 // width of the current stream's input PictureIDs
	highest uint64 // extended input PictureID of the newest frame
	shift   uint64 // output PictureID = (extended input + shift) mod 2^15
	tl0     vp8Index
	keyIdx  vp8Index
	frames  [vp8Window]vp8Frame // last: the fields above share a cache line
}

// Switch tells the munger that the next frame given to Munge comes from
// another input stream (a layer switch, or a resume after a pause) and is a
// keyframe: its PictureID, TL0PICIDX and KEYIDX continue one past the last
// ones output, whatever their input values. Late packets of earlier frames
// are dropped from then on.
func (m *VP8Munger) Switch() {
	m.picLive, m.tl0.live, m.keyIdx.live = false, false, false
}

// Munge returns the descriptor to send a packet with, or ok=false if it must
// not be sent. It is called for every packet of the forwarded stream in
// arrival order, with drop set for packets the caller drops (frames of an
// upper temporal layer): those always return ok=false, and when they start a
// new frame, later frames are shifted down so that the output PictureIDs
// have no gap. Packets of one frame get one output PictureID; late packets
// of a recent frame get the id that frame had, and older ones, or ones of a
// frame that was dropped or came before the last Switch, return ok=false.
// TL0PICIDX and KEYIDX are shifted by a constant per input stream. The
// first frame ever keeps its values. out.Size is still d.Size.
func (m *VP8Munger) Munge(d *VP8Descriptor, drop bool) (out VP8Descriptor, ok bool) {
	if drop {
		if d.HasPictureID && m.picLive {
			if ext := m.extend(d); ext > m.highest {
				m.advance(ext, true)
			}
		}
		return VP8Descriptor{}, false
	}
	out = *d
	if d.HasPictureID {
		pid, ok := m.mungePictureID(d)
		if !ok {
			return VP8Descriptor{}, false
		}
		out.PictureID, out.LongPictureID = pid, true
	}
	if d.HasTL0PICIDX {
		out.TL0PICIDX = m.tl0.munge(d.TL0PICIDX, 0xff)
	}
	if d.HasKEYIDX {
		out.KEYIDX = m.keyIdx.munge(d.KEYIDX, vp8KeyIdxMax)
	}
	return out, true
}

// mungePictureID returns the output PictureID of a forwarded packet.
func (m *VP8Munger) mungePictureID(d *VP8Descriptor) (uint16, bool) {
	if !m.picLive {
		out := m.rebase(d)
		m.frames[m.highest%vp8Window].sent = true
		return out, true
	}
	ext := m.extend(d)
	if ext > m.highest {
		m.advance(ext, false)
		m.frames[ext%vp8Window].sent = true
		return m.outID(ext), true
	}
	f := m.recent(ext)
	if f == nil || f.dropped {
		return 0, false
	}
	f.sent = true
	return f.out, true
}

// recent returns the remembered frame with extended PictureID ext, or nil.
func (m *VP8Munger) recent(ext uint64) *vp8Frame {
	if ext > m.highest || m.highest-ext >= vp8Window {
		return nil
	}
	if f := &m.frames[ext%vp8Window]; f.ext == ext {
		return f
	}
	return nil
}

// Sent reports whether d is a packet of a recent frame of the current input
// stream that packets were forwarded of. The rest of such a frame must be
// forwarded whatever the temporal layers forwarded now: a receiver cannot
// assemble a frame a packet is missing from.
func (m *VP8Munger) Sent(d *VP8Descriptor) bool {
	if !d.HasPictureID || !m.picLive {
		return false
	}
	f := m.recent(m.extend(d))
	return f != nil && f.sent
}

// rebase maps the first frame of a new input stream to the PictureID after
// the last one output (its own PictureID for the first frame ever). Its
// extended id is put more than vp8Window past the previous stream's, so that
// no remembered frame of that stream can match a packet of the new one.
func (m *VP8Munger) rebase(d *VP8Descriptor) uint16 {
	base := uint64(vp8ExtStart)
	out := d.PictureID & vp8PicMask15
	if m.picHave {
		base = m.highest + vp8Window + 1
		out = (m.outID(m.highest) + 1) & vp8PicMask15
	}
	ext := base + uint64((d.PictureID-uint16(base))&vp8PicMask15)
	m.picMask = vp8PicMask7
	if d.LongPictureID {
		m.picMask = vp8PicMask15
	}
	m.shift = uint64(out) - ext
	m.highest = ext
	m.frames[ext%vp8Window] = vp8Frame{ext: ext, out: out}
	m.picLive, m.picHave = true, true
	return out
}

// extend unwraps the packet's PictureID into an extended id near the newest
// one, using the narrower of the stream's and the packet's widths.
func (m *VP8Munger) extend(d *VP8Descriptor) uint64 {
	mask := m.picMask
	if !d.LongPictureID {
		mask = vp8PicMask7
	}
	diff := uint64((d.PictureID - uint16(m.highest)) & mask)
	if diff > uint64(mask>>1) {
		return m.highest - (uint64(mask) + 1 - diff)
	}
	return m.highest + diff
}

// advance records a frame newer than the newest one: frames skipped over
// (lost or reordered) keep the output ids they would have had, and a dropped
// frame shifts later output ids down by one.
func (m *VP8Munger) advance(ext uint64, dropped bool) {
	from := m.highest + 1
	if ext-from >= vp8Window {
		from = ext - (vp8Window - 1)
	}
	for e := from; e < ext; e++ {
		m.frames[e%vp8Window] = vp8Frame{ext: e, out: m.outID(e)}
	}
	m.frames[ext%vp8Window] = vp8Frame{ext: ext, out: m.outID(ext), dropped: dropped}
	if dropped {
		m.shift--
	}
	m.highest = ext
}

// outID is the output PictureID of extended input id ext under the current
// shift.
func (m *VP8Munger) outID(ext uint64) uint16 { return uint16(ext+m.shift) & vp8PicMask15 }
