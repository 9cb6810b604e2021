package simulcast

import "errors"

// H.264 NAL unit types (ITU-T H.264 table 7-1, RFC 6184 for 24 to 29)
// that the SFU and the egress look at.
const (
	H264NALIDR   = 5  // slice of an IDR picture: a keyframe
	H264NALSPS   = 7  // sequence parameter set
	H264NALPPS   = 8  // picture parameter set
	H264NALSTAPA = 24 // single-time aggregation packet
	H264NALFUA   = 28 // fragmentation unit
)

// Errors of WalkH264: the payload is not a well-formed RTP payload of
// packetization mode 1 (RFC 6184).
var (
	ErrH264Truncated   = errors.New("simulcast: H.264 RTP payload truncated")
	ErrH264EmptyNALU   = errors.New("simulcast: empty NAL unit in an H.264 STAP-A")
	ErrH264Unsupported = errors.New("simulcast: unsupported H.264 packetization")
)

// H264NALU is one NAL unit found in an H.264 RTP payload, or one
// fragment of one.
type H264NALU struct {
	// Type is the NAL unit type (for a fragment, of the fragmented unit).
	Type uint8
	// Data is the NAL unit, its header byte first; for a fragment, the
	// fragment's bytes after the FU indicator and FU header.
	Data []byte
	// Fragment marks an FU-A fragment. Header is then the fragmented
	// unit's header byte (the FU indicator's F and NRI bits, the FU
	// header's type), and Start and End mark its first and last fragment.
	Fragment   bool
	Header     byte
	Start, End bool
}

// WalkH264 calls fn with each NAL unit of an H.264 RTP payload (RFC 6184,
// packetization mode 1), in order, until fn returns false: the payload
// itself for a single NAL unit, each unit of a STAP-A, the fragment of an
// FU-A. A malformed or unsupported payload returns an error, once the
// units before the fault were handed to fn. It does not allocate; Data
// points into p.
func WalkH264(p []byte, fn func(H264NALU) bool) error {
	if len(p) == 0 {
		return ErrH264Truncated
	}
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		fn(H264NALU{Type: t, Data: p})
		return nil
	case t == H264NALSTAPA:
		return walkSTAPA(p[1:], fn)
	case t == H264NALFUA:
		if len(p) < 2 {
			return ErrH264Truncated
		}
		fn(H264NALU{
			Type: p[1] & 0x1f, Data: p[2:], Fragment: true, Header: p[0]&0xe0 | p[1]&0x1f,
			Start: p[1]&0x80 != 0, End: p[1]&0x40 != 0,
		})
		return nil
	}
	return ErrH264Unsupported
}

// walkSTAPA hands fn the units of a STAP-A payload after its header byte:
// each is a 16-bit size and that many bytes.
func walkSTAPA(p []byte, fn func(H264NALU) bool) error {
	for len(p) > 0 {
		if len(p) < 2 {
			return ErrH264Truncated
		}
		size := int(p[0])<<8 | int(p[1])
		p = p[2:]
		switch {
		case size == 0:
			return ErrH264EmptyNALU
		case size > len(p):
			return ErrH264Truncated
		}
		if !fn(H264NALU{Type: p[0] & 0x1f, Data: p[:size]}) {
			return nil
		}
		p = p[size:]
	}
	return nil
}

// isH264Keyframe reports an IDR slice or an SPS, whether sent as a single
// NAL unit or aggregated in a STAP-A, or the first fragment of an IDR
// slice.
func isH264Keyframe(p []byte) bool {
	key := false
	_ = WalkH264(p, func(u H264NALU) bool {
		key = u.Type == H264NALIDR && (!u.Fragment || u.Start) || u.Type == H264NALSPS && !u.Fragment
		return !key
	})
	return key
}
