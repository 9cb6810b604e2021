package simulcast

// REDPrimary returns the primary (newest) encoding carried in an RFC 2198
// RED payload, as a sub-slice of payload, so that a subscriber that did not
// negotiate RED receives plain Opus. ok is false for a malformed payload.
func REDPrimary(payload []byte) (primary []byte, ok bool) {
	offset := 0
	blocks := 0
	// Redundant block headers are 4 bytes (F bit set); the primary's is 1.
	for {
		if offset >= len(payload) {
			return nil, false
		}
		if payload[offset]&0x80 == 0 {
			offset++
			break
		}
		if offset+4 > len(payload) {
			return nil, false
		}
		blocks += int(payload[offset+2]&0x03)<<8 | int(payload[offset+3])
		offset += 4
	}
	start := offset + blocks
	if start > len(payload) {
		return nil, false
	}
	return payload[start:], true
}
