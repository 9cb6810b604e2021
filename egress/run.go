package egress

import (
	"errors"
	"time"

	"github.com/fanout-sfu/fanout/simulcast"
)

// run is the egress goroutine: it takes packets off the queue, orders
// them, rebuilds frames and writes them to the muxer.
func (e *HLS) run() {
	defer close(e.done)
	tick := time.NewTicker(egressTickRate)
	defer tick.Stop()
	for {
		select {
		case <-e.stop:
			return
		case in := <-e.in:
			e.take(in)
			e.pool.Put(in)
		case now := <-tick.C:
			e.drain(&e.video, now)
			e.drain(&e.audio, now)
			e.followLayers()
			if !e.out.started() && !e.firstKey.IsZero() {
				e.askKeyframe(now) // the next keyframe may find the sender reports
			}
		}
	}
}

// take files a packet into its stream's jitter buffer and releases what
// is in order.
func (e *HLS) take(in *input) {
	st := &e.video
	if in.audio {
		st = &e.audio
	} else if in.layer != e.layer {
		return // only the chosen simulcast layer is muxed
	}
	if len(in.buf) < 12 {
		return
	}
	seq := uint16(in.buf[2])<<8 | uint16(in.buf[3])
	now := time.Unix(0, in.arrival)
	st.jb.Push(seq, now, in.buf)
	if !st.anchor {
		st.anchor = true
		st.lastTS = uint32(in.buf[4])<<24 | uint32(in.buf[5])<<16 | uint32(in.buf[6])<<8 | uint32(in.buf[7])
		st.extTS, st.base = int64(st.lastTS), int64(st.lastTS)
		st.offset = int64(now.Sub(e.start)) * st.rate / int64(time.Second)
		if in.audio {
			e.anchorBySR(st, e.p.Audio, 0)
		} else {
			e.anchorBySR(st, e.p.Video, e.layer)
		}
	}
	e.drain(st, now)
}

// drain releases a stream's packets in order into the assembler or muxer.
func (e *HLS) drain(st *streamState, now time.Time) {
	for {
		raw, _, lost, ok := st.jb.Pop(now)
		if lost > 0 {
			e.log.Debug("packets lost", "audio", st == &e.audio, "count", lost)
		}
		if !ok {
			return
		}
		if err := e.pkt.Unmarshal(raw); err != nil {
			continue
		}
		pts := st.pts(e.pkt.Timestamp)
		if st == &e.audio {
			switch {
			case !e.out.started():
				e.holdAudio(st.extTS, e.pkt.Payload)
			case pts >= 0: // audio before the muxer's origin is dropped
				e.writeAudio(pts, e.pkt.Payload)
			}
			continue
		}
		e.now = now
		err := e.asm.Push(e.pkt.SequenceNumber, e.pkt.Timestamp, e.pkt.Marker, e.pkt.Payload, e.emitAU)
		if err != nil {
			e.log.Debug("H.264 payload refused", "err", err)
		}
		if !e.asm.Synced() {
			e.askKeyframe(now)
		}
	}
}

// pts places an RTP timestamp on the egress timeline, in the stream's
// clock: its offset from the stream's first packet, after the time that
// packet arrived at.
func (st *streamState) pts(ts uint32) int64 {
	st.extTS += int64(int32(ts - st.lastTS))
	st.lastTS = ts
	return st.offset + st.extTS - st.base
}

// writeVideo starts the muxer at a keyframe (once the streams can be
// aligned, see syncStart) and writes a unit. It is the assembler's emit
// function (e.emitAU, made once: a closure per packet would allocate);
// e.now is the time of the packet being drained.
func (e *HLS) writeVideo(au AccessUnit) {
	now := e.now
	if !e.out.started() {
		if !au.IDR {
			return
		}
		e.video.pts(au.TS)
		if !e.syncStart(au.TS, now) {
			e.lastKeyReq = time.Time{} // ask for another keyframe once the reports are in
			return
		}
		if err := e.out.start(e.asm.SPS(), e.asm.PPS()); err != nil {
			e.log.Warn("HLS output failed to start", "err", err)
			return
		}
		e.log.Info("HLS output started", "aligned_by_sender_reports", e.srSync)
		e.flushAudio()
	}
	pts := e.video.pts(au.TS)
	if pts < 0 {
		return
	}
	if err := e.out.writeVideo(time.Now(), pts, au.NALUs); err != nil && !errors.Is(err, ErrNotStarted) {
		e.log.Debug("video not muxed", "err", err)
	}
}

// writeAudio writes an Opus packet (a RED payload's primary encoding).
func (e *HLS) writeAudio(pts int64, payload []byte) {
	if !e.out.started() || len(payload) == 0 {
		return
	}
	if e.red {
		primary, ok := simulcast.REDPrimary(payload)
		if !ok {
			return
		}
		payload = primary
	}
	// The muxer keeps the packet until its part is written: a copy, as
	// payload is the jitter buffer's.
	if err := e.out.writeAudio(time.Now(), pts, append([]byte(nil), payload...)); err != nil && !errors.Is(err, ErrNotStarted) {
		e.log.Debug("audio not muxed", "err", err)
	}
}

// askKeyframe asks the publisher for a keyframe, at most once a second.
func (e *HLS) askKeyframe(now time.Time) {
	if now.Sub(e.lastKeyReq) < keyframeEvery {
		return
	}
	e.lastKeyReq = now
	e.p.Video.RequestKeyframe(e.layer)
}

// followLayers moves to the best simulcast layer when the one muxed is no
// longer sent, or a better one appears: a new layer's packets have their
// own sequence numbers, so the assembler starts afresh at its keyframe.
func (e *HLS) followLayers() {
	best := highestLayer(e.p.Video.AvailableLayers())
	if best == e.layer {
		return
	}
	e.layer = best
	e.asm = H264Assembler{}
	// The new layer's timestamps have a base of their own: anchored
	// afresh by the arrival of its first packet.
	e.video = streamState{jb: NewJitterBuffer(jitterWait), rate: 90000}
	e.lastKeyReq = time.Time{}
	e.askKeyframe(time.Now())
}

// maxHeldAudio bounds the audio kept while the muxer waits for its first
// keyframe (2 s of 20 ms frames).
const maxHeldAudio = 100

// heldAudio is an audio packet that came before the muxer started.
type heldAudio struct {
	ext     int64 // unwrapped RTP timestamp
	payload []byte
}

// holdAudio keeps an audio packet until the muxer starts: audio of the
// instants just after the first keyframe may come before that keyframe's
// last packet does.
func (e *HLS) holdAudio(ext int64, payload []byte) {
	if len(e.held) == maxHeldAudio {
		e.held = append(e.held[:0], e.held[1:]...)
	}
	e.held = append(e.held, heldAudio{ext: ext, payload: append([]byte(nil), payload...)})
}

// flushAudio writes the held audio from the muxer's origin on.
func (e *HLS) flushAudio() {
	for _, h := range e.held {
		if pts := h.ext - e.audio.base + e.audio.offset; pts >= 0 {
			e.writeAudio(pts, h.payload)
		}
	}
	e.held = nil
}
