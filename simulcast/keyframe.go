package simulcast

import "strings"

// Codec identifies the payload format of a forwarded stream, for the parts of
// forwarding that must look inside the payload (keyframe detection).
type Codec uint8

// Payload formats Fanout forwards.
const (
	CodecUnknown Codec = iota
	CodecOpus
	CodecVP8
	CodecVP9
	CodecH264
	CodecAV1
)

// CodecFromMime maps a MIME type such as "video/VP8" to a Codec.
func CodecFromMime(mime string) Codec {
	switch strings.ToLower(mime) {
	case "audio/opus", "audio/red":
		return CodecOpus
	case "video/vp8":
		return CodecVP8
	case "video/vp9":
		return CodecVP9
	case "video/h264":
		return CodecH264
	case "video/av1":
		return CodecAV1
	}
	return CodecUnknown
}

// IsKeyframe reports whether an RTP payload starts or contains an
// independently decodable picture. Audio payloads are always keyframes.
func IsKeyframe(c Codec, payload []byte) bool {
	switch c {
	case CodecOpus:
		return true
	case CodecVP8:
		var d VP8Descriptor
		return ParseVP8(payload, &d) == nil && d.Keyframe
	case CodecVP9:
		return isVP9Keyframe(payload)
	case CodecH264:
		return isH264Keyframe(payload)
	case CodecAV1:
		return isAV1Keyframe(payload)
	}
	return false
}

// isVP9Keyframe checks the flexible/non-flexible VP9 payload descriptor
// (RFC 9628): a start of frame that is not inter-predicted, on spatial layer 0.
func isVP9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b := p[0]
	interPicture := b&0x40 != 0
	begin := b&0x08 != 0
	if interPicture || !begin {
		return false
	}
	layerIndices := b&0x20 != 0
	if !layerIndices {
		return true
	}
	i := 1
	if b&0x80 != 0 { // I: picture id
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	sid := (p[i] >> 1) & 0x07
	return sid == 0
}

// isAV1Keyframe checks the AV1 aggregation header's N bit (first packet of a
// coded video sequence), which encoders set on keyframes.
func isAV1Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	return p[0]&0x08 != 0
}
