package sfu

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
)

// defaultQualityInterval is how often clients hear everyone's connection
// quality.
const defaultQualityInterval = 5 * time.Second

// linkStats is what is known of one direction of a media path.
type linkStats struct {
	loss   float64       // fraction of packets lost, 0..1
	jitter time.Duration // interarrival jitter
	rtt    time.Duration // round trip time, 0 when unknown
}

// worse combines two paths: the worse of each measure.
func (s linkStats) worse(o linkStats) linkStats {
	return linkStats{loss: max(s.loss, o.loss), jitter: max(s.jitter, o.jitter), rtt: max(s.rtt, o.rtt)}
}

// qualityScore rates a path like a call's mean opinion score (1 to 4.5),
// with the simplified ITU-T G.107 E-model: delay (half the round trip plus
// twice the jitter) and loss lower the rating. EXCELLENT from 4.25 (up to
// about 1.5 % loss on a short path), GOOD from 3.5 (up to about 8 % loss, or
// a long round trip), POOR below.
func qualityScore(s linkStats) (livekit.ConnectionQuality, float32) {
	delay := float64(s.rtt/2+2*s.jitter)/float64(time.Millisecond) + 10
	r := 93.2
	if delay < 160 {
		r -= delay / 40
	} else {
		r -= (delay - 120) / 10
	}
	r -= 2.5 * 100 * s.loss
	r = math.Max(0, math.Min(100, r))
	mos := 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	mos = math.Max(1, math.Min(4.5, mos))
	switch {
	case mos >= 4.25:
		return livekit.ConnectionQuality_EXCELLENT, float32(mos)
	case mos >= 3.5:
		return livekit.ConnectionQuality_GOOD, float32(mos)
	}
	return livekit.ConnectionQuality_POOR, float32(mos)
}

// receiverReport is the newest receiver report block a subscriber sent for
// one DownTrack, kept as atomics (written by the RTCP goroutine, read by the
// room's quality loop).
type receiverReport struct {
	lossPPM   atomic.Uint32 // fraction lost, parts per million
	jitterNS  atomic.Int64
	rttNS     atomic.Int64
	updatedNS atomic.Int64
}

// record stores a report block about the DownTrack's stream.
func (r *receiverReport) record(b rtcp.ReceptionReport, clockRate uint32, now time.Time) {
	r.lossPPM.Store(uint32(b.FractionLost) * 1_000_000 / 256)
	if clockRate > 0 {
		r.jitterNS.Store(int64(b.Jitter) * int64(time.Second) / int64(clockRate))
	}
	if b.LastSenderReport != 0 {
		// NTP short format (16.16 seconds): now - LSR - DLSR.
		rtt := ntpShort(now) - b.LastSenderReport - b.Delay
		if rtt < 1<<31 { // a clock step gives a negative number: skip it
			r.rttNS.Store(int64(rtt) * int64(time.Second) >> 16)
		}
	}
	r.updatedNS.Store(now.UnixNano())
}

// stats returns the report as link stats, or false when none came within
// maxAge.
func (r *receiverReport) stats(now time.Time, maxAge time.Duration) (linkStats, bool) {
	at := r.updatedNS.Load()
	if at == 0 || now.UnixNano()-at > int64(maxAge) {
		return linkStats{}, false
	}
	return linkStats{
		loss:   float64(r.lossPPM.Load()) / 1_000_000,
		jitter: time.Duration(r.jitterNS.Load()),
		rtt:    time.Duration(r.rttNS.Load()),
	}, true
}

// ntpShort is t in the middle 32 bits of the NTP format.
func ntpShort(t time.Time) uint32 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()+ntpEpochOffset) & 0xffff
	frac := uint64(t.Nanosecond()) << 16 / uint64(time.Second)
	return uint32(secs<<16 | frac)
}

// lossMeter measures the loss of a published layer between two looks:
// packets the sequence numbers say were sent against packets received.
type lossMeter struct {
	lastExpected, lastReceived uint64
}

// sample returns the loss since the last call, and false when nothing was
// expected since then.
func (m *lossMeter) sample(expected, received uint64) (float64, bool) {
	de, dr := expected-m.lastExpected, received-m.lastReceived
	m.lastExpected, m.lastReceived = expected, received
	if expected == 0 || de == 0 || de > 1<<20 {
		return 0, false
	}
	if dr >= de {
		return 0, true
	}
	return float64(de-dr) / float64(de), true
}

// qualityLoop tells every participant, periodically, the connection
// quality of everyone it can see.
func (r *Room) qualityLoop() {
	every := r.params.QualityInterval
	if every <= 0 {
		every = defaultQualityInterval
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-ticker.C:
		}
		r.sendQualities(time.Now(), 2*every)
	}
}

// sendQualities sends one connectionQuality update to each participant:
// the visible participants' and its own.
func (r *Room) sendQualities(now time.Time, maxAge time.Duration) {
	parts := r.Participants()
	infos := make(map[*Participant]*livekit.ConnectionQualityInfo, len(parts))
	var visible []*livekit.ConnectionQualityInfo
	for _, p := range parts {
		q, score := p.connectionQuality(now, maxAge)
		info := &livekit.ConnectionQualityInfo{ParticipantSid: string(p.ID()), Quality: q, Score: score}
		infos[p] = info
		if !p.hidden() {
			visible = append(visible, info)
		}
	}
	for _, p := range parts {
		updates := visible
		if p.hidden() {
			updates = append(append([]*livekit.ConnectionQualityInfo(nil), visible...), infos[p])
		}
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_ConnectionQuality{
			ConnectionQuality: &livekit.ConnectionQualityUpdate{Updates: updates},
		}})
	}
}

// connectionQuality rates a participant's connection from what its
// published tracks lost on the way in and what its subscriber reports for
// the tracks it receives (loss, jitter, round trip): the worse path counts.
// With nothing measured yet it is EXCELLENT.
func (p *Participant) connectionQuality(now time.Time, maxAge time.Duration) (livekit.ConnectionQuality, float32) {
	var worst linkStats
	for _, t := range p.pub.publishedTracks() {
		if loss, ok := t.up.sampleLoss(); ok {
			worst = worst.worse(linkStats{loss: loss})
		}
	}
	for _, id := range p.SubscribedTracks() {
		if dt := p.DownTrack(id); dt != nil {
			if s, ok := dt.rr.stats(now, maxAge); ok {
				worst = worst.worse(s)
			}
		}
	}
	q, score := qualityScore(worst)
	p.log.Debug("connection quality", "quality", q.String(), "score", score,
		"loss", worst.loss, "jitter", worst.jitter, "rtt", worst.rtt)
	return q, score
}
