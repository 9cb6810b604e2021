package interop

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 13's thresholds (never loosened to make a run pass).
const (
	ccSettleWithinMs  = 2000 // point 2
	ccMaxGapMs        = 250  // point 3, after the first 3 s of the cap
	ccGapFromMs       = 3000
	ccMaxLossPct      = 1.0  // point 3, video after retransmission and audio
	ccRecoverWithinMs = 8000 // point 4
	ccPauseWithinMs   = 1000 // point 5
	ccPauseAudioPct   = 2.0  // point 5
	ccOpenWithinMs    = 500  // point 7
	ccTopWidth        = 1280
	ccFullFPS         = 18 // frames in a 1 s window: 90 % of the publisher's 20 fps
)

// ccMetrics are one run's figures (times in ms, relative to the event named).
type ccMetrics struct {
	OpenMs         float64 // subscribed (first video packet) -> first complete 1280-wide frame
	FirstVideoMs   float64 // join request -> first video packet
	JoinTo1280Ms   float64 // join request -> first complete 1280-wide frame
	AboveAfter     int     // frames wider than the wanted layer after settling, under the cap
	SettleMs       float64 // cap -> first frame of the wanted layer (-1 never)
	Layers         []int   // widths decoded from the cap on, consecutive duplicates dropped
	Direct         bool    // no lower layer and nothing but the start layer before settling
	Changes        int     // layer changes from settling to the cap's end
	ChangesPer30s  float64
	Window         float64 // ms from settling to the cap's end
	GapMs          float64 // longest gap between complete frames from cap+3 s to the cap's end
	PadPkts        int     // padding-only video packets received in the loss span
	Incomplete     int     // video frames (RTP timestamps) with media in the loss span that never completed
	VideoLossPct   float64
	VideoLost      int64
	VideoExpected  int64
	AudioLossPct   float64
	RecoverMs      float64 // cap off -> 1280 at >= 18 fps over 1 s (-1 never)
	PausedMs       float64 // pause case: cap -> last frame under the cap (-1 video kept flowing)
	BackMs         float64 // pause case: cap off -> first frame again
	TbfKbps        float64
	TbfDrops, Over int64
}

func runCCCase(t *testing.T, n *ccNet, s *ccServer, c ccCase, full bool) {
	window, settle, baseline := 10*time.Second, 3*time.Second, 3*time.Second
	if full {
		window = 30 * time.Second
	}
	if c.want == 0 {
		window = 6 * time.Second
	}
	hold := settle + window
	identity := fmt.Sprintf("sub-%d", time.Now().UnixNano()%1e6)
	sub := startCCSub(t, n, s, identity, 20*time.Second+baseline+hold+15*time.Second)
	if !sub.waitFor(20*time.Second, func(ev []ccEvent) bool { return firstFrame(ev, ccTopWidth, 0) != nil }) {
		t.Fatalf("the subscriber never decoded a complete %d-wide frame on the open link (%d events)", ccTopWidth, len(sub.snapshot()))
	}
	time.Sleep(baseline)
	b0, d0, o0 := n.tbfStats()
	if err := n.shape(c.shape); err != nil {
		t.Fatal(err)
	}
	t0 := nowMs()
	time.Sleep(hold)
	b1, d1, o1 := n.tbfStats()
	if err := n.unshape(); err != nil {
		t.Fatal(err)
	}
	t1 := nowMs()
	sub.waitFor(ccRecoverWithinMs*time.Millisecond+2*time.Second, func(ev []ccEvent) bool {
		return recoverAt(ev, t1) > 0 || (c.want == 0 && firstFrame(ev, 0, t1) != nil && nowMs()-t1 > 3000)
	})
	time.Sleep(500 * time.Millisecond)
	sub.close()
	ev := sub.snapshot()
	m := analyzeCC(ev, c, t0, t1)
	m.TbfKbps = float64(b1-b0) * 8 / (t1 - t0)
	m.TbfDrops, m.Over = d1-d0, o1-o0
	line := fmt.Sprintf("congestion-metric: sub=go server=%s shape=%s open_ms=%.0f join_to_1280_ms=%.0f first_video_ms=%.0f settle_ms=%.0f layers=%s direct=%v above_rate_frames=%d "+
		"changes=%d changes_per_30s=%.1f window_s=%.0f max_gap_ms=%.0f video_loss=%.2f%% (%d/%d) pad_pkts=%d incomplete_frames=%d audio_loss=%.2f%% "+
		"recover_ms=%.0f paused_ms=%.0f back_ms=%.0f tbf_kbps=%.0f tbf_drops=%d tbf_overlimits=%d",
		s.name, c.name(), m.OpenMs, m.JoinTo1280Ms, m.FirstVideoMs, m.SettleMs, layerNames(m.Layers), m.Direct, m.AboveAfter, m.Changes, m.ChangesPer30s, m.Window/1000,
		m.GapMs, m.VideoLossPct, m.VideoLost, m.VideoExpected, m.PadPkts, m.Incomplete, m.AudioLossPct, m.RecoverMs, m.PausedMs, m.BackMs,
		m.TbfKbps, m.TbfDrops, m.Over)
	fmt.Println(line)
	t.Log(line)
	if s.name == "fanout" {
		t.Logf("fanout's decisions for %s (ms from the cap):\n%s", identity, decisionLines(s.logPath, identity, t0))
	}
	checkCC(t, c, m, window)
}

// checkCC asserts issue 13's points 2-5 and 7 on one run's figures.
func checkCC(t *testing.T, c ccCase, m ccMetrics, window time.Duration) {
	t.Helper()
	if m.Over == 0 {
		t.Errorf("infrastructure: the tbf qdisc never held a packet back (overlimits 0): the cap did not bind")
	}
	// server-sdk-go shows no subscription before a track's first packet
	// (pion's OnTrack), and a server that sent nothing until it had a
	// top-layer keyframe would score 0 from there: point 7 is checked from
	// the join request, an upper bound on the time from subscribing.
	if m.JoinTo1280Ms < 0 || m.JoinTo1280Ms > ccOpenWithinMs {
		t.Errorf("point 7: first complete %d-wide frame %.0f ms after the join request on the open link, want <= %d", ccTopWidth, m.JoinTo1280Ms, ccOpenWithinMs)
	}
	if c.want == 0 {
		if m.PausedMs < 0 || m.PausedMs > ccPauseWithinMs {
			t.Errorf("point 5: video not paused within %d ms of a %d kbit/s cap (last frame at %.0f ms; -1 = frames until the cap came off)", ccPauseWithinMs, c.shape.RateKbit, m.PausedMs)
		}
		if m.AudioLossPct >= ccPauseAudioPct {
			t.Errorf("point 5: audio loss %.2f %% under the pause cap, want < %.0f %%", m.AudioLossPct, ccPauseAudioPct)
		}
		if m.BackMs < 0 || m.BackMs > ccRecoverWithinMs {
			t.Errorf("point 5: video back %.0f ms after the cap lifted, want <= %d ms", m.BackMs, ccRecoverWithinMs)
		}
		return
	}
	if m.SettleMs < 0 || m.SettleMs > ccSettleWithinMs {
		t.Errorf("point 2: settled on %d wide %.0f ms after the cap (-1 never), want <= %d ms; layers %s", c.want, m.SettleMs, ccSettleWithinMs, layerNames(m.Layers))
	}
	if !m.Direct {
		t.Errorf("point 2: not direct to %d wide: layers after the cap %s", c.want, layerNames(m.Layers))
	}
	if m.AboveAfter > 0 {
		t.Errorf("point 2: after settling, %d frames of a layer above the rate (wider than %d) under the cap; layers %s", m.AboveAfter, c.want, layerNames(m.Layers))
	}
	if allowed := int(math.Ceil(float64(window) / float64(30*time.Second))); m.Changes > allowed {
		t.Errorf("point 2: %d layer changes in the %.0f s after settling (%.1f per 30 s), want <= %d", m.Changes, m.Window/1000, m.ChangesPer30s, allowed)
	}
	if m.GapMs > ccMaxGapMs {
		t.Errorf("point 3: a %.0f ms gap between complete frames after the first 3 s of the cap, want <= %d ms", m.GapMs, ccMaxGapMs)
	}
	if m.VideoLossPct >= ccMaxLossPct {
		t.Errorf("point 3: video loss after retransmission %.2f %% (%d of %d), want < %.0f %%", m.VideoLossPct, m.VideoLost, m.VideoExpected, ccMaxLossPct)
	}
	if m.AudioLossPct >= ccMaxLossPct {
		t.Errorf("point 3: audio loss %.2f %%, want < %.0f %%", m.AudioLossPct, ccMaxLossPct)
	}
	if m.RecoverMs < 0 || m.RecoverMs > ccRecoverWithinMs {
		t.Errorf("point 4: %d wide at >= %d fps %.0f ms after the cap came off (-1 never), want <= %d ms", ccTopWidth, ccFullFPS, m.RecoverMs, ccRecoverWithinMs)
	}
}

// analyzeCC computes the figures from the subscriber's events; the cap was on from t0 to t1.
func analyzeCC(ev []ccEvent, c ccCase, t0, t1 float64) ccMetrics {
	m := ccMetrics{SettleMs: -1, RecoverMs: -1, PausedMs: -1, BackMs: -1, OpenMs: -1, FirstVideoMs: -1, JoinTo1280Ms: -1}
	// Subscribed: the video track's first packet (pion fires
	// OnTrackSubscribed with it); the join request for reference.
	join, sub, top := firstEvent(ev, "join", ""), firstEvent(ev, "sub", "v"), firstFrame(ev, ccTopWidth, 0)
	if sub != nil && top != nil {
		m.OpenMs = top.T - sub.T
	}
	if join != nil && sub != nil {
		m.FirstVideoMs = sub.T - join.T
	}
	if join != nil && top != nil {
		m.JoinTo1280Ms = top.T - join.T
	}
	var frames []ccEvent
	for _, e := range ev {
		if e.Ev == "frame" {
			frames = append(frames, e)
		}
	}
	layerPath(&m, frames, c, t0, t1)
	m.GapMs = longestFrameGap(frames, t0+ccGapFromMs, t1)
	m.VideoLost, m.VideoExpected = seqLoss(ev, "v", t0+ccGapFromMs, t1)
	m.PadPkts, m.Incomplete = mediaLoss(ev, t0+ccGapFromMs, t1)
	aLost, aExp := seqLoss(ev, "a", t0+ccGapFromMs, t1)
	if c.want == 0 {
		aLost, aExp = seqLoss(ev, "a", t0+ccPauseWithinMs, t1)
	}
	m.VideoLossPct = pct(m.VideoLost, m.VideoExpected)
	m.AudioLossPct = pct(aLost, aExp)
	if r := recoverAt(ev, t1); r > 0 {
		m.RecoverMs = r - t1
	}
	if f := firstFrame(ev, 0, t1); f != nil {
		m.BackMs = f.T - t1
	}
	return m
}

// layerPath fills the layers visited under the cap (t0..t1), when and how
// directly the wanted layer was reached, the changes after it, and for the
// pause case when the last frame came.
func layerPath(m *ccMetrics, frames []ccEvent, c ccCase, t0, t1 float64) {
	start := 0
	for _, f := range frames {
		if f.T < t0 {
			start = f.W
		}
	}
	m.Layers = []int{start}
	settleT := -1.0
	m.Direct = c.want > 0
	if c.want == 0 {
		m.PausedMs = 0 // no frame at all under the cap
	}
	for _, f := range frames {
		if f.T < t0 || f.T > t1 {
			continue
		}
		if f.W != m.Layers[len(m.Layers)-1] {
			m.Layers = append(m.Layers, f.W)
		}
		if c.want == 0 {
			m.PausedMs = f.T - t0
		} else if settleT < 0 {
			if f.W == c.want {
				settleT = f.T
			} else if f.W < c.want || f.W != start {
				m.Direct = false
			}
		}
	}
	if c.want == 0 && t1-(t0+m.PausedMs) < 500 {
		m.PausedMs = -1 // frames until the cap came off: never paused
	}
	if settleT < 0 {
		m.Direct = false
		return
	}
	m.SettleMs = settleT - t0
	m.Window = t1 - settleT
	last := c.want
	for _, f := range frames {
		if f.T < settleT || f.T > t1 {
			continue
		}
		if f.W != last {
			m.Changes++
			last = f.W
		}
		if f.W > c.want {
			m.AboveAfter++
		}
	}
	if m.Window > 0 {
		m.ChangesPer30s = float64(m.Changes) * 30000 / m.Window
	}
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) * 100 / float64(b)
}

func firstEvent(ev []ccEvent, kind, k string) *ccEvent {
	for i := range ev {
		if ev[i].Ev == kind && ev[i].Kind == k {
			return &ev[i]
		}
	}
	return nil
}

// firstFrame is the first complete frame after `after` of width w (0: any).
func firstFrame(ev []ccEvent, w int, after float64) *ccEvent {
	for i := range ev {
		if ev[i].Ev == "frame" && ev[i].T > after && (w == 0 || ev[i].W == w) {
			return &ev[i]
		}
	}
	return nil
}

// recoverAt is when, after t1, the last second first held >= ccFullFPS complete
// 1280-wide frames and nothing narrower (0: not yet).
func recoverAt(ev []ccEvent, t1 float64) float64 {
	var win []float64
	for _, e := range ev {
		if e.Ev != "frame" || e.T <= t1 {
			continue
		}
		if e.W != ccTopWidth {
			win = win[:0]
			continue
		}
		win = append(win, e.T)
		for len(win) > 0 && win[0] <= e.T-1000 {
			win = win[1:]
		}
		if len(win) >= ccFullFPS && e.T-1000 >= t1 {
			return e.T
		}
	}
	return 0
}

// longestFrameGap is the longest time without a complete frame within [from, to].
func longestFrameGap(frames []ccEvent, from, to float64) float64 {
	last, gap := from, 0.0
	for _, f := range frames {
		if f.T < from || f.T > to {
			continue
		}
		gap = math.Max(gap, f.T-last)
		last = f.T
	}
	return math.Max(gap, to-last)
}

// seqLoss counts the sequence numbers of kind k that never arrived, over
// the range of those that first arrived within [from, to]: a number missing
// counts as lost only if no retransmission ever filled it, up to the end
// of the run.
func seqLoss(ev []ccEvent, k string, from, to float64) (lost, expected int64) {
	got := map[int64]bool{}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, e := range ev {
		if e.Ev != "pkt" || e.Kind != k {
			continue
		}
		if !got[e.Seq] && e.T >= from && e.T <= to {
			lo, hi = min(lo, e.Seq), max(hi, e.Seq)
		}
		got[e.Seq] = true
	}
	if hi < lo {
		return 0, 0
	}
	expected = hi - lo + 1
	for s := lo; s <= hi; s++ {
		if !got[s] {
			lost++
		}
	}
	return lost, expected
}

// mediaLoss counts the padding-only video packets that arrived within
// [from, to], and the frames (RTP timestamps) of media packets that arrived
// then but never became complete: a lost sequence number that belonged to
// a padding packet leaves no frame incomplete.
func mediaLoss(ev []ccEvent, from, to float64) (pad, incomplete int) {
	seen := map[uint32]bool{}
	for _, e := range ev {
		if e.Ev != "pkt" || e.Kind != "v" || e.T < from || e.T > to {
			continue
		}
		if e.Empty {
			pad++
		} else {
			seen[e.TS] = true
		}
	}
	for _, e := range ev {
		if e.Ev == "frame" {
			delete(seen, e.TS)
		}
	}
	return pad, len(seen)
}

func layerNames(ws []int) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		switch w {
		case 1280:
			names[i] = "HIGH"
		case 640:
			names[i] = "MEDIUM"
		case 320:
			names[i] = "LOW"
		default:
			names[i] = fmt.Sprint(w)
		}
	}
	return strings.Join(names, ">")
}

var decisionRe = regexp.MustCompile(`msg="(layer allocation|layer switch|probe[^"]*|bandwidth estimate[^"]*|[^"]*backoff[^"]*)"`)

// decisionLines are fanout's debug log lines about identity's layers,
// probes and estimates, with times relative to t0 (Unix ms).
func decisionLines(logPath, identity string, t0 float64) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, "identity="+identity) || !decisionRe.MatchString(l) {
			continue
		}
		if i := strings.Index(l, " "); strings.HasPrefix(l, "time=") && i > 0 {
			if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(l[:i], "time=")); err == nil {
				l = fmt.Sprintf("%+7.0f %s", float64(ts.UnixNano())/1e6-t0, l[i+1:])
			}
		}
		out = append(out, "  "+l)
	}
	if len(out) > 120 {
		out = append(out[:60], append([]string{"  ..."}, out[len(out)-60:]...)...)
	}
	return strings.Join(out, "\n")
}
