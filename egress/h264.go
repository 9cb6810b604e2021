// Package egress turns published tracks into HLS for audiences too large
// for WebRTC: it depacketizes H.264 and Opus from RTP (no transcoding) and
// muxes them into low-latency HLS.
package egress

import (
	"errors"
	"fmt"

	"github.com/fanout-sfu/fanout/simulcast"
)

// H.264 NAL unit types the assembler acts on (ITU-T H.264 table 7-1); the
// RTP packetization is walked by simulcast.WalkH264.
const (
	nalSlice = 1
	nalIDR   = simulcast.H264NALIDR
	nalSEI   = 6
	nalSPS   = simulcast.H264NALSPS
	nalPPS   = simulcast.H264NALPPS
	nalAUD   = 9
)

// Limits of one access unit, against a publisher sending garbage.
const (
	maxAUSize  = 8 << 20
	maxAUNALUs = 256
)

// Errors of the H.264 assembler: each packet or access unit they name is
// dropped, and the assembler waits for the next keyframe.
var (
	ErrH264Packet  = errors.New("malformed H.264 RTP payload")
	ErrH264TooBig  = errors.New("H.264 access unit too large")
	ErrUnsupported = errors.New("unsupported H.264 packetization")
)

// AccessUnit is one H.264 picture: its NAL units (without start codes)
// and the RTP timestamp they share.
type AccessUnit struct {
	TS    uint32
	NALUs [][]byte
	// IDR is set when the unit holds an IDR slice (a keyframe).
	IDR bool
}

// H264Assembler rebuilds access units from the RTP packets of an H.264
// stream in sequence order (single NAL units, STAP-A and FU-A; RFC 6184
// packetization mode 1). It keeps the latest SPS and PPS, for the init
// segment. After a lost packet it drops everything up to the next IDR
// access unit, which it prefixes with the SPS and PPS if they were sent
// apart: a decoder can start at any unit it returns.
type H264Assembler struct {
	sps, pps []byte

	cur     AccessUnit
	curSize int
	started bool // cur holds packets
	broken  bool // cur lost a packet, or holds an error
	fu      []byte
	inFU    bool

	lastSeq uint16
	haveSeq bool
	synced  bool // output started at an IDR and nothing was lost since
}

// SPS returns the latest sequence parameter set (nil before one).
func (a *H264Assembler) SPS() []byte { return a.sps }

// PPS returns the latest picture parameter set (nil before one).
func (a *H264Assembler) PPS() []byte { return a.pps }

// Synced reports whether output runs: false before the first keyframe and
// after a loss, until the next one (a caller then asks for a keyframe).
func (a *H264Assembler) Synced() bool { return a.synced }

// Push takes the next packet of the stream and calls emit with each
// access unit it completes (a packet can end the unit before it, when
// that one lacked its marker bit, and its own). An error means the packet
// was malformed; the stream resynchronizes at the next keyframe by itself.
func (a *H264Assembler) Push(seq uint16, ts uint32, marker bool, payload []byte, emit func(AccessUnit)) error {
	// A gap, or a first packet that may not be its unit's first (the
	// stream began earlier): the units around it may be incomplete.
	gap := (a.haveSeq && seq != a.lastSeq+1) || (!a.haveSeq && !startsUnit(payload))
	a.lastSeq, a.haveSeq = seq, true
	if gap {
		a.lost() // the unit being built may miss its end
	}
	if a.started && ts != a.cur.TS {
		a.finish(emit) // a new picture began without the last one's marker bit
	}
	if !a.started {
		a.cur = AccessUnit{TS: ts}
		a.curSize, a.started, a.broken = 0, true, false
	}
	if gap {
		a.lost() // and this one its start: the lost packet was either's
	}
	err := a.depacketize(payload)
	if err != nil {
		a.broken, a.inFU = true, false
		a.synced = false
	}
	if marker {
		a.finish(emit)
	}
	return err
}

// startsUnit reports whether a payload can only be an access unit's first:
// it begins with a delimiter, SEI or parameter set (alone or aggregated).
func startsUnit(p []byte) bool {
	starts := false
	_ = simulcast.WalkH264(p, func(u simulcast.H264NALU) bool {
		switch u.Type {
		case nalAUD, nalSEI, nalSPS, nalPPS:
			starts = !u.Fragment
		}
		return false // the first unit decides
	})
	return starts
}

// lost notes a gap in the sequence: the unit being built and any started
// fragment are incomplete.
func (a *H264Assembler) lost() {
	a.broken, a.inFU = true, false
	a.synced = false
}

// depacketize adds a payload's NAL units to the unit being built.
func (a *H264Assembler) depacketize(p []byte) error {
	var err error
	walkErr := simulcast.WalkH264(p, func(u simulcast.H264NALU) bool {
		if u.Fragment {
			err = a.addFragment(u)
		} else {
			a.inFU = false
			err = a.addNALU(u.Data)
		}
		return err == nil
	})
	switch {
	case err != nil:
		return err
	case errors.Is(walkErr, simulcast.ErrH264Unsupported):
		return fmt.Errorf("%w: NAL unit type %d", ErrUnsupported, p[0]&0x1f)
	case walkErr != nil:
		return fmt.Errorf("%w: %w", ErrH264Packet, walkErr)
	}
	return nil
}

// addFragment adds a fragment of an FU-A; the last one completes its NAL
// unit.
func (a *H264Assembler) addFragment(u simulcast.H264NALU) error {
	if u.Start {
		a.fu = append(a.fu[:0], u.Header)
		a.inFU = true
	} else if !a.inFU {
		return fmt.Errorf("%w: FU-A fragment without its start", ErrH264Packet)
	}
	if len(a.fu)+len(u.Data) > maxAUSize {
		return fmt.Errorf("%w: fragmented NAL unit over %d bytes", ErrH264TooBig, maxAUSize)
	}
	a.fu = append(a.fu, u.Data...)
	if !u.End {
		return nil
	}
	a.inFU = false
	return a.addNALU(a.fu)
}

// addNALU appends a copy of a NAL unit to the unit being built, keeping
// parameter sets and dropping access unit delimiters.
func (a *H264Assembler) addNALU(n []byte) error {
	if len(n) == 0 {
		return fmt.Errorf("%w: empty NAL unit", ErrH264Packet)
	}
	if len(a.cur.NALUs) >= maxAUNALUs || a.curSize+len(n) > maxAUSize {
		return fmt.Errorf("%w: over %d NAL units or %d bytes", ErrH264TooBig, maxAUNALUs, maxAUSize)
	}
	switch n[0] & 0x1f {
	case nalAUD:
		return nil
	case nalSPS:
		a.sps = append(a.sps[:0], n...)
	case nalPPS:
		a.pps = append(a.pps[:0], n...)
	case nalIDR:
		a.cur.IDR = true
	}
	a.cur.NALUs = append(a.cur.NALUs, append([]byte(nil), n...))
	a.curSize += len(n)
	return nil
}

// finish ends the unit being built and emits it if it may be output.
func (a *H264Assembler) finish(emit func(AccessUnit)) {
	au, broken := a.cur, a.broken || a.inFU
	a.cur, a.started, a.broken, a.inFU = AccessUnit{}, false, false, false
	if broken || len(au.NALUs) == 0 {
		return
	}
	if !a.synced {
		if !au.IDR || a.sps == nil || a.pps == nil {
			return
		}
		a.synced = true
	}
	if au.IDR {
		au.NALUs = a.withParameterSets(au.NALUs)
	}
	emit(au)
}

// withParameterSets prefixes an IDR unit with the SPS and PPS unless it
// carries them.
func (a *H264Assembler) withParameterSets(nalus [][]byte) [][]byte {
	var hasSPS, hasPPS bool
	for _, n := range nalus {
		switch n[0] & 0x1f {
		case nalSPS:
			hasSPS = true
		case nalPPS:
			hasPPS = true
		}
	}
	if hasSPS && hasPPS {
		return nalus
	}
	out := make([][]byte, 0, len(nalus)+2)
	if !hasSPS {
		out = append(out, append([]byte(nil), a.sps...))
	}
	if !hasPPS {
		out = append(out, append([]byte(nil), a.pps...))
	}
	return append(out, nalus...)
}
