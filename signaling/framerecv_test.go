package signaling_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/fanout-sfu/fanout/signaling/client"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// frameSize is the picture size of a received keyframe.
type frameSize struct{ W, H int }

// recvStats is what readFrames saw on one remote track.
type recvStats struct {
	Codec      string      // "vp8" or "h264"
	Seqs       []uint16    // RTP sequence numbers in order of arrival
	TSs        []uint32    // RTP timestamps, in the same order
	SSRCs      []uint32    // distinct SSRCs in order of arrival
	Frames     int         // complete frames (no packet missing)
	Keyframes  []frameSize // size of every complete keyframe, in order
	BadKeys    int         // complete keyframes whose size could not be read
	PictureIDs []uint16    // VP8: the PictureID of every complete frame
}

// recvLog collects recvStats safely while readFrames runs.
type recvLog struct {
	mu sync.Mutex
	s  recvStats
}

// snapshot returns a copy of what was received so far.
func (r *recvLog) snapshot() recvStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Seqs, s.SSRCs, s.TSs = slices.Clone(s.Seqs), slices.Clone(s.SSRCs), slices.Clone(s.TSs)
	s.Keyframes, s.PictureIDs = slices.Clone(s.Keyframes), slices.Clone(s.PictureIDs)
	return s
}

func (r *recvLog) addPacket(p *rtp.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Seqs = append(r.s.Seqs, p.SequenceNumber)
	r.s.TSs = append(r.s.TSs, p.Timestamp)
	if !slices.Contains(r.s.SSRCs, p.SSRC) {
		r.s.SSRCs = append(r.s.SSRCs, p.SSRC)
	}
}

func (r *recvLog) addFrame(frame []byte, pictureID uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Frames++
	if r.s.Codec == "vp8" {
		r.s.PictureIDs = append(r.s.PictureIDs, pictureID)
	}
	if !isKeyframeData(r.s.Codec, frame) {
		return
	}
	if w, h, ok := keyframeSize(r.s.Codec, frame); ok {
		r.s.Keyframes = append(r.s.Keyframes, frameSize{w, h})
	} else {
		r.s.BadKeys++
	}
}

// readFrames reads a remote VP8 or H.264 track until it ends, depacketizes
// it and records into rec every packet's sequence number and SSRC and every
// complete frame (keyframes with their size). Run it on its own goroutine.
func readFrames(track *webrtc.TrackRemote, rec *recvLog) {
	codec := strings.TrimPrefix(strings.ToLower(track.Codec().MimeType), "video/")
	rec.mu.Lock()
	rec.s.Codec = codec
	rec.mu.Unlock()
	asm := &frameAssembler{codec: codec}
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		rec.addPacket(&pkt)
		if frame, pictureID, ok := asm.push(&pkt); ok {
			rec.addFrame(frame, pictureID)
		}
	}
}

// frameAssembler rebuilds frames from RTP packets: a frame is the packets
// of one timestamp up to the marker bit; a frame with a missing packet, or
// whose first packet does not start a frame, is dropped (an H.264 access
// unit also when packets are missing just before it).
type frameAssembler struct {
	codec     string
	h264      codecs.H264Packet
	data      []byte
	ts        uint32
	lastSeq   uint16
	started   bool // a packet was seen
	inFrame   bool
	broken    bool
	pictureID uint16
}

// push adds a packet; at a frame's last packet it returns the frame (a
// fresh slice) and, for VP8, its PictureID.
func (a *frameAssembler) push(p *rtp.Packet) (frame []byte, pictureID uint16, ok bool) {
	gap := a.started && p.SequenceNumber != a.lastSeq+1
	a.started, a.lastSeq = true, p.SequenceNumber
	if !a.inFrame || p.Timestamp != a.ts {
		a.inFrame, a.ts, a.data = true, p.Timestamp, a.data[:0]
		// A VP8 packet with S=1, PID=0 is surely a frame's first; for H.264
		// a gap just before may have taken this access unit's SPS and PPS.
		a.broken = !a.isFrameStart(p.Payload) || (gap && a.codec != "vp8")
		a.h264 = codecs.H264Packet{}
	} else if gap {
		a.broken = true
	}
	if !a.broken {
		if err := a.depacketize(p.Payload); err != nil {
			a.broken = true
		}
	}
	if !p.Marker {
		return nil, 0, false
	}
	a.inFrame = false
	if a.broken {
		return nil, 0, false
	}
	return slices.Clone(a.data), a.pictureID, true
}

func (a *frameAssembler) isFrameStart(payload []byte) bool {
	if a.codec == "vp8" {
		var vp codecs.VP8Packet
		return vp.IsPartitionHead(payload) && len(payload) > 0 && payload[0]&0x07 == 0
	}
	var h codecs.H264Packet
	return h.IsPartitionHead(payload)
}

func (a *frameAssembler) depacketize(payload []byte) error {
	switch a.codec {
	case "vp8":
		var vp codecs.VP8Packet
		data, err := vp.Unmarshal(payload)
		if err != nil {
			return fmt.Errorf("vp8 payload: %w", err)
		}
		if vp.S == 1 && vp.PID == 0 {
			a.pictureID = vp.PictureID
		}
		a.data = append(a.data, data...)
	case "h264":
		data, err := a.h264.Unmarshal(payload)
		if err != nil {
			return fmt.Errorf("h264 payload: %w", err)
		}
		a.data = append(a.data, data...)
	default:
		return fmt.Errorf("depacketize %q: %w", a.codec, errUnknownCodec)
	}
	return nil
}

// seqGaps describes where the received sequence numbers, in sequence
// order, skip or repeat (at most ten places).
func seqGaps(seqs []uint16) []string {
	if len(seqs) == 0 {
		return nil
	}
	// Arrival order may differ from sequence order by a few packets (a
	// probe's padding written beside media, a retransmission): what must
	// hold is that every number from the first to the last arrives once.
	ext := make([]int64, len(seqs))
	ext[0] = int64(seqs[0])
	for i := 1; i < len(seqs); i++ {
		ext[i] = ext[i-1] + int64(int16(seqs[i]-seqs[i-1]))
	}
	slices.Sort(ext)
	var gaps []string
	for i := 1; i < len(ext) && len(gaps) < 10; i++ {
		if ext[i] != ext[i-1]+1 {
			gaps = append(gaps, fmt.Sprintf("%d after %d", uint16(ext[i]), uint16(ext[i-1])))
		}
	}
	return gaps
}

// frameWatch runs readFrames on every track a client receives.
type frameWatch struct {
	mu   sync.Mutex
	logs map[string]*recvLog // by track id
}

func watchFrames(c *client.Client) *frameWatch {
	w := &frameWatch{logs: map[string]*recvLog{}}
	c.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		rec := &recvLog{}
		w.mu.Lock()
		w.logs[tr.ID()] = rec
		w.mu.Unlock()
		go readFrames(tr, rec)
	})
	return w
}

// stats returns what was received of track id so far.
func (w *frameWatch) stats(id string) recvStats {
	w.mu.Lock()
	rec := w.logs[id]
	w.mu.Unlock()
	if rec == nil {
		return recvStats{}
	}
	return rec.snapshot()
}
