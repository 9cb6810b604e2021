package sfu

import (
	"context"
	"log/slog"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/simulcast"
)

// allocInterval is how often a subscriber connection's layers are
// allocated: often enough to step down within a feedback interval or two
// of congestion showing in the estimate.
const allocInterval = 100 * time.Millisecond

// allocation chooses, on its own goroutine, the layer every DownTrack of
// one subscriber connection forwards within the connection's bandwidth
// estimate, and probes for the bandwidth an upgrade needs. Nothing of it
// runs per packet.
type allocation struct {
	s      *subscriber
	alloc  *simulcast.Allocator
	probe  prober
	log    *slog.Logger
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	tracks []simulcast.AllocTrack
	subs   []*subscription
	// used is the bitrate the last allocation took.
	used uint64
}

func newAllocation(s *subscriber, log *slog.Logger) *allocation {
	return &allocation{
		s: s, log: log,
		alloc: simulcast.NewAllocator(simulcast.AllocatorConfig{}),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// start runs the allocation loop until close.
func (a *allocation) start() { go a.run() }

// close stops the loop and waits for it.
func (a *allocation) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// trigger asks for an allocation now (a subscription or a ceiling
// changed) rather than at the next tick.
func (a *allocation) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *allocation) run() {
	defer close(a.done)
	ticker := time.NewTicker(allocInterval)
	defer ticker.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-ticker.C:
		case <-a.kick:
		}
		a.step(time.Now().UnixNano())
	}
}

// step runs one allocation and, when an upgrade waits for bandwidth, a
// probe.
func (a *allocation) step(now int64) {
	a.gather()
	if len(a.subs) == 0 {
		a.probe.idle()
		return
	}
	estimate := a.s.cc.estimate()
	switch a.probe.result(now, estimate, a.probe.target != 0 && a.s.cc.probeSaturated(a.probe.startAt)) {
	case probeConfirmed:
		a.alloc.TrustEstimate()
		a.log.Debug("probe confirmed", "estimate_bps", estimate)
	case probeFailed:
		a.logProbeVerdict("probe failed")
		if before := a.restoreAfterFailedProbe(); estimate < before {
			a.s.cc.restore(before)
			a.log.Debug("probe failed: estimate restored", "estimate_bps", estimate, "restored_bps", before)
			estimate = a.s.cc.estimate()
		}
	}
	estimate = a.probe.shield(estimate)
	out := a.alloc.Allocate(now, estimate, a.tracks)
	a.used = out.Used
	if a.apply(out, estimate) {
		a.probe.upgraded(now)
	}
	capacity := a.s.cc.linkCapacity()
	if out.Probe > estimate && a.probe.maybeProbe(now, max(out.Probe, out.ProbeAll), out.Used, estimate, capacity, a.subs, a.s.cc.probeSaturated, a.stop) {
		c := a.probe.last
		a.log.Debug("probe cluster sent", "target_bps", out.Probe, "test_bps", c.test, "top_bps", int(c.top), "estimate_bps", estimate, "capacity_bps", capacity,
			"planned", c.planned, "took", c.took, "filled_path", c.full, "next_in", a.probe.backoff)
		if c.full {
			a.logProbeVerdict("probe filled the path")
		}
	}
	clear(a.subs) // hold no subscriptions between steps
	a.subs = a.subs[:0]
}

// logProbeVerdict logs, under msg, why the latest cluster was found to
// fill the path ("none" when it was not).
func (a *allocation) logProbeVerdict(msg string) {
	if !a.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	v := a.s.cc.probeVerdict()
	if v.By == "" {
		v.By = "none"
	}
	a.log.Debug(msg, "by", v.By, "at_ms", int(v.AtMs), "tail_sent", v.TailSent, "tail_recv", v.TailRecv,
		"tail_send_bps", int(v.TailSendBps), "tail_recv_bps", int(v.TailRecvBps),
		"tail_send_span_ms", v.TailSendSpanMs, "tail_recv_span_ms", v.TailRecvSpanMs, "queue_ms", v.QueueMs)
}

// restoreAfterFailedProbe is the estimate a failed probe's self-inflicted
// decrease is undone to: the estimate from before the cluster, but not
// above what the path was just seen to carry when full (the estimate may
// have crept above the link's rate while the layers took less), and never
// under what the layers take.
func (a *allocation) restoreAfterFailedProbe() uint64 {
	before := a.probe.before
	if capacity := a.s.cc.linkCapacity(); capacity > 0 {
		return min(before, max(capacity, a.used))
	}
	return before
}

// gather lists the subscriptions and what the allocator needs of them.
func (a *allocation) gather() {
	a.tracks, a.subs = a.tracks[:0], a.subs[:0]
	s := a.s
	s.mu.Lock()
	for _, sub := range s.subs {
		a.subs = append(a.subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range a.subs {
		dt := sub.dt
		t := simulcast.AllocTrack{
			ID:       string(dt.p.Track.ID()),
			Audio:    dt.Kind() == webrtc.RTPCodecTypeAudio,
			Screen:   sub.screen,
			Max:      dt.MaxLayer(),
			Bitrates: sub.track.up.LayerBitrates(),
			Current:  simulcast.NoLayer,
		}
		if dt.Paused() {
			t.Max = simulcast.NoLayer // muted or disabled: nothing to reserve
		}
		if cur := dt.CurrentLayer(); cur >= 0 {
			t.Current = simulcast.Layer{Spatial: cur, Temporal: dt.Target().Temporal}
		}
		if dt.ceilingRaised.Swap(false) {
			a.alloc.Refresh(t.ID)
		}
		a.tracks = append(a.tracks, t)
	}
}

// apply sets the targets the allocator chose and reports whether one
// went up. A track the allocator
// cannot place because none of its layers has been measured yet (a new
// publisher) or because it is paused anyway keeps its target: pausing it
// would only report a stream state that is not about bandwidth.
func (a *allocation) apply(out simulcast.Allocation, estimate uint64) (up bool) {
	for i, sub := range a.subs {
		t := &a.tracks[i]
		if t.Audio || t.Max.Spatial < 0 || !measured(&t.Bitrates) {
			continue
		}
		to, from := out.Targets[i], sub.dt.Target()
		if to == from {
			continue
		}
		if to.Spatial >= 0 && to.Spatial < from.Spatial {
			a.holdSwitchKeyframe(sub.dt)
		}
		sub.dt.SetTarget(to)
		up = up || layerAbove(to, from)
		a.log.Debug("layer allocation", "track", t.ID, "from", layerString(from), "to", layerString(to),
			"estimate_bps", estimate, "used_bps", out.Used, "probe_bps", out.Probe)
	}
	return up
}

// switchKeyframeHoldMax bounds how long a switch down waits before asking
// for its keyframe: long enough for a queue of a few keyframes to empty,
// short against the 2 s a subscriber may take to settle.
const switchKeyframeHoldMax = 150 * time.Millisecond

// holdSwitchKeyframe makes dt, about to switch down for lack of bandwidth,
// ask for the new layer's keyframe only once the path's queue (as the
// latest feedback measured it) has had time to empty: see
// DownTrack.holdSwitchKeyframe.
func (a *allocation) holdSwitchKeyframe(dt *DownTrack) {
	if hold := min(a.s.cc.queueDelay(), switchKeyframeHoldMax); hold > 0 {
		dt.holdSwitchKeyframe(time.Now().Add(hold).UnixNano())
	}
}

// layerAbove reports whether x ranks above y (spatial, then temporal).
func layerAbove(x, y simulcast.Layer) bool {
	return x.Spatial > y.Spatial || (x.Spatial == y.Spatial && x.Temporal > y.Temporal)
}

// measured reports whether any layer of a track has a bitrate.
func measured(rates *[simulcast.MaxSpatial][simulcast.AllTemporal + 1]uint64) bool {
	for s := range rates {
		for _, r := range rates[s] {
			if r > 0 {
				return true
			}
		}
	}
	return false
}

// layerString names a layer for logs: "paused" or "s2t3".
func layerString(l simulcast.Layer) string {
	if l.Spatial < 0 {
		return "paused"
	}
	return "s" + string(rune('0'+l.Spatial)) + "t" + string(rune('0'+min(max(l.Temporal, 0), 9)))
}

// isScreenShare reports whether a track is a screen share (served before
// cameras).
func isScreenShare(info *livekit.TrackInfo) bool {
	return info.Source == livekit.TrackSource_SCREEN_SHARE
}
