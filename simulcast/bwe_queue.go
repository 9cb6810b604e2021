package simulcast

// Direct queue-growth detection. The trendline filter is tuned to tell a
// slowly building queue from jitter, which makes it slow on the abrupt
// overload a token bucket gives: the bucket hides the overload until it is
// empty, and then the queue behind it grows by up to a millisecond per
// millisecond, filling a 100 ms buffer before the smoothed trend crosses
// its threshold. This detector compares the mean accumulated delay of the
// groups of the last queueMeanSpan with that of the groups one
// queueCompareGap earlier: a rise of queueGrowthMs is overuse. Means over
// several groups keep random jitter (tens of milliseconds, order kept)
// well under the threshold.
//
// Under an overload the groups (frames) arrive far apart, each a full
// frame's serialization after the last: so each mean needs only two
// groups, and the threshold is above what two-group means of 50 ms of
// uniform jitter reach but for rare chance (3.5 standard deviations); a
// chance overuse costs a 5 % cut of the estimate to what is being received.
const (
	queueMeanSpan   = int64(150e6)
	queueCompareGap = int64(250e6)
	queueThenSpan   = int64(200e6)
	queueGrowthMs   = 50.0
	queueMinGroups  = 2 // groups each mean needs
	queueRing       = 64
)

// queueWatch keeps the accumulated delay (ms) of recent groups by arrival
// time.
type queueWatch struct {
	at   [queueRing]int64
	acc  [queueRing]float64
	head int // next slot
	n    int
}

func (q *queueWatch) reset() { *q = queueWatch{} }

// add records a group's accumulated delay at its arrival time.
func (q *queueWatch) add(at int64, acc float64) {
	q.at[q.head], q.acc[q.head] = at, acc
	q.head = (q.head + 1) % queueRing
	q.n = min(q.n+1, queueRing)
}

// growing reports whether the delay of the last queueMeanSpan rose by
// queueGrowthMs over that of the span one queueCompareGap before.
func (q *queueWatch) growing() bool {
	if q.n == 0 {
		return false
	}
	newest := q.at[(q.head-1+queueRing)%queueRing]
	var nowSum, thenSum float64
	var nowN, thenN int
	for i := range q.n {
		k := (q.head - 1 - i + 2*queueRing) % queueRing
		age := newest - q.at[k]
		switch {
		case age < 0:
		case age <= queueMeanSpan:
			nowSum += q.acc[k]
			nowN++
		case age >= queueCompareGap && age <= queueCompareGap+queueThenSpan:
			thenSum += q.acc[k]
			thenN++
		}
	}
	if nowN < queueMinGroups || thenN < queueMinGroups {
		return false
	}
	nowMean := nowSum / float64(nowN)
	// The newest group no earlier than the recent mean: a queue that still
	// stands or grows. A receiver that stalled (a busy CPU, a radio
	// waking up) delivers its backlog in a burst whose delays fall back
	// at once.
	return nowMean-thenSum/float64(thenN) >= queueGrowthMs && q.acc[(q.head-1+queueRing)%queueRing] >= nowMean
}
