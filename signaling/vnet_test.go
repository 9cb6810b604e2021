package signaling_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// Addresses on the virtual network of the congestion tests.
const (
	vnetCIDR  = "10.0.0.0/24"
	vnetSFU   = "10.0.0.1"
	vnetPub   = "10.0.0.2"
	vnetSub   = "10.0.0.3"
	unlimited = 1_000_000_000 // bit/s: a "rate" that never limits
)

// shapedNet is a virtual network: an in-process node, an unconstrained
// publisher host and a subscriber host whose downlink (everything the node
// sends it) goes through a random loss filter, a fixed delay and a token
// bucket rate limit, all adjustable while the test runs. The subscriber's
// uplink (its feedback) is not shaped.
type shapedNet struct {
	router *vnet.Router
	sfu    *vnet.Net
	pub    *vnet.Net
	sub    *vnet.Net
	tbf    *vnet.TBFQueue
	queue  *vnet.Queue
	delay  *vnet.DelayFilter
	loss   *vnet.LossFilter

	jitterStop, jitterDone chan struct{}
}

// newShapedNet builds and starts the network; it is stopped at cleanup.
func newShapedNet(t *testing.T) *shapedNet {
	t.Helper()
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: vnetCIDR, LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatalf("vnet router: %v", err)
	}
	n := &shapedNet{router: router}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("vnet: %v", err)
		}
	}
	n.sfu, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{vnetSFU}})
	must(err)
	n.pub, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{vnetPub}})
	must(err)
	n.sub, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{vnetSub}})
	must(err)
	// The bottleneck's bucket holds about one full packet (like a real
	// link serializing packets, so that a short burst is not let through
	// at line rate) and its queue 200 ms at the rate, set in SetRate.
	n.tbf = vnet.NewTBFQueue(unlimited, 1500, 1<<20)
	n.queue, err = vnet.NewQueue(n.sub, n.tbf)
	must(err)
	n.delay, err = vnet.NewDelayFilter(n.queue)
	must(err)
	n.loss, err = vnet.NewLossFilter(n.delay, 0)
	must(err)
	must(router.AddNet(n.sfu))
	must(router.AddNet(n.pub))
	must(router.AddNet(n.loss))
	must(router.Start())
	t.Cleanup(n.close)
	return n
}

// close stops the router, then the filters' goroutines.
func (n *shapedNet) close() {
	_ = n.router.Stop()
	_ = n.delay.Close()
	_ = n.queue.Close()
}

// SetRate caps the subscriber's downlink at bps bits/s (unlimited lifts
// the cap), with a one-packet bucket and a queue of 200 ms at that rate.
func (n *shapedNet) SetRate(bps int) {
	n.tbf.SetBurst(1500)
	n.tbf.SetSize(max(int64(bps)/8/5, 8000))
	n.tbf.SetRate(bps)
}

// linkShape is a token bucket bottleneck as `tc tbf` builds one.
type linkShape struct {
	rate  int           // bits per second
	burst int           // bucket size in bytes
	queue time.Duration // tbf latency: the queue holds rate x queue + burst bytes
}

// String names the shape for logs and subtests: "700k-b16k-q100ms".
func (s linkShape) String() string {
	return fmt.Sprintf("%dk-b%dk-q%dms", s.rate/1000, s.burst/1024, s.queue.Milliseconds())
}

// SetShape caps the subscriber's downlink like `tc qdisc add ... tbf rate
// R burst B latency L`: a bucket of B bytes filled at R lets a burst of B
// through at line rate, and the queue behind it holds R x L + B bytes
// before it drops.
func (n *shapedNet) SetShape(s linkShape) {
	n.tbf.SetSize(int64(float64(s.rate)/8*s.queue.Seconds()) + int64(s.burst))
	n.tbf.SetBurst(max(s.burst, 1500))
	n.tbf.SetRate(s.rate)
}

// SetJitter varies the subscriber's downlink delay at random between base
// and base + spread, a new value every 5 ms (packets keep their order: the
// delay filter releases them first in, first out), until the test ends or
// SetJitter is called again.
func (n *shapedNet) SetJitter(t *testing.T, base, spread time.Duration) {
	if n.jitterStop != nil {
		close(n.jitterStop)
		<-n.jitterDone
		n.jitterStop = nil
	}
	n.delay.SetDelay(base)
	if spread <= 0 {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	n.jitterStop, n.jitterDone = stop, done
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				n.delay.SetDelay(base + time.Duration(rng.Int64N(int64(spread))))
			}
		}
	}()
	t.Cleanup(func() { n.SetJitter(t, 0, 0) })
}

// SetDelay delays the subscriber's downlink.
func (n *shapedNet) SetDelay(d time.Duration) { n.delay.SetDelay(d) }

// SetLoss drops percent of the subscriber's downlink packets at random.
func (n *shapedNet) SetLoss(t *testing.T, percent int) {
	if err := n.loss.SetLossRate(percent, true); err != nil {
		t.Fatalf("loss: %v", err)
	}
}

// vnetDelayLeak ignores a goroutine of pion's vnet (transport v5.1.4): its
// DelayFilter hands a packet that reaches it as the network closes to a
// channel nobody reads any more, and blocks there for good. It is the test
// network's, not the node's.
var vnetDelayLeak = goleak.IgnoreTopFunction("github.com/pion/transport/v5/vnet.(*DelayFilter).onInboundChunk")

// clientOptions puts a client's media on host h of the network.
func clientOptions(base client.Options, h *vnet.Net) client.Options {
	base.Settings = func(se *webrtc.SettingEngine) {
		se.SetNet(h)
		se.SetIncludeLoopbackCandidate(false)
		se.SetInterfaceFilter(func(name string) bool { return name == "eth0" })
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	return base
}

// startShapedNode starts a node whose media runs on n.
func startShapedNode(t *testing.T, n *shapedNet) *node {
	t.Helper()
	return startNode(t, nodeOptions{net: n.sfu, bindIP: vnetSFU, keepDecisions: true})
}

// layerChange is the moment a subscriber's received video changed width.
type layerChange struct {
	at    time.Time
	width int
}

// arrival is one RTP packet a subscriber received.
type arrival struct {
	at  time.Time
	seq uint16
	ts  uint32
	// Video: the packet starts a frame (VP8 S bit, partition 0), ends one
	// (RTP marker), starts a keyframe.
	start, end, key bool
	pid             uint16 // VP8 picture id (15 bits)
	vp8             bool   // the payload had a VP8 descriptor
	width           int    // a keyframe's first packet: its width
}

// streamLog is what a subscriber received on one track.
type streamLog struct {
	kind     webrtc.RTPCodecType
	changes  []layerChange // video: width of each keyframe that differs from the last
	arrivals []arrival
	width    int
}

// layerWatch records, per received track id, the layer changes (from VP8
// keyframe headers) and every packet's arrival.
type layerWatch struct {
	mu      sync.Mutex
	streams map[string]*streamLog
}

func watchLayers(c *client.Client) *layerWatch {
	w := newLayerWatch()
	c.OnTrack(w.track)
	return w
}

// newLayerWatch returns a watch to hand to client.Options.OnTrack.
func newLayerWatch() *layerWatch { return &layerWatch{streams: map[string]*streamLog{}} }

// track starts recording a received track.
func (w *layerWatch) track(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	s := &streamLog{kind: tr.Kind()}
	w.mu.Lock()
	w.streams[tr.ID()] = s
	w.mu.Unlock()
	go w.read(tr, s)
}

func (w *layerWatch) read(tr *webrtc.TrackRemote, s *streamLog) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var vp8 codecs.VP8Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		width := 0
		a := arrival{at: now, seq: pkt.SequenceNumber, ts: pkt.Timestamp, end: pkt.Marker}
		if s.kind == webrtc.RTPCodecTypeVideo && len(pkt.Payload) > 0 {
			payload, err := vp8.Unmarshal(pkt.Payload)
			if err == nil {
				a.vp8, a.pid = true, vp8.PictureID
			}
			if err == nil && vp8.S == 1 && vp8.PID == 0 {
				a.start = true
				a.key = len(payload) > 0 && payload[0]&1 == 0
				width = vp8KeyframeWidth(payload)
			}
		}
		a.width = width
		w.mu.Lock()
		s.arrivals = append(s.arrivals, a)
		if width != 0 && width != s.width {
			s.width = width
			s.changes = append(s.changes, layerChange{at: now, width: width})
		}
		w.mu.Unlock()
	}
}

// vp8KeyframeWidth is the width in a VP8 keyframe's header, 0 for an
// interframe or a short payload.
func vp8KeyframeWidth(p []byte) int {
	if len(p) < 10 || p[0]&1 != 0 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
		return 0
	}
	return int(binary.LittleEndian.Uint16(p[6:8]) & 0x3fff)
}

// width is the width of the last keyframe received on track id.
func (w *layerWatch) width(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.streams[id]; s != nil {
		return s.width
	}
	return 0
}

// isVideo reports whether track id is a video track.
func (w *layerWatch) isVideo(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.streams[id]
	return s != nil && s.kind == webrtc.RTPCodecTypeVideo
}

// changesSince returns the layer changes of track id at or after from.
func (w *layerWatch) changesSince(id string, from time.Time) []layerChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.streams[id]
	if s == nil {
		return nil
	}
	var out []layerChange
	for _, c := range s.changes {
		if !c.at.Before(from) {
			out = append(out, c)
		}
	}
	return out
}

// window counts the packets of track id that arrived in [from, to) and
// the sequence numbers missing between the lowest and highest of them
// (a late retransmission fills its gap).
func (w *layerWatch) window(id string, from, to time.Time) (received, lost int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.streams[id]
	if s == nil {
		return 0, 0
	}
	seen := map[uint16]bool{}
	var first, last uint16
	for _, a := range s.arrivals {
		if a.at.Before(from) || !a.at.Before(to) {
			continue
		}
		if len(seen) == 0 {
			first, last = a.seq, a.seq
		}
		if int16(a.seq-first) < 0 {
			first = a.seq
		}
		if int16(a.seq-last) > 0 {
			last = a.seq
		}
		seen[a.seq] = true
	}
	if len(seen) == 0 {
		return 0, 0
	}
	return len(seen), int(last-first) + 1 - len(seen)
}

// waitWidth waits until track id receives a keyframe of width want (or,
// with below, narrower than want) and returns how long it took.
func (w *layerWatch) waitWidth(t *testing.T, id string, want int, below bool, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		got := w.width(id)
		if (below && got != 0 && got < want) || (!below && got == want) {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return limit, false
}
