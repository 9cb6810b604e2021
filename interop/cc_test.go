package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
)

// TestCongestion is the namespace half of issue 13's acceptance matrix
// for a server-sdk-go subscriber (points 2-5 and 7). A fanout-load
// publisher in the root namespace sends three VP8 layers (~150/500/1500
// kbit/s, 20 fps) plus Opus; for each link shape a fresh subscriber joins
// from inside the namespace (the test binary re-executed under `ip netns
// exec`, TestCongestionSubscriber), the open link is measured (first
// 1280-wide frame), the tbf cap goes on the namespace's downlink, stays for
// the settle budget plus the observation window, and comes off.
//
// FANOUT_CC=full runs the whole matrix with a 30 s window (make congestion);
// unset, the short form (one shape, 10 s window) that make test runs;
// FANOUT_CC=off skips. LIVEKIT_SERVER=/path/to/livekit-server also runs
// every case against livekit-server (send-side BWE), for the anchor figures.
func TestCongestion(t *testing.T) {
	mode := os.Getenv("FANOUT_CC")
	if mode == "off" {
		t.Skip("FANOUT_CC=off")
	}
	n, why := ccNetwork(t)
	if why != "" {
		t.Skip("congestion test skipped: " + why)
	}
	checkLeaks(t) // after the network's cleanup: runs last, once servers, publisher and subscribers are gone
	full := mode == "full"
	dir := t.TempDir()
	load := filepath.Join(dir, "fanout-load")
	build := exec.Command("go", "build", "-o", load, "./cmd/fanout-load")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fanout-load: %v\n%s", err, out)
	}
	servers := []string{"fanout"}
	if os.Getenv("LIVEKIT_SERVER") != "" {
		servers = append(servers, "livekit")
	}
	for _, kind := range servers {
		t.Run(kind, func(t *testing.T) {
			s := startCCServer(t, kind, n.hostIP, t.TempDir())
			startCCPublisher(t, load, s, "cc")
			for _, c := range ccMatrix(full) {
				t.Run(c.name(), func(t *testing.T) { runCCCase(t, n, s, c, full) })
			}
		})
	}
}

// ccShape is one tbf setting.
type ccShape struct{ RateKbit, BurstKB, LatencyMs int }

// ccCase is one run: the shape and the layer width that fits it (0: video paused).
type ccCase struct {
	shape ccShape
	want  int
}

func (c ccCase) name() string {
	return fmt.Sprintf("rate%dk_burst%dkB_latency%dms", c.shape.RateKbit, c.shape.BurstKB, c.shape.LatencyMs)
}

// ccMatrix lists the cases: issue 13 point 1's namespace shapes, 300 and
// 1,200 kbit/s at one shape each, and the 100 kbit/s pause.
func ccMatrix(full bool) []ccCase {
	if !full {
		return []ccCase{{ccShape{700, 16, 100}, 640}}
	}
	var cs []ccCase
	for _, b := range []int{2, 16, 32} {
		for _, l := range []int{50, 100} {
			cs = append(cs, ccCase{ccShape{700, b, l}, 640})
		}
	}
	// The pause case has a 2 kB bucket: tbf queues up to rate x latency +
	// burst bytes, and at 100 kbit/s a 16 kB burst alone is 1.3 s of queue,
	// which would deliver frames the server sent before it paused long
	// after the 1 s the issue allows (seen: last frame 2.0 s after the cap).
	return append(cs, ccCase{ccShape{300, 16, 100}, 320}, ccCase{ccShape{1200, 16, 100}, 640}, ccCase{ccShape{100, 2, 100}, 0})
}

// startCCPublisher runs `fanout-load publish` in the root namespace until the test ends.
func startCCPublisher(t *testing.T, load string, s *ccServer, room string) {
	t.Helper()
	cmd := exec.Command(load, "publish", "--url", s.wsURL, "--api-key", apiKey, "--api-secret", ccSecret,
		"--room", room, "--identity", "pub", "--files", "../signaling/testdata/simulcast", "--audio", "testdata/audio_opus.ogg")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	published := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "fanout-load: published") {
				published <- sc.Text()
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-done
		_ = cmd.Wait()
	})
	select {
	case line := <-published:
		t.Logf("%s", line)
	case <-time.After(20 * time.Second):
		t.Fatalf("fanout-load publish did not publish in 20 s: %s\n%s", stderr.String(), tailFile(s.logPath, 0, 40))
	}
}

// ccSub is a running subscriber process in the namespace and its events.
type ccSub struct {
	identity string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	mu       sync.Mutex
	events   []ccEvent
	done     chan struct{}
}

func startCCSub(t *testing.T, n *ccNet, s *ccServer, identity string, maxFor time.Duration) *ccSub {
	t.Helper()
	tok, err := auth.NewAccessToken(apiKey, ccSecret).SetIdentity(identity).SetValidFor(time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: "cc"}).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.ns, self, "-test.run", "^TestCongestionSubscriber$", "-test.timeout", "15m")
	cmd.Env = append(os.Environ(), "FANOUT_CC_URL="+s.wsURL, "FANOUT_CC_TOKEN="+tok, "FANOUT_CC_FOR="+maxFor.String())
	sub := &ccSub{identity: identity, cmd: cmd, done: make(chan struct{})}
	if sub.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(sub.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev ccEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Ev != "" {
				sub.mu.Lock()
				sub.events = append(sub.events, ev)
				sub.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { sub.close() })
	return sub
}

// close ends the subscriber (stdin EOF), killing it after 10 s.
func (s *ccSub) close() {
	_ = s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.cmd.Wait()
}

func (s *ccSub) snapshot() []ccEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ccEvent(nil), s.events...)
}

// waitFor polls the events until pred finds what it wants or timeout passes.
func (s *ccSub) waitFor(timeout time.Duration, pred func([]ccEvent) bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if pred(s.snapshot()) {
			return true
		}
		select {
		case <-s.done:
			return pred(s.snapshot())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}
