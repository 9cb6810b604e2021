package signaling_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// Congestion-driven layer choice, end to end over pion's virtual network:
// a publisher sends three real VP8 layers (testdata/simulcast: about 150,
// 480 and 1400 kbit/s) and an audio stream; the subscriber's downlink is
// shaped (rate, delay, loss) while it runs. Each test logs its figures on
// lines starting "congestion-metric:" (BENCHMARKS.md quotes them).

// Widths of the layers of the test media.
const (
	lowWidth    = 320
	mediumWidth = 640
	highWidth   = 1280
)

// ccRoom is a room on a shapedNet: alice publishes, bob receives.
type ccRoom struct {
	net    *shapedNet
	bob    *client.Client
	watch  *layerWatch
	cams   []*livekit.TrackInfo
	screen *livekit.TrackInfo
	audio  *livekit.TrackInfo
	// published is when the first camera was published.
	published time.Time
}

// startCCRoom starts a node on a shaped network whose subscriber downlink
// is capped at rate, and publishes cams simulcast cameras, a screen share
// (simulcast too) if screen, and an audio track.
func startCCRoom(t *testing.T, room string, rate, cams int, screen bool) *ccRoom {
	t.Helper()
	checkLeaks(t, vnetDelayLeak)
	return newCCRoom(t, room, rate, cams, screen)
}

// newCCRoom is startCCRoom without the goroutine leak check, for tests that
// run in parallel with others (their parent checks).
func newCCRoom(t *testing.T, room string, rate, cams int, screen bool) *ccRoom {
	t.Helper()
	r := &ccRoom{net: newShapedNet(t)}
	r.net.SetRate(rate)
	n := startShapedNode(t, r.net)
	r.bob = n.join(t, room, "bob", clientOptions(client.Options{}, r.net.sub))
	r.watch = watchLayers(r.bob)
	alice := n.join(t, room, "alice", clientOptions(simulcastClientOptions(), r.net.pub))
	mic := newAudioTrack(t, "mic")
	info, _, err := alice.Publish(ctxTimeout(t, 10*time.Second), mic, &livekit.AddTrackRequest{
		Cid: "mic", Name: "mic", Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE,
	})
	if err != nil {
		t.Fatalf("publish audio: %v", err)
	}
	startSource(t, mic, false)
	r.audio = info
	r.published = time.Now()
	for i := range cams {
		cam, _ := publishSimulcastFiles(t, alice, "vp8", fmt.Sprintf("cam%d", i+1))
		r.cams = append(r.cams, cam)
	}
	if screen {
		r.screen, _ = publishSimulcastFilesWith(t, alice, "vp8", "screen",
			simPublishOptions{source: livekit.TrackSource_SCREEN_SHARE})
	}
	return r
}

// streamState waits, from mark on, for a streamStateUpdate of track sid in
// state and returns when it came.
func (r *ccRoom) streamState(t *testing.T, mark int, sid string, state livekit.StreamState, limit time.Duration) (time.Time, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err := r.bob.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		for _, s := range m.GetStreamStateUpdate().GetStreamStates() {
			if s.TrackSid == sid && s.State == state {
				return true
			}
		}
		return false
	})
	return time.Now(), err == nil
}

// stable checks that track sid stays at width from now for d, and returns
// its layer changes, its packets received and lost over that time (for
// video, the media packets of its frames: probe padding lost on purpose
// is not video).
func (r *ccRoom) stable(sid string, d time.Duration) (changes []layerChange, received, lost int) {
	from := time.Now()
	time.Sleep(d)
	to := time.Now()
	received, lost = r.watch.window(sid, from, to)
	if r.watch.isVideo(sid) {
		var packets int
		packets, lost = r.watch.videoLoss(sid, from, to)
		received = packets - lost
	}
	return r.watch.changesSince(sid, from), received, lost
}

// lossPercent is lost over expected, in percent.
func lossPercent(received, lost int) float64 {
	if received+lost == 0 {
		return 0
	}
	return 100 * float64(lost) / float64(received+lost)
}

// TestCongestionCapAndRecovery covers acceptance points 1 to 3: an
// unconstrained subscriber settles on HIGH within 5 s; under an 800 kbit/s
// cap it moves to MEDIUM within 3 s and stays there, with little loss and
// at most one layer change per 10 s; with the cap lifted it is back on
// HIGH within 15 s, through probing.
func TestCongestionCapAndRecovery(t *testing.T) {
	r := startCCRoom(t, "cc-cap", unlimited, 1, false)
	cam := r.cams[0].Sid
	// Media starts at the top layer (nothing is measured yet), the
	// allocator then places it by the initial estimate and probes up:
	// settled means HIGH 5 s after publishing and no change after.
	time.Sleep(time.Until(r.published.Add(5 * time.Second)))
	changes, _, _ := r.stable(cam, 3*time.Second)
	all := r.watch.changesSince(cam, r.published)
	if w := r.watch.width(cam); w != highWidth || len(changes) != 0 {
		t.Fatalf("unconstrained: width %d 5 s after publishing, changes after %v; want HIGH", w, changes)
	}
	t.Logf("congestion-metric: scenario=unconstrained settled_high_after=%v changes=%d",
		all[len(all)-1].at.Sub(r.published).Round(time.Millisecond), len(all))

	r.net.SetRate(800_000)
	capped := time.Now()
	down, ok := r.watch.waitWidth(t, cam, mediumWidth, false, 3*time.Second)
	if !ok {
		t.Fatalf("800 kbit/s: width %d 3 s after the cap, want %d (changes %v)",
			r.watch.width(cam), mediumWidth, r.watch.changesSince(cam, capped))
	}
	time.Sleep(2 * time.Second) // the switch settles; retransmissions of the overload end
	changes, received, lost := r.stable(cam, 20*time.Second)
	width := r.watch.width(cam)
	t.Logf("congestion-metric: scenario=cap800k switch_down=%v width=%d changes_per_min=%.1f loss=%.2f%%",
		down.Round(time.Millisecond), width, float64(len(changes))*3, lossPercent(received, lost))
	if width != mediumWidth {
		t.Errorf("800 kbit/s: settled at width %d, want %d (changes %v)", width, mediumWidth, changes)
	}
	if len(changes) > 2 {
		t.Errorf("800 kbit/s: %d layer changes in 20 s: %v", len(changes), changes)
	}
	if p := lossPercent(received, lost); p >= 2 {
		t.Errorf("800 kbit/s: video loss %.2f%% (%d of %d)", p, lost, received+lost)
	}

	r.net.SetRate(unlimited)
	up, ok := r.watch.waitWidth(t, cam, highWidth, false, 15*time.Second)
	t.Logf("congestion-metric: scenario=cap_lifted switch_up=%v", up.Round(time.Millisecond))
	if !ok {
		t.Errorf("cap lifted: width %d after 15 s, want %d", r.watch.width(cam), highWidth)
	}
}

// TestCongestionPausesVideo covers acceptance point 4 (and issue 13's
// point 5): at 100 kbit/s not even the lowest layer fits, so the video is
// paused with a streamStateUpdate within 1 s while audio goes on whole;
// when the cap rises the video comes back.
func TestCongestionPausesVideo(t *testing.T) {
	r := startCCRoom(t, "cc-pause", unlimited, 1, false)
	cam, mic := r.cams[0].Sid, r.audio.Sid
	time.Sleep(time.Until(r.published.Add(5 * time.Second)))
	if w := r.watch.width(cam); w != highWidth {
		t.Fatalf("unconstrained: width %d 5 s after publishing", w)
	}
	mark := r.bob.Mark()
	capped := time.Now()
	r.net.SetRate(100_000)
	paused, ok := r.streamState(t, mark, cam, livekit.StreamState_PAUSED, 5*time.Second)
	if !ok {
		t.Fatal("100 kbit/s: no streamStateUpdate PAUSED within 5 s")
	}
	if d := paused.Sub(capped); d > time.Second {
		t.Errorf("100 kbit/s: paused %v after the cap, want within 1 s (issue 13, point 5)", d.Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second) // the queue of the overload drains
	_, received, lost := r.stable(mic, 5*time.Second)
	t.Logf("congestion-metric: scenario=cap100k pause_after=%v audio_received=%d audio_lost=%d",
		paused.Sub(capped).Round(time.Millisecond), received, lost)
	if received < 200 || lost > 0 {
		t.Errorf("100 kbit/s, video paused: audio received %d, lost %d in 5 s", received, lost)
	}

	mark = r.bob.Mark()
	lifted := time.Now()
	r.net.SetRate(unlimited)
	active, ok := r.streamState(t, mark, cam, livekit.StreamState_ACTIVE, 15*time.Second)
	if !ok {
		t.Fatal("cap lifted: no streamStateUpdate ACTIVE within 15 s")
	}
	if _, ok := r.watch.waitWidth(t, cam, highWidth, false, 15*time.Second); !ok {
		t.Errorf("cap lifted: width %d, want %d", r.watch.width(cam), highWidth)
	}
	t.Logf("congestion-metric: scenario=cap100k_lifted resume_after=%v high_after=%v",
		active.Sub(lifted).Round(time.Millisecond), time.Since(lifted).Round(time.Millisecond))
}

// TestCongestionScreenShareFirst covers acceptance point 5: under a
// 1.2 Mbit/s cap, a screen share keeps its layer while two cameras step
// down.
func TestCongestionScreenShareFirst(t *testing.T) {
	r := startCCRoom(t, "cc-screen", 1_200_000, 2, true)
	screen := r.screen.Sid
	time.Sleep(8 * time.Second) // settles from the start at the initial estimate
	ids := []string{screen, r.cams[0].Sid, r.cams[1].Sid}
	from := time.Now()
	time.Sleep(15 * time.Second)
	to := time.Now()
	widths := make([]int, len(ids))
	for i, id := range ids {
		widths[i] = r.watch.width(id)
	}
	screenChanges := r.watch.changesSince(screen, from)
	packets, lost := r.watch.videoLoss(screen, from, to)
	received := packets - lost
	t.Logf("congestion-metric: scenario=screen_share_1200k widths(screen,cam1,cam2)=%v screen_changes=%d screen_loss=%.2f%% tracks(screen,cam1,cam2)=%v",
		widths, len(screenChanges), lossPercent(received, lost), ids)
	if widths[0] != mediumWidth || len(screenChanges) != 0 {
		t.Errorf("screen share: width %d, changes %v; want %d throughout", widths[0], screenChanges, mediumWidth)
	}
	for i, w := range widths[1:] {
		if w == 0 || w >= highWidth {
			t.Errorf("camera %d: width %d, want a step down from %d", i+1, w, highWidth)
		}
	}
	if received < 100 {
		t.Errorf("screen share: %d packets in 15 s", received)
	}
}

// TestCongestionLossIsNotCongestion covers acceptance point 6: 50 ms of
// delay and 2 % random loss without a rate cap still settle on HIGH.
func TestCongestionLossIsNotCongestion(t *testing.T) {
	r := startCCRoom(t, "cc-loss", unlimited, 1, false)
	r.net.SetDelay(50 * time.Millisecond)
	r.net.SetLoss(t, 2)
	// Teardown on a clean link: lost and delayed close messages would keep
	// pion's goroutines alive past the leak check.
	t.Cleanup(func() {
		r.net.SetLoss(t, 0)
		r.net.SetDelay(0)
	})
	cam := r.cams[0].Sid
	start := time.Now()
	time.Sleep(10 * time.Second)
	changes, received, lost := r.stable(cam, 10*time.Second)
	width := r.watch.width(cam)
	t.Logf("congestion-metric: scenario=rtt50ms_loss2 width=%d changes_in_10s=%d loss=%.2f%% after=%v",
		width, len(changes), lossPercent(received, lost), time.Since(start).Round(time.Millisecond))
	if width != highWidth || len(changes) != 0 {
		t.Errorf("50 ms, 2 %% loss: width %d, changes %v in the last 10 s; want HIGH throughout", width, changes)
	}
}

// TestCongestionJitterIsNotCongestion covers issue 13's point 6: 50 ms of
// random delay jitter without a rate cap keeps the top layer throughout.
//
// Not under the race detector: its slowdown starves the in-process
// receiver, whose late reads add jitter well beyond the 50 ms the test
// sets (make unit runs the congestion tests once more without it).
func TestCongestionJitterIsNotCongestion(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's slowdown adds jitter beyond the 50 ms under test; make unit runs this without it")
	}
	r := startCCRoom(t, "cc-jitter", unlimited, 1, false)
	r.net.SetJitter(t, 0, 50*time.Millisecond)
	cam := r.cams[0].Sid
	if _, ok := r.watch.waitWidth(t, cam, highWidth, false, 5*time.Second); !ok {
		t.Fatalf("50 ms jitter: width %d 5 s after publishing, want %d", r.watch.width(cam), highWidth)
	}
	changes, received, lost := r.stable(cam, 15*time.Second)
	width := r.watch.width(cam)
	t.Logf("congestion-metric: scenario=jitter50ms width=%d changes_in_15s=%d loss=%.2f%%",
		width, len(changes), lossPercent(received, lost))
	if width != highWidth || len(changes) != 0 {
		t.Errorf("50 ms jitter: width %d, changes %v in 15 s; want HIGH throughout", width, changes)
	}
}

// TestCongestionFastStart covers issue 13's point 7: a subscriber joining
// a room whose camera already sends three layers, on an open link, decodes
// the top layer within 500 ms of joining.
func TestCongestionFastStart(t *testing.T) {
	checkLeaks(t, vnetDelayLeak)
	net := newShapedNet(t)
	n := startShapedNode(t, net)
	alice := n.join(t, "cc-start", "alice", clientOptions(simulcastClientOptions(), net.pub))
	cam, _ := publishSimulcastFiles(t, alice, "vp8", "cam")
	time.Sleep(2 * time.Second) // the layers are measured
	for i := range 3 {
		watch := newLayerWatch()
		joined := time.Now()
		bob := n.join(t, "cc-start", fmt.Sprintf("bob%d", i), clientOptions(client.Options{OnTrack: watch.track}, net.sub))
		var at time.Time
		for time.Since(joined) < 3*time.Second && at.IsZero() {
			time.Sleep(20 * time.Millisecond)
			at = watch.firstDecodedWidth(cam.Sid, highWidth, joined)
		}
		took := at.Sub(joined)
		t.Logf("congestion-metric: scenario=open_start join_to_1280=%v", took.Round(time.Millisecond))
		if at.IsZero() || took > 500*time.Millisecond {
			t.Errorf("subscriber %d: the top layer decoded %v after joining, want within 500 ms", i, took.Round(time.Millisecond))
		}
		bob.Close()
	}
}
