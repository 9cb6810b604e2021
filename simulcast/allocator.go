package simulcast

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Defaults of AllocatorConfig.
const (
	// DefaultUpgradeHold is how long a track stays down after a downgrade
	// for lack of bandwidth: a congestion controller needs a few seconds to
	// recover from the overuse that caused it, and a layer that just failed
	// should not be retried at once.
	DefaultUpgradeHold = 5 * time.Second
	// DefaultUpgradeHeadroom is the margin an upgrade needs: the estimate
	// must exceed what the new layer set needs by 10%.
	DefaultUpgradeHeadroom = 1.1
	// DefaultAllocWindow is how long a measured layer bitrate counts at its
	// peak and how far back the estimate's low looks: a few seconds (and
	// at least 16 values), so that noise is seen at its extremes while an
	// upgrade still follows a successful probe quickly.
	DefaultAllocWindow = 4 * time.Second
	// DefaultUpgradeTrial is how long the allocator takes to judge a layer
	// or a waiting step: long enough for an unlucky upgrade on a noisy
	// estimate to fail, short against a call.
	DefaultUpgradeTrial = 20 * time.Second
)

// allocKeepTolerance (in thousandths) lets the layers already forwarded
// stay while the estimate covers 1/1.1 of what they need: their need is
// counted at its peak, which overstates the average, and the estimate dips
// briefly while a queue drains after a downgrade. Between this and the
// upgrade headroom lies the band where nothing changes.
const allocKeepTolerance = 1100

// allocMaxStrikes caps the failures remembered per layer: three failures
// make a layer need the headroom four times over (1.46 at 1.1), and its
// hold after a downgrade doubles with each (up to 8 x UpgradeHold).
const allocMaxStrikes = 3

// AllocTrack is one subscribed track as the Allocator sees it.
type AllocTrack struct {
	// ID names the track across calls (unique within a call); the
	// allocator keeps the track's history under it.
	ID string
	// Audio tracks are forwarded whole and their bitrate reserved first.
	Audio bool
	// Screen shares are served before cameras.
	Screen bool
	// Priority orders tracks of the same kind: higher is served first.
	Priority int
	// Max is the subscriber's ceiling (quality setting, viewport). A
	// negative Spatial disables the track; a Temporal outside 0..AllTemporal
	// allows every temporal layer.
	Max Layer
	// Bitrates[s][t] is the measured bitrate (bits/s) of spatial layer s up
	// to temporal layer t (temporal layers are cumulative), 0 where the
	// layer is not received. Audio uses Bitrates[0][0]. A codec without
	// temporal layers fills one column, or all of them with one value.
	Bitrates [MaxSpatial][AllTemporal + 1]uint64
	// Current is the layer the track forwards now. It is read the first
	// time the allocator sees the ID (NoLayer: a new track, which starts at
	// once); afterwards the allocator's own last target is the baseline of
	// its hysteresis, so a switch still waiting for a keyframe cannot make
	// the target flap.
	Current Layer
}

// Allocation is the result of Allocate.
type Allocation struct {
	// Targets are the layers to forward, one per input track in input
	// order; NoLayer pauses a track. Audio gets Layer{0, 0}. The slice is
	// the Allocator's own: valid until its next Allocate call.
	Targets []Layer
	// Used is the bitrate (bits/s) the targets need, audio included, from
	// the peak measured bitrates.
	Used uint64
	// Probe, when non-zero, is the estimate (bits/s) the next upgrade step
	// needs: the total after the step times the headroom (more than once
	// for a step that failed or waited long). The SFU probes up to it. It
	// is 0 when nothing can go up, when every track below its best layer
	// is within its UpgradeHold, and in a call that went down (no probing
	// right after congestion). It may be at or below the estimate when
	// the estimate's low lags behind it (a recent rise, or noise).
	Probe uint64
	// ProbeAll, when Probe is non-zero, is the estimate every video track
	// on its best step would need (with the headroom once): a prober may
	// aim for it, so that a path that got much better is found in one
	// climb rather than one climb per step.
	ProbeAll uint64
	// Deficient reports that some video track is below the best layer its
	// ceiling allows.
	Deficient bool
}

// AllocatorConfig tunes an Allocator; zero fields take the defaults.
type AllocatorConfig struct {
	// UpgradeHold is how long a track stays down after a downgrade for lack
	// of bandwidth before it may go up again (default DefaultUpgradeHold;
	// negative: no hold).
	UpgradeHold time.Duration
	// UpgradeHeadroom is the factor by which the estimate must exceed what
	// the layer set needs after an upgrade (default DefaultUpgradeHeadroom;
	// below 1: 1; resolution 0.001).
	UpgradeHeadroom float64
	// Window smooths the inputs: a layer's bitrate counts at its peak over
	// it, and upgrades go by the estimate's low over it. It is kept as two
	// halves of at least Window/2 and 16 values each; a gap longer than
	// Window/2 between calls starts it afresh (default DefaultAllocWindow;
	// negative: the raw inputs).
	Window time.Duration
	// UpgradeTrial: a downgrade for lack of bandwidth within UpgradeTrial
	// of the track being placed on its layer (by an upgrade or its start)
	// makes that layer of that track need the headroom once more from then
	// on (up to three times), and so does a step that has waited
	// UpgradeTrial, until taken (default DefaultUpgradeTrial; negative:
	// neither).
	UpgradeTrial time.Duration
}

// Allocator chooses, for one subscriber connection, the layer each
// subscribed track forwards within the connection's bandwidth estimate.
// Each Allocate call:
//
//  1. reserves the bitrate of the audio tracks, which are never paused;
//  2. keeps each video track at its last layer while all fit in the
//     estimate, serving classes in order (screen shares, then higher
//     Priority, then the rest by ID) and sharing a class fairly (the track
//     on the lowest layer takes the next step). When they do not fit, the
//     lowest classes step down at once, and then further (lowest class and
//     highest layer first) until the set fits in the window's lowest
//     estimate less half the window's spread (at most a sixteenth), so
//     that noise does not take it down again step by step; nothing goes up
//     in such a call;
//  3. otherwise lets each video track go up one step, in the same order,
//     when the estimate's low covers the new total times the headroom and
//     UpgradeHold has passed since the track's last downgrade. A step of a
//     higher class may push lower classes down. The first step that does
//     not fit is reported as Probe.
//
// A track's steps are its available layers (non-zero bitrate) within its
// ceiling, or else its lowest available layer (like Resolve). They are
// ranked by (spatial, temporal): resolution is preferred to frame rate,
// so 640x360 at 7.5 fps ranks above 320x180 at 30 fps. A layer that costs
// no less than a better one is skipped, so costs rise along the steps.
// For cameras, a spatial layer above the lowest offers only its two best
// temporal steps (about half the frame rate and the full one): a face at
// 5 fps is worse than at a lower resolution and full motion, so cameras
// lose resolution before they lose more than half their frame rate, and
// drop to a quarter only in the lowest layer. Screen shares offer every
// step: text stays sharp at any frame rate.
// A new track, or one re-enabled or whose layers came back, starts at the
// best step that fits now, without hold or headroom.
//
// Noise: a layer's bitrate counts at its peak over the Window. The
// estimate's low is its lowest value over the Window less half the
// Window's spread, at most an eighth (an eighth while the Window holds
// fewer than 16 values; nothing with raw inputs). A layer that fails
// (goes down within UpgradeTrial of the track being placed on it) and a
// step that has waited UpgradeTrial need the headroom once more, so that
// a steady but noisy estimate cannot let them through by chance in the
// long run. An Allocator is not safe for concurrent use.
type Allocator struct {
	hold     int64  // UpgradeHold in nanoseconds
	trial    int64  // UpgradeTrial in nanoseconds
	headroom uint64 // UpgradeHeadroom in thousandths
	half     int64  // half the Window in nanoseconds
	est      allocRange
	tracks   map[string]*allocState
	gen      uint64 // counts Allocate calls, to forget unlisted tracks
	work     []allocWork
	targets  []Layer // Allocation.Targets, reused
	trust    bool    // TrustEstimate: the next estimate replaces the window
}

// allocState is what the allocator remembers of a track between calls.
type allocState struct {
	target   Layer // last target: the baseline of the hysteresis
	fresh    bool  // not placed since it appeared or came back: starts at once
	down     bool  // downAt is set
	downAt   int64 // last downgrade for lack of bandwidth
	placed   Layer // layer of the last placement on trial, or NoLayer
	placedAt int64
	waitFor  Layer // the step up it waits for, or NoLayer
	waitFrom int64
	seen     uint64
	strikes  [MaxSpatial][AllTemporal + 1]uint8 // failed placements per layer
	rates    [MaxSpatial][AllTemporal + 1]allocRange
}

// allocRung is one step of a track: a layer and its peak bitrate.
type allocRung struct {
	layer Layer
	cost  uint64
}

// allocWork is a video track during one Allocate call.
type allocWork struct {
	st      *allocState
	id      string
	idx     int // position in the input
	screen  bool
	prio    int
	rungs   [MaxSpatial * (AllTemporal + 1)]allocRung
	n       int8 // rungs in use
	level   int8 // chosen rung, -1: paused
	cap     int8 // highest rung a fill may give
	fresh   bool
	lowered bool // went down in this call
	done    bool // fill: its next step does not fit
	tried   bool // upgrade: considered
}

// allocBucketSamples is the fewest values a half window holds, so that
// infrequent calls still see the noise at its extremes.
const allocBucketSamples = 16

// allocRange keeps the lowest and highest values of the last window, as
// two buckets of half a window (and at least allocBucketSamples values)
// each. A gap of more than half a window between values forgets the old
// ones.
type allocRange struct {
	lo, hi, prevLo, prevHi uint64
	start, last            int64
	n, prevN               int
}

// add records v at now and returns the lowest and highest value of the
// window.
func (r *allocRange) add(now int64, v uint64, half int64) (lo, hi uint64) {
	switch {
	case now-r.last > half || now < r.last || r.n == 0:
		*r = allocRange{lo: v, hi: v, prevLo: v, prevHi: v, start: now}
	case now-r.start >= half && r.n >= allocBucketSamples:
		r.prevLo, r.prevHi, r.prevN = r.lo, r.hi, r.n
		r.lo, r.hi, r.n, r.start = v, v, 0, now
	}
	r.lo, r.hi = min(r.lo, v), max(r.hi, v)
	r.n++
	r.last = now
	return min(r.lo, r.prevLo), max(r.hi, r.prevHi)
}

// NewAllocator returns an allocator for one subscriber connection.
func NewAllocator(cfg AllocatorConfig) *Allocator {
	a := &Allocator{
		hold:  allocDuration(cfg.UpgradeHold, DefaultUpgradeHold),
		trial: allocDuration(cfg.UpgradeTrial, DefaultUpgradeTrial),
		half:  allocDuration(cfg.Window, DefaultAllocWindow) / 2,
	}
	h := cfg.UpgradeHeadroom
	switch {
	case h == 0:
		h = DefaultUpgradeHeadroom
	case !(h >= 1): // also NaN
		h = 1
	}
	a.headroom = uint64(math.Round(min(h, 1000) * 1000))
	a.tracks = make(map[string]*allocState)
	return a
}

// allocDuration is d in nanoseconds: def when zero, 0 when negative.
func allocDuration(d, def time.Duration) int64 {
	switch {
	case d == 0:
		return int64(def)
	case d < 0:
		return 0
	}
	return int64(d)
}

// Allocate returns the layer each track should forward, given the
// connection's bandwidth estimate (bits/s) at now (unix nanoseconds, from
// the caller's clock). Call it periodically and when the estimate or the
// tracks change; a track not listed is forgotten.
func (a *Allocator) Allocate(now int64, estimate uint64, tracks []AllocTrack) Allocation {
	a.gen++
	if a.trust {
		a.trust = false
		a.est = allocRange{}
		a.est.add(now, estimate, a.half)
		a.est.n = allocBucketSamples // a measured value: no margin for unknown noise
	}
	// The estimate's low: the lowest of the window less half the window's
	// spread (at most an eighth), so that a noisy estimate needs more room.
	lowest, high := a.est.add(now, estimate, a.half)
	low, trimTo := lowest, lowest
	switch {
	case a.half == 0: // raw inputs: the estimate as it is
	case a.est.n+a.est.prevN < allocBucketSamples:
		low -= low / 8 // too few values to know the noise: assume it
		trimTo -= trimTo / 32
	default:
		low -= min((high-low)/2, low/8)
		trimTo -= min((high-lowest)/2, lowest/32)
	}
	if cap(a.targets) < len(tracks) {
		a.targets = make([]Layer, len(tracks))
	}
	a.targets = a.targets[:len(tracks)]
	clear(a.targets)
	out := Allocation{Targets: a.targets}
	audio := a.prepare(now, tracks, out.Targets)
	slices.SortFunc(a.work, allocOrder)
	tolerant := allocScale(estimate, allocKeepTolerance, 1000, false)
	if a.keep(now, estimate-min(estimate, audio), tolerant-min(tolerant, audio)) {
		// Lowered: trim a little below the lowest, so that noise does not
		// lower the set again step by step; no upgrade or probe in this
		// call. A quarter of the upgrade margin: after a drop the window's
		// spread is mostly the drop, and the estimator's decrease (0.9 of
		// what the bottleneck delivered) is a margin already; a sixteenth
		// more sent a 700 kbit/s subscriber to 320 rather than 640.
		out.Used = a.trim(now, a.work, a.total(audio), trimTo)
	} else {
		out.Used, out.Probe = a.upgrade(now, audio, low)
		if out.Probe > 0 {
			out.ProbeAll = max(out.Probe, a.needs(a.bestTotal(audio), 0))
		}
	}
	out.Deficient = a.finish(now, out.Targets)
	for id, st := range a.tracks {
		if st.seen != a.gen {
			delete(a.tracks, id)
		}
	}
	return out
}

// TrustEstimate makes the next call start the estimate's window afresh
// with its estimate, counted as known to be steady: a probe has just
// measured it, so the lower values before it are out of date and an
// upgrade the probe was sent for need not wait for them to age out.
func (a *Allocator) TrustEstimate() { a.trust = true }

// Refresh makes the track id start afresh in the next call, like a new
// track (the best step that fits the estimate now, without hold or
// headroom), keeping the layers it failed on. Call it when the subscriber
// raises the track's ceiling, so that the track goes up at once rather than
// one step per call.
func (a *Allocator) Refresh(id string) {
	if st := a.tracks[id]; st != nil {
		st.fresh = true
	}
}

// prepare updates the measured bitrates, sets the targets of audio and of
// video that cannot be forwarded, lists the other video in a.work with
// their steps, and returns the audio bitrate.
func (a *Allocator) prepare(now int64, tracks []AllocTrack, targets []Layer) (audio uint64) {
	a.work = a.work[:0]
	for i := range tracks {
		t := &tracks[i]
		st := a.state(t)
		var peaks allocRates
		a.measure(now, t, st, &peaks)
		targets[i] = NoLayer
		switch {
		case t.Max.Spatial < 0:
			st.reset()
		case t.Audio:
			targets[i] = Layer{}
			audio += peaks[0][0]
		default:
			a.work = append(a.work, allocWork{
				st: st, id: t.ID, idx: i, screen: t.Screen, prio: t.Priority, fresh: st.fresh,
			})
			w := &a.work[len(a.work)-1]
			w.build(t.Max, &peaks, !t.Screen)
			if w.n == 0 {
				a.work = a.work[:len(a.work)-1]
				st.reset()
				break
			}
			w.cap = w.keepCap(st.target, allocDominated(st.target, t.Max, &peaks))
			continue
		}
		st.target = targets[i]
	}
	return audio
}

// state returns the remembered state of t, creating it from t.Current.
func (a *Allocator) state(t *AllocTrack) *allocState {
	st := a.tracks[t.ID]
	if st == nil {
		st = &allocState{target: t.Current, fresh: t.Current.Spatial < 0}
		st.placed, st.waitFor = NoLayer, NoLayer
		a.tracks[t.ID] = st
	}
	st.seen = a.gen
	return st
}

// reset makes the track start afresh when it can be forwarded again.
func (st *allocState) reset() {
	st.fresh, st.down, st.placed, st.waitFor = true, false, NoLayer, NoLayer
	st.strikes = [MaxSpatial][AllTemporal + 1]uint8{}
}

// allocRates are bitrates per spatial and temporal layer.
type allocRates = [MaxSpatial][AllTemporal + 1]uint64

// measure records the track's bitrates and returns their peaks; a layer
// not received now is unavailable at once.
func (a *Allocator) measure(now int64, t *AllocTrack, st *allocState, peaks *allocRates) {
	for s := range t.Bitrates {
		for l, v := range t.Bitrates[s] {
			p := &st.rates[s][l]
			if v == 0 {
				*p = allocRange{}
				continue
			}
			_, peaks[s][l] = p.add(now, v, a.half)
		}
	}
}

// allocOrder sorts video tracks: screen shares, higher priority, ID, input
// position.
func allocOrder(x, y allocWork) int {
	if x.screen != y.screen {
		if x.screen {
			return -1
		}
		return 1
	}
	if x.prio != y.prio {
		return cmp.Compare(y.prio, x.prio)
	}
	if c := strings.Compare(x.id, y.id); c != 0 {
		return c
	}
	return cmp.Compare(x.idx, y.idx)
}

// allocClassEnd is the end of the class (same kind and priority) that
// starts at ws[lo].
func allocClassEnd(ws []allocWork, lo int) int {
	hi := lo + 1
	for hi < len(ws) && ws[hi].screen == ws[lo].screen && ws[hi].prio == ws[lo].prio {
		hi++
	}
	return hi
}

// before reports whether w takes a step ahead of o of its class: the lower
// layer first, and a known track before a new one.
func (w *allocWork) before(o *allocWork) bool {
	wl, ol := w.layer(), o.layer()
	if wl != ol {
		return allocLess(wl, ol)
	}
	return !w.fresh && o.fresh
}

// allocFill raises the paused tracks of ws (sorted) toward their caps
// within budget, class by class, and returns the budget left.
func allocFill(ws []allocWork, budget uint64) uint64 {
	for lo := 0; lo < len(ws); {
		hi := allocClassEnd(ws, lo)
		class := ws[lo:hi]
		for i := range class {
			class[i].done = false
		}
		for {
			var w *allocWork
			for i := range class {
				c := &class[i]
				if !c.done && c.level < c.cap && (w == nil || c.before(w)) {
					w = c
				}
			}
			if w == nil {
				break
			}
			if step := w.rungs[w.level+1].cost - w.cost(); step <= budget {
				budget -= step
				w.level++
			} else {
				w.done = true
			}
		}
		lo = hi
	}
	return budget
}

// keep gives each video track the best step up to its cap that fits in
// budget and records the downgrades of known tracks; it reports whether
// there were any. Known tracks keep their layers as long as those fit in
// tolerant, unless a new track is being placed.
func (a *Allocator) keep(now int64, budget, tolerant uint64) (lowered bool) {
	a.fillFrom(budget)
	if !a.knownBelowCap() {
		return false
	}
	// A second chance within the tolerance, unless a new track is being
	// placed: it takes its fair share of the budget.
	for i := range a.work {
		if a.work[i].fresh {
			return a.lowerBelowCap(now)
		}
	}
	a.fillFrom(tolerant)
	if !a.knownBelowCap() {
		return false
	}
	a.fillFrom(budget)
	return a.lowerBelowCap(now)
}

// lowerBelowCap records the downgrades of the known tracks below their
// caps and reports whether there were any.
func (a *Allocator) lowerBelowCap(now int64) (lowered bool) {
	for i := range a.work {
		if w := &a.work[i]; w.level < w.cap && !w.fresh && !w.lowered {
			a.lower(now, w)
			lowered = true
		}
	}
	return lowered
}

// fillFrom gives the video tracks the best steps up to their caps that fit
// in budget, starting from nothing.
func (a *Allocator) fillFrom(budget uint64) {
	for i := range a.work {
		a.work[i].level = -1
	}
	allocFill(a.work, budget)
}

// knownBelowCap reports whether a known track did not get its cap.
func (a *Allocator) knownBelowCap() bool {
	for i := range a.work {
		if w := &a.work[i]; w.level < w.cap && !w.fresh && !w.lowered {
			return true
		}
	}
	return false
}

// trim lowers tracks of ws (sorted) one step at a time until total is
// within limit: the lowest class first, and within it the track on the
// highest layer (the last in order among equals). It returns the total.
func (a *Allocator) trim(now int64, ws []allocWork, total, limit uint64) uint64 {
	for total > limit {
		w := allocVictim(ws)
		if w == nil {
			break
		}
		c := w.cost()
		w.level--
		total -= c - w.cost()
		if !w.fresh && !w.lowered {
			a.lower(now, w)
		}
	}
	return total
}

// allocVictim is the track of ws that trim lowers next, or nil.
func allocVictim(ws []allocWork) *allocWork {
	for hi := len(ws); hi > 0; {
		lo := hi - 1
		for lo > 0 && ws[lo-1].screen == ws[hi-1].screen && ws[lo-1].prio == ws[hi-1].prio {
			lo--
		}
		var v *allocWork
		for i := lo; i < hi; i++ {
			if w := &ws[i]; w.level >= 0 && (v == nil || !allocLess(w.layer(), v.layer())) {
				v = w
			}
		}
		if v != nil {
			return v
		}
		hi = lo
	}
	return nil
}

// lower records a downgrade for lack of bandwidth: the hold starts, and a
// placement still on trial fails.
func (a *Allocator) lower(now int64, w *allocWork) {
	st := w.st
	w.lowered, w.fresh = true, false
	st.down, st.downAt = true, now
	if p := st.placed; p.Spatial >= 0 && now-st.placedAt < a.trial && allocLess(w.layer(), p) {
		if s := &st.strikes[p.Spatial][p.Temporal]; *s < allocMaxStrikes {
			*s++
		}
	}
	st.placed = NoLayer
}

// upgrade takes at most one step up per video track, class by class and
// the lowest layer first within a class, while the total times the
// headroom stays within low. It returns the total and the probe.
func (a *Allocator) upgrade(now int64, audio, low uint64) (total, probe uint64) {
	total = a.total(audio)
	for lo := 0; lo < len(a.work); {
		hi := allocClassEnd(a.work, lo)
		for {
			w := allocNextTry(a.work[lo:hi])
			if w == nil {
				break
			}
			if !a.mayUpgrade(now, w) {
				continue
			}
			next := w.rungs[w.level+1]
			step := next.cost - w.cost()
			k := w.st.strikes[next.layer.Spatial][next.layer.Temporal]
			if w.st.waitFor != next.layer {
				w.st.waitFor, w.st.waitFrom = next.layer, now
			} else if a.trial > 0 && now-w.st.waitFrom >= a.trial {
				k++
			}
			limit := a.limit(low, k)
			if total+step > limit {
				freed, ok := a.preempt(now, a.work[hi:], total+step, limit)
				if !ok {
					if probe == 0 {
						probe = a.needs(total+step, k)
					}
					continue
				}
				total -= freed
			}
			w.level++
			total += step
			w.st.placed, w.st.placedAt = next.layer, now
			w.st.waitFor = NoLayer
		}
		lo = hi
	}
	return total, probe
}

// bestTotal is the bitrate of every video track's best step and audio.
func (a *Allocator) bestTotal(audio uint64) uint64 {
	for i := range a.work {
		if w := &a.work[i]; w.n > 0 {
			audio += w.rungs[w.n-1].cost
		}
	}
	return audio
}

// total is the bitrate of the chosen layers and audio.
func (a *Allocator) total(audio uint64) uint64 {
	for i := range a.work {
		audio += a.work[i].cost()
	}
	return audio
}

// allocNextTry marks and returns the untried track of class that comes
// first (lowest layer), or nil.
func allocNextTry(class []allocWork) *allocWork {
	var w *allocWork
	for i := range class {
		if c := &class[i]; !c.tried && (w == nil || c.before(w)) {
			w = c
		}
	}
	if w != nil {
		w.tried = true
	}
	return w
}

// mayUpgrade reports whether w has a step up and is past its hold, which
// doubles with each failure of that step's layer.
func (a *Allocator) mayUpgrade(now int64, w *allocWork) bool {
	if w.lowered || w.level+1 >= w.n {
		return false
	}
	next := w.rungs[w.level+1].layer
	hold := a.hold << w.st.strikes[next.Spatial][next.Temporal]
	return w.fresh || !w.st.down || now-w.st.downAt >= hold
}

// limit is the largest total a step to a layer with strikes failures may
// reach on an estimate low: low over the headroom, once per strike more.
func (a *Allocator) limit(low uint64, strikes uint8) uint64 {
	for range strikes + 1 {
		low = allocScale(low, 1000, a.headroom, false)
	}
	return low
}

// needs is the estimate a total reaching a layer with strikes failures
// needs, the inverse of limit.
func (a *Allocator) needs(total uint64, strikes uint8) uint64 {
	for range strikes + 1 {
		total = allocScale(total, a.headroom, 1000, true)
	}
	return total
}

// allocScale is x*num/den rounded down (or up), saturating; den > 0.
func allocScale(x, num, den uint64, up bool) uint64 {
	hi, lo := bits.Mul64(x, num)
	if up {
		var c uint64
		lo, c = bits.Add64(lo, den-1, 0)
		hi += c
	}
	if hi >= den {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, den)
	return q
}

// preempt lowers the tracks of lower classes (ws) so that total, which
// includes them, fits in limit; it returns how much it freed, or false
// when even pausing them all would not make room.
func (a *Allocator) preempt(now int64, ws []allocWork, total, limit uint64) (uint64, bool) {
	var lower uint64
	for i := range ws {
		lower += ws[i].cost()
	}
	if lower == 0 || total-lower > limit {
		return 0, false
	}
	return total - a.trim(now, ws, total, limit), true
}

// finish writes the video targets and remembers them, starting the trial
// of new tracks placed; it reports whether some video track is below its
// best step.
func (a *Allocator) finish(now int64, targets []Layer) (deficient bool) {
	for i := range a.work {
		w := &a.work[i]
		l := w.layer()
		targets[w.idx] = l
		st := w.st
		st.target = l
		if w.fresh && w.level >= 0 {
			st.placed, st.placedAt = l, now
		}
		st.fresh = false
		if w.level < w.n-1 {
			deficient = true
		}
	}
	clear(a.work) // keep no references to the caller's IDs
	return deficient
}
