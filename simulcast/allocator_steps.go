package simulcast

import "math"

// A video track's steps: the layers the allocator may give it, ranked and
// pruned (see Allocator's doc comment), and the step it holds.

// allocCeiling is the highest spatial and temporal layer ceiling allows.
func allocCeiling(ceiling Layer) (spatial, temporal int8) {
	temporal = ceiling.Temporal
	if temporal < 0 || temporal > AllTemporal {
		temporal = AllTemporal
	}
	return min(ceiling.Spatial, MaxSpatial-1), temporal
}

// build lists the steps of a track: its available layers within ceiling
// in rank order, or its lowest available layer when none is within it,
// without the layers that cost no less than a better one, and for a
// camera without the low frame rates of its upper spatial layers.
func (w *allocWork) build(ceiling Layer, rates *allocRates, camera bool) {
	maxS, maxT := allocCeiling(ceiling)
	w.n = 0
	for s := int8(0); s <= maxS; s++ {
		for t := int8(0); t <= maxT; t++ {
			if r := rates[s][t]; r > 0 {
				w.rungs[w.n] = allocRung{Layer{s, t}, r}
				w.n++
			}
		}
	}
	for s := int8(0); s < MaxSpatial && w.n == 0; s++ {
		for t := int8(0); t <= AllTemporal && w.n == 0; t++ {
			if r := rates[s][t]; r > 0 {
				w.rungs[0] = allocRung{Layer{s, t}, r}
				w.n = 1
			}
		}
	}
	k, low := w.n, uint64(math.MaxUint64)
	for i := w.n - 1; i >= 0; i-- {
		if c := w.rungs[i].cost; c < low {
			low = c
			k--
			w.rungs[k] = w.rungs[i]
		}
	}
	w.n = int8(copy(w.rungs[:], w.rungs[k:w.n]))
	if camera {
		w.keepFrameRate()
	}
}

// keepFrameRate drops the steps of every spatial layer above the lowest
// but its two best (the steps are in rank order).
func (w *allocWork) keepFrameRate() {
	n := int8(0)
	for i := int8(0); i < w.n; i++ {
		s := w.rungs[i].layer.Spatial
		upper := s > w.rungs[0].layer.Spatial
		if upper && i+2 < w.n && w.rungs[i+2].layer.Spatial == s {
			continue // two better steps of the same layer follow
		}
		w.rungs[n] = w.rungs[i]
		n++
	}
	w.n = n
}

// allocDominated reports whether base is an available layer within the
// ceiling: when it is not among the steps, a better one costs no more.
func allocDominated(base, ceiling Layer, rates *allocRates) bool {
	maxS, maxT := allocCeiling(ceiling)
	return base.Spatial >= 0 && base.Spatial <= maxS && base.Temporal >= 0 && base.Temporal <= maxT &&
		rates[base.Spatial][base.Temporal] > 0
}

// keepCap is the highest step the keep pass gives a track whose last
// target was base: base itself; for a skipped layer the better step that
// costs no more; for a layer gone or above the ceiling the best step below
// it, else the lowest step; for a new track the best step.
func (w *allocWork) keepCap(base Layer, dominated bool) int8 {
	if w.fresh {
		return w.n - 1
	}
	if base.Spatial < 0 {
		return -1
	}
	below := int8(-1)
	for i := int8(0); i < w.n; i++ {
		l := w.rungs[i].layer
		if l == base {
			return i
		}
		if allocLess(base, l) {
			if dominated {
				return i
			}
			break
		}
		below = i
	}
	return max(below, 0)
}

// allocLess ranks layers: by spatial layer, then temporal layer.
func allocLess(x, y Layer) bool {
	return x.Spatial < y.Spatial || (x.Spatial == y.Spatial && x.Temporal < y.Temporal)
}

// layer is the track's chosen layer.
func (w *allocWork) layer() Layer {
	if w.level < 0 {
		return NoLayer
	}
	return w.rungs[w.level].layer
}

// cost is the bitrate of the track's chosen layer.
func (w *allocWork) cost() uint64 {
	if w.level < 0 {
		return 0
	}
	return w.rungs[w.level].cost
}
