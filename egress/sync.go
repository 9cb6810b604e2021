package egress

import (
	"time"

	"github.com/fanout-sfu/fanout/simulcast"
)

// srWait bounds how long the muxer's start waits, after the first
// keyframe, for the sender reports that align audio with video; without
// them, the streams are aligned by the arrival of their first packets.
const srWait = 3 * time.Second

// senderReporter is a track that knows its publisher's sender reports
// (the SFU's UpTrack does).
type senderReporter interface {
	SenderReport(layer int8) (simulcast.SenderReport, bool)
}

// report is the newest sender report of a track's layer, if any.
func report(t any, layer int8) (simulcast.SenderReport, bool) {
	if r, ok := t.(senderReporter); ok {
		return r.SenderReport(layer)
	}
	return simulcast.SenderReport{}, false
}

// rtpAt is the RTP timestamp a stream's sender report gives the NTP
// instant ntp (32.32 fixed point), in a clock of rate Hz.
func rtpAt(sr simulcast.SenderReport, ntp uint64, rate int64) uint32 {
	dt := int64(ntp - sr.NTP) // 32.32 seconds, signed
	return sr.RTP + uint32((dt*rate)>>32)
}

// ntpAt is the NTP instant of an RTP timestamp by a sender report.
func ntpAt(sr simulcast.SenderReport, ts uint32, rate int64) uint64 {
	ticks := int64(int32(ts - sr.RTP))
	return sr.NTP + uint64((ticks<<32)/rate)
}

// anchorAt makes RTP timestamp ts the stream's timeline origin (pts 0).
func (st *streamState) anchorAt(ts uint32) {
	st.base = st.extTS + int64(int32(ts-st.lastTS))
	st.offset = 0
}

// syncStart decides how the muxer starting at video timestamp ts aligns
// the streams. With sender reports of both (or no audio), the keyframe is
// pts 0 of both clocks: audio's origin is its timestamp at the keyframe's
// NTP instant. ok is false while the reports are awaited (up to srWait
// after the first keyframe); then the arrival-based anchors stay.
func (e *HLS) syncStart(ts uint32, now time.Time) (ok bool) {
	vr, haveV := report(e.p.Video, e.layer)
	ar, haveA := simulcast.SenderReport{}, true
	if e.p.Audio != nil {
		ar, haveA = report(e.p.Audio, 0)
	}
	if !haveV || !haveA {
		if e.firstKey.IsZero() {
			e.firstKey = now
		}
		if now.Sub(e.firstKey) < srWait {
			return false
		}
		e.log.Info("no sender reports: audio and video aligned by arrival")
		return true
	}
	e.video.anchorAt(ts)
	e.srSync, e.startNTP = true, ntpAt(vr, ts, 90000)
	if e.p.Audio != nil && e.audio.anchor {
		e.audio.anchorAt(rtpAt(ar, e.startNTP, 48000))
	}
	return true
}

// anchorBySR places a stream's first packet (after the muxer started, or
// a new simulcast layer) by its sender report, when the muxer's origin
// was set by sender reports.
func (e *HLS) anchorBySR(st *streamState, track any, layer int8) {
	if !e.srSync {
		return
	}
	if sr, ok := report(track, layer); ok {
		st.anchorAt(rtpAt(sr, e.startNTP, st.rate))
	}
}
