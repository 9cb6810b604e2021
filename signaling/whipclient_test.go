package signaling_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// Debian's simple-whip-client (whip-client, GStreamer's webrtcbin) is the
// outside WHIP publisher of these tests. It runs with the no-op
// libgupnp-igd of testdata/gupnp-igd-stub.c first in LD_LIBRARY_PATH (the
// file says why).

// Pipelines: a live H.264 test picture and an Opus tone, RTP payloaded.
const (
	whipVideoPipeline = "videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! queue ! " +
		"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800 ! rtph264pay config-interval=-1 pt=96 ! queue ! " +
		"application/x-rtp,media=video,encoding-name=H264,payload=96"
	whipAudioPipeline = "audiotestsrc is-live=true ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=111 ! queue ! " +
		"application/x-rtp,media=audio,encoding-name=OPUS,payload=111"
)

// whipClientEnv builds the no-op libgupnp-igd and returns the environment
// whip-client runs with; it skips the test where whip-client or cc is missing.
func whipClientEnv(t *testing.T) []string {
	t.Helper()
	for _, tool := range []string{"whip-client", "cc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages simple-whip-client and gcc; `make deps` installs them)", tool)
		}
	}
	dir := t.TempDir()
	src, err := filepath.Abs(filepath.Join("testdata", "gupnp-igd-stub.c"))
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "libgupnp-igd-1.0.so.4")
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-Wl,-soname,libgupnp-igd-1.0.so.4", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("build the libgupnp-igd stub: %v\n%s", err, out)
	}
	return append(os.Environ(), "LD_LIBRARY_PATH="+dir, "GST_DEBUG=1")
}

// whipClient is a running whip-client.
type whipClient struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startWHIPClient(t *testing.T, env []string, url, token string) *whipClient {
	t.Helper()
	cmd := exec.Command("whip-client", "-u", url, "-t", token, "-V", whipVideoPipeline, "-A", whipAudioPipeline, "-o", "-l", "4")
	cmd.Env = env
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start whip-client: %v", err)
	}
	c := &whipClient{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("whip-client output:\n%s", out.String())
		}
	})
	return c
}

// stop sends sig and waits for the client to exit.
func (c *whipClient) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Errorf("whip-client did not exit 10 s after %v", sig)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's two output pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWHIPOutsideClient publishes a live H.264 and Opus source with
// Debian's whip-client: a LiveKit-protocol subscriber receives at least 100
// packets of each within 10 s, and stopping the client (which DELETEs its
// session) removes the participant within 5 s.
func TestWHIPOutsideClient(t *testing.T) {
	env := whipClientEnv(t)
	checkLeaks(t)
	n := startNode(t, nodeOptions{allInterfaces: true})
	const room = "whip-outside"
	bob := n.join(t, room, "bob", client.Options{Settings: func(se *webrtc.SettingEngine) {
		se.SetInterfaceFilter(func(string) bool { return true })
	}})
	received := newPacketCounter(func(tr *webrtc.TrackRemote) string { return strings.ToLower(tr.Codec().MimeType) })
	bob.OnTrack(received.onTrack)
	count := received.count

	wc := startWHIPClient(t, env, n.http.URL+"/whip", whipToken(t, room, "gstreamer"))
	start := time.Now()
	eventually(t, 10*time.Second, "100 H.264 and 100 Opus packets at bob", func() bool {
		return count("video/h264") >= 100 && count("audio/opus") >= 100
	})
	t.Logf("whip-metric: 100 packets of each after %v", time.Since(start).Round(time.Millisecond))
	r := n.rooms.Room(room)
	if p := r.Participant("gstreamer"); p == nil || p.Info().Kind != livekit.ParticipantInfo_INGRESS {
		t.Errorf("gstreamer is not an INGRESS participant: %v", p)
	}
	stopped := time.Now()
	wc.stop(t, syscall.SIGINT)
	eventually(t, 5*time.Second, "the WHIP participant leaves after the client stops", func() bool {
		return r.Participant("gstreamer") == nil
	})
	t.Logf("whip-metric: participant gone %v after SIGINT", time.Since(stopped).Round(time.Millisecond))
}

// TestWHIPOutsideClientKilled kills whip-client outright (SIGKILL, no
// DELETE): the participant leaves within 5 s, once its connection has been
// silent for ICE's disconnected timeout.
func TestWHIPOutsideClientKilled(t *testing.T) {
	env := whipClientEnv(t)
	checkLeaks(t)
	n := startNode(t, nodeOptions{allInterfaces: true})
	const room = "whip-killed"
	wc := startWHIPClient(t, env, n.http.URL+"/whip", whipToken(t, room, "gstreamer"))
	eventually(t, 10*time.Second, "the WHIP participant publishes", func() bool {
		r := n.rooms.Room(room)
		if r == nil {
			return false
		}
		p := r.Participant("gstreamer")
		return p != nil && len(p.Info().Tracks) == 2
	})
	killed := time.Now()
	wc.stop(t, syscall.SIGKILL)
	eventually(t, 5*time.Second, "the WHIP participant leaves after the client is killed", func() bool {
		return n.rooms.Room(room) == nil || n.rooms.Room(room).Participant("gstreamer") == nil
	})
	t.Logf("whip-metric: participant gone %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
}
