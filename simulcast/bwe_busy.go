package simulcast

// Bottleneck rate while busy. A packet that arrived more than
// busyQueuedMs later than the path's fastest recent packet waited in a
// queue; while a queue stands, the bottleneck serves back to back, so the
// bytes of consecutive queued packets over their arrival span are its
// rate. The recent acked bitrate is not: right after a token bucket runs
// dry its window still holds the bucket's burst at the sender's pace (a
// 32 kB bucket at 300 kbit/s doubled it), and once the sender cuts its
// rate it holds the sender's rate, not the link's.
const (
	busyQueuedMs   = 10.0
	busyRing       = 64
	busySpan       = int64(300e6) // arrivals this far back count
	busyMinPackets = 6
	busyMinSpan    = int64(40e6)
	// busyBaseSpan: the fastest delay is the least of the last two spans
	// of this length, so that it follows a changed route within 10 s.
	busyBaseSpan = int64(5e9)
)

// busyMeter measures the bottleneck's rate from the queued packets.
type busyMeter struct {
	at   [busyRing]int64
	size [busyRing]int32
	head int
	n    int

	base, prevBase int64 // fastest arrival - send, this and the last span
	baseFrom       int64 // arrival time the current span started
	based          bool

	// newestArr and queued: the newest arrival reported, and how much
	// longer than the fastest recent packet it took (ns).
	newestArr, queued int64
}

// add takes one received packet.
func (b *busyMeter) add(r *PacketResult) {
	owd := r.Arrival - r.SendTime
	switch {
	case !b.based || r.Arrival < b.baseFrom:
		b.base, b.prevBase, b.baseFrom, b.based = owd, owd, r.Arrival, true
	case r.Arrival-b.baseFrom >= busyBaseSpan:
		b.prevBase, b.base, b.baseFrom = b.base, owd, r.Arrival
	}
	b.base = min(b.base, owd)
	queued := owd - min(b.base, b.prevBase)
	if r.Arrival >= b.newestArr {
		b.newestArr, b.queued = r.Arrival, queued
	}
	if float64(queued)/1e6 < busyQueuedMs {
		// Not queued: the queue emptied, and the run of back-to-back
		// packets ends here (a span across it would count the link's
		// idle time as serialization).
		b.n = 0
		return
	}
	b.at[b.head], b.size[b.head] = r.Arrival, int32(min(max(r.Size, 0), 1<<20))
	b.head = (b.head + 1) % busyRing
	b.n = min(b.n+1, busyRing)
}

// queueDelay is how long the newest packet reported waited in queues
// (ns): its one-way delay over the fastest recent packet's.
func (b *busyMeter) queueDelay() int64 { return max(b.queued, 0) }

// rate is the bottleneck's rate (bits/s) from the queued packets that
// arrived within busySpan of the newest, or 0 when too few did.
func (b *busyMeter) rate() float64 {
	if b.n < busyMinPackets {
		return 0
	}
	newest := b.at[(b.head-1+busyRing)%busyRing]
	first := newest
	var bytes int64
	count := 0
	for i := 1; i < b.n; i++ { // the oldest packet's bytes arrived before its span
		k := (b.head - 1 - i + 2*busyRing) % busyRing
		if newest-b.at[k] > busySpan || b.at[k] > newest {
			break
		}
		bytes += int64(b.size[(k+1)%busyRing])
		first = b.at[k]
		count++
	}
	if count+1 < busyMinPackets || newest-first < busyMinSpan {
		return 0
	}
	return float64(bytes) * 8 / (float64(newest-first) / 1e9)
}
