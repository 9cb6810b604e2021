package sfu

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// Retransmission limits. A receiver that keeps asking for packets a
// congested link keeps losing (pion's NACK generator asks every 100 ms,
// without limit), or one that asks on purpose, would otherwise get a
// retransmission storm that starves the link of new media and costs the
// node a write per NACKed packet: every packet, audio and video alike, is
// sent again at most maxRetransmits times, at least minRetransmitGap (or
// the measured round trip) apart, and all of a DownTrack's retransmissions
// together fit in a byte budget earned by what it forwarded.
const (
	// maxRetransmits is how often one packet is sent again at most.
	maxRetransmits = 3
	// minRetransmitGap spaces the retransmissions of one packet, at least
	// one round trip.
	minRetransmitGap = 50 * time.Millisecond
	// Retransmissions may add rtxBudgetShareNum/rtxBudgetShareDen of the
	// bytes forwarded (media and probe padding) to the stream...
	rtxBudgetShareNum, rtxBudgetShareDen = 1, 4
	// ...and at most rtxBudgetBurst bytes at once: the budget is a token
	// bucket, full at the start, that forwarding refills.
	rtxBudgetBurst = 64 << 10
	// rtxExtAllowance covers the transport-wide sequence number extension
	// the write adds to a retransmission's header.
	rtxExtAllowance = 8
)

// RTXStats counts a DownTrack's retransmissions.
type RTXStats struct {
	Packets uint64 // retransmissions sent
	Bytes   uint64 // their bytes (headers included)
	// Refused counts NACKed packets not sent again because of the
	// limits: asked too often, too soon, or over the byte budget.
	Refused uint64
}

// RetransmitStats returns the retransmissions sent and refused so far.
func (d *DownTrack) RetransmitStats() RTXStats {
	return RTXStats{Packets: d.rtxPackets.Load(), Bytes: d.rtxBytes.Load(), Refused: d.rtxRefused.Load()}
}

// retransmitOne retransmits one NACKed packet and goes on to the next.
func (d *DownTrack) retransmitOne(seq uint16) bool {
	d.retransmit(seq)
	return true
}

// rtxRecord counts the retransmissions of one output packet.
type rtxRecord struct {
	seq   uint16
	count uint8
	at    int64
}

// note counts a retransmission of outSeq at now.
func (r *rtxRecord) note(outSeq uint16, now int64) {
	if r.count == 0 || r.seq != outSeq {
		*r = rtxRecord{seq: outSeq, count: 1, at: now}
		return
	}
	r.count++
	r.at = now
}

// mayRetransmit reports whether outSeq may be sent again at now, and the
// record to note it in once it is sent. Callers hold d.rtxMu.
func (d *DownTrack) mayRetransmit(outSeq uint16, now int64) (*rtxRecord, bool) {
	r := &d.rtxSeen[outSeq%vp8History]
	if r.count == 0 || r.seq != outSeq {
		return r, true
	}
	gap := max(int64(minRetransmitGap), d.rr.rttNS.Load())
	if r.count >= maxRetransmits || now-r.at < gap {
		return r, false
	}
	return r, true
}

// spendRTXBudget takes size bytes from the retransmission budget, first
// adding the share of the bytes forwarded since the last call, and reports
// whether they were there. Callers hold d.rtxMu.
func (d *DownTrack) spendRTXBudget(size int) bool {
	var forwarded uint64
	if all, rtx := d.bytes.Load(), d.rtxBytes.Load(); all > rtx {
		forwarded = all - rtx
	}
	if forwarded > d.rtxEarned {
		earned := (forwarded - d.rtxEarned) * rtxBudgetShareNum / rtxBudgetShareDen
		d.rtxTokens = min(d.rtxTokens+int64(min(earned, rtxBudgetBurst)), rtxBudgetBurst)
		d.rtxEarned = forwarded
	}
	if d.rtxTokens < int64(size) {
		return false
	}
	d.rtxTokens -= int64(size)
	return true
}

// retransmit resends a packet the subscriber reported lost, mapping its
// sequence number back to the publisher's layer and sequence number and
// re-munging the cached copy.
func (d *DownTrack) retransmit(outSeq uint16) {
	b := d.bound.Load()
	if b == nil {
		return
	}
	src, ok := d.munger.UnmungeSeq(outSeq)
	if !ok {
		return
	}
	if src.Padding {
		d.retransmitPadding(b, outSeq, src.PaddingTS)
		return
	}
	if d.kind == webrtc.RTPCodecTypeVideo && (d.paused.Load() || d.Target().Spatial < 0) {
		return // paused video restarts at a keyframe: old packets are of no use
	}
	now := time.Now().UnixNano()
	d.rtxMu.Lock()
	defer d.rtxMu.Unlock()
	seen, ok := d.mayRetransmit(outSeq, now)
	if !ok {
		d.rtxRefused.Add(1)
		if seen.count >= maxRetransmits {
			d.giveUpRetransmit(outSeq, now)
		}
		return
	}
	n, ok := d.p.Track.ReadCached(int8(src.Layer), src.Seq, d.rtxBuf[:])
	if !ok {
		return
	}
	if err := d.rtxPkt.Unmarshal(d.rtxBuf[:n]); err != nil {
		return
	}
	payload, ok := payloadFor(b, d.rtxPkt.Payload)
	if !ok {
		return
	}
	h := &d.rtxPkt.Header
	if d.vp8Sent != nil && len(payload) > 0 {
		var media bool
		if payload, media, ok = d.rewriteCachedVP8(outSeq, payload); !media {
			// Dropped on purpose (an upper temporal layer) after it came
			// late, past the packets around it: padding fills its number.
			d.sendPadding(b, seen, outSeq, h.Timestamp-src.TSOffset, now)
			return
		}
		if !ok {
			return
		}
	}
	fillHeader(&d.rtx.hdr, b, h, outSeq, h.Timestamp-src.TSOffset)
	size := d.rtx.hdr.MarshalSize() + len(payload) + rtxExtAllowance
	if !d.spendRTXBudget(size) {
		d.rtxRefused.Add(1)
		return
	}
	seen.note(outSeq, now)
	d.write(b, &d.rtx.headerScratch, payload, now)
	d.rtxPackets.Add(1)
	d.rtxBytes.Add(uint64(size))
}

// keySeqValid marks DownTrack.keySeq as set.
const keySeqValid = 1 << 16

// recoverGap is the least time between two keyframes asked for on a
// subscriber's behalf because retransmissions gave up, and
// recoverAfterSwitch how long after a layer switch none is: a switch down
// is congestion draining, and a keyframe sent into it is lost too, with
// the media behind it (the subscriber keeps asking for the packet, so the
// request comes once the link has drained).
const (
	recoverGap         = time.Second
	recoverAfterSwitch = 1500 * time.Millisecond
)

// giveUpRetransmit handles a NACK for video packet outSeq that was sent
// again maxRetransmits times and is still missing (and the layer did not
// change within recoverAfterSwitch): the subscriber cannot
// decode past it until a keyframe (a link that keeps losing the
// retransmissions, right after a cap, say). Rather than wait for its PLI,
// which a receiver that does not decode never sends and a browser sends
// only once its jitter buffer gives up, the SFU asks the publisher for a
// keyframe of the layer forwarded, at most once per recoverGap, unless a
// keyframe was forwarded after the lost packet already.
func (d *DownTrack) giveUpRetransmit(outSeq uint16, now int64) {
	if d.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	if k := d.keySeq.Load(); k&keySeqValid != 0 && int16(outSeq-uint16(k)) < 0 {
		return // before the last keyframe: the decoder no longer needs it
	}
	if now-d.switchedAt.Load() < int64(recoverAfterSwitch) {
		return
	}
	last := d.recoverAt.Load()
	if now-last < int64(recoverGap) || !d.recoverAt.CompareAndSwap(last, now) {
		return
	}
	if l := d.CurrentLayer(); l >= 0 {
		d.p.Track.RequestKeyframe(l)
		d.p.Logger.Debug("keyframe asked for: retransmissions gave up", "track", d.p.Track.ID(), "subscriber", d.p.Subscriber, "seq", outSeq, "layer", l)
	}
}

// rewriteCachedVP8 gives a retransmitted VP8 packet the descriptor it was
// first sent with. media is false if no VP8 packet was sent with number
// outSeq (among the last vp8History): the packet was dropped, and its
// number was left to it. Callers hold d.rtxMu.
func (d *DownTrack) rewriteCachedVP8(outSeq uint16, payload []byte) (out []byte, media, ok bool) {
	var desc simulcast.VP8Descriptor
	if simulcast.ParseVP8(payload, &desc) != nil {
		return payload, true, true // sent unparsed the first time too
	}
	d.mu.Lock()
	sent := d.vp8Sent[outSeq%vp8History]
	d.mu.Unlock()
	if !sent.valid || sent.seq != outSeq {
		return nil, false, false
	}
	o := desc
	o.PictureID, o.LongPictureID = sent.pictureID, desc.HasPictureID
	o.TL0PICIDX, o.KEYIDX = sent.tl0, sent.keyIdx
	out, ok = rewriteVP8(&desc, &o, payload, d.rtx.payload[:])
	return out, true, ok
}

// rtxPaddingBytes is the padding a retransmitted padding packet carries:
// the receiver needs its sequence number, not its size.
const rtxPaddingBytes = 1

// retransmitPadding sends again a padding packet (made up to probe) that
// the subscriber reported lost, with its sequence number and timestamp:
// it carries nothing, but a receiver would otherwise keep a hole in the
// sequence for good. It is answered while the video is paused too: the
// prober pads a paused stream.
func (d *DownTrack) retransmitPadding(b *binding, outSeq uint16, ts uint32) {
	now := time.Now().UnixNano()
	d.rtxMu.Lock()
	defer d.rtxMu.Unlock()
	seen, ok := d.mayRetransmit(outSeq, now)
	if !ok {
		d.rtxRefused.Add(1) // padding: the decoder never needed it, no keyframe
		return
	}
	d.sendPadding(b, seen, outSeq, ts, now)
}

// sendPadding sends a padding packet with number outSeq and timestamp ts in
// answer to a NACK, noting it in seen. Callers hold d.rtxMu.
func (d *DownTrack) sendPadding(b *binding, seen *rtxRecord, outSeq uint16, ts uint32, now int64) {
	var none rtp.Header
	h := &d.rtx.hdr
	fillHeader(h, b, &none, outSeq, ts)
	h.Padding, h.PaddingSize = true, rtxPaddingBytes
	size := h.MarshalSize() + rtxPaddingBytes + rtxExtAllowance
	if !d.spendRTXBudget(size) {
		d.rtxRefused.Add(1)
		return
	}
	seen.note(outSeq, now)
	d.write(b, &d.rtx.headerScratch, nil, now)
	d.rtxPackets.Add(1)
	d.rtxBytes.Add(uint64(size))
}
