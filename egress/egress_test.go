package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/simulcast"
)

// fakeTrack is a published track the test feeds packets into.
type fakeTrack struct {
	id       livekit.TrackID
	codec    webrtc.RTPCodecParameters
	mu       sync.Mutex
	sinks    map[string]sfu.Sink
	keyReqs  atomic.Int32
	kind     webrtc.RTPCodecType
	released atomic.Bool
}

func newFakeTrack(id livekit.TrackID, mime string, rate uint32) *fakeTrack {
	kind := webrtc.RTPCodecTypeVideo
	if strings.HasPrefix(mime, "audio/") {
		kind = webrtc.RTPCodecTypeAudio
	}
	return &fakeTrack{id: id, kind: kind, sinks: map[string]sfu.Sink{},
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: rate}}}
}

func (f *fakeTrack) ID() livekit.TrackID                         { return f.id }
func (f *fakeTrack) Kind() webrtc.RTPCodecType                   { return f.kind }
func (f *fakeTrack) Codec() webrtc.RTPCodecParameters            { return f.codec }
func (f *fakeTrack) RequestKeyframe(int8)                        { f.keyReqs.Add(1) }
func (f *fakeTrack) ReadCached(int8, uint16, []byte) (int, bool) { return 0, false }
func (f *fakeTrack) AvailableLayers() simulcast.LayerMask        { return 1 }
func (f *fakeTrack) TimestampDelta(int8, int8) (uint32, bool)    { return 0, false }

// SenderReport maps the feed's first timestamps (12345 video, 999 audio)
// to one NTP instant, as a publisher's sender reports would.
func (f *fakeTrack) SenderReport(int8) (simulcast.SenderReport, bool) {
	if f.kind == webrtc.RTPCodecTypeVideo {
		return simulcast.SenderReport{NTP: 1000 << 32, RTP: 12345}, true
	}
	return simulcast.SenderReport{NTP: 1000 << 32, RTP: 999}, true
}

func (f *fakeTrack) AddSink(s sfu.Sink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sinks[s.SinkID()] = s
}

func (f *fakeTrack) RemoveSink(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sinks, id)
}

// write hands a packet to the sinks, as an UpTrack's reader does.
func (f *fakeTrack) write(p *rtp.Packet) {
	raw, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	pkt := &sfu.Packet{Header: &p.Header, Payload: p.Payload, Raw: raw, Arrival: time.Now().UnixNano()}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		s.WriteRTP(pkt)
	}
}

// annexBUnits splits an Annex B stream into access units (a new one at
// each SPS or slice after a slice) of NAL units without start codes.
func annexBUnits(data []byte) [][][]byte {
	var units [][][]byte
	var cur [][]byte
	slice := false
	for _, n := range bytes.Split(data, []byte{0, 0, 1}) {
		n = bytes.TrimRight(n, "\x00")
		if len(n) == 0 {
			continue
		}
		t := n[0] & 0x1f
		if slice && (t == nalSPS || t == nalSlice || t == nalIDR) {
			units, cur, slice = append(units, cur), nil, false
		}
		cur = append(cur, n)
		slice = slice || t == nalSlice || t == nalIDR
	}
	return append(units, cur)
}

// packetize turns an access unit into RTP payloads: small NAL units
// alone, large ones as FU-A fragments of 1100 bytes.
func packetize(au [][]byte) [][]byte {
	var out [][]byte
	for _, n := range au {
		if len(n) <= 1100 {
			out = append(out, n)
			continue
		}
		out = append(out, fuA(n, 1100)...)
	}
	return out
}

// feed sends the H.264 clip (20 fps, looped) and 20 ms Opus silence for d.
func feed(t testing.TB, video, audio *fakeTrack, d time.Duration) {
	data, err := os.ReadFile("../signaling/testdata/simulcast/h264_640x360.h264")
	if err != nil {
		t.Fatal(err)
	}
	units := annexBUnits(data)
	var vseq, aseq uint16 = 100, 900
	vts, ats := uint32(12345), uint32(999)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		if i%5 == 0 { // 50 ms: a video frame
			payloads := packetize(units[(i/5)%len(units)])
			for k, p := range payloads {
				video.write(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: vseq, Timestamp: vts, Marker: k == len(payloads)-1}, Payload: p})
				vseq++
			}
			vts += 4500
		}
		if i%2 == 0 { // 20 ms: an Opus frame (CELT silence)
			audio.write(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: aseq, Timestamp: ats, Marker: true}, Payload: []byte{0xf8, 0xff, 0xfe}})
			aseq++
			ats += 960
		}
	}
}

// ffprobeStreams runs ffprobe on a URL and returns its streams.
func ffprobeStreams(t *testing.T, url string) []map[string]any {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_streams", "-of", "json", url).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v\n%s", url, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var res struct{ Streams []map[string]any }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	return res.Streams
}

// TestHLSEgress muxes an H.264 and Opus publication into LL-HLS: the
// playlist appears, ffprobe finds H.264 at the published size and Opus,
// and files carry CDN cache headers.
func TestHLSEgress(t *testing.T) {
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (Debian package ffmpeg)")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	video, audio := newFakeTrack("TR_v", webrtc.MimeTypeH264, 90000), newFakeTrack("TR_a", webrtc.MimeTypeOpus, 48000)
	e, err := Start(Params{ID: "EG_test", Video: video, Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(http.StripPrefix("/hls/EG_test", e))
	defer srv.Close()
	done := make(chan struct{})
	go func() { defer close(done); feed(t, video, audio, 6*time.Second) }()
	defer func() { <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for !e.Started() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !e.Started() {
		t.Fatalf("no playlist after 10 s (keyframe requests %d, drops %d)", video.keyReqs.Load(), e.Drops())
	}
	time.Sleep(3 * time.Second) // a few segments
	resp, err := http.Get(srv.URL + "/hls/EG_test/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != playlistCache ||
		resp.Header.Get("Content-Type") != "application/vnd.apple.mpegurl" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("playlist: %d %v", resp.StatusCode, resp.Header)
	}
	checkImmutable(t, srv.URL+"/hls/EG_test/")
	streams := ffprobeStreams(t, srv.URL+"/hls/EG_test/index.m3u8")
	var got []string
	starts := map[string]float64{}
	for _, s := range streams {
		got = append(got, s["codec_name"].(string))
		if v, ok := s["start_time"].(string); ok {
			var f float64
			_, _ = fmt.Sscanf(v, "%g", &f)
			starts[s["codec_name"].(string)] = f
		}
		if s["codec_name"] == "h264" && (s["width"] != 640.0 || s["height"] != 360.0) {
			t.Errorf("H.264 at %vx%v, want 640x360", s["width"], s["height"])
		}
	}
	if strings.Join(got, ",") != "h264,opus" && strings.Join(got, ",") != "opus,h264" {
		t.Errorf("ffprobe found %v, want h264 and opus", got)
	}
	// Audio and video sent at one instant start together (the sender
	// reports say so). The egress gives both pts 0; ffprobe reports the
	// fMP4 Opus track 40 ms late (the muxer's handling of the first audio
	// part), so the bound is 50 ms: a misalignment by arrival or a lost
	// anchor shows as far more.
	if d := starts["h264"] - starts["opus"]; d > 0.05 || d < -0.05 {
		t.Errorf("start times: video %.3f s, audio %.3f s", starts["h264"], starts["opus"])
	}
	if e.Drops() != 0 {
		t.Errorf("%d packets dropped", e.Drops())
	}

	// Stopped: the media playlist ends, even for a blocking reload.
	e.Stop()
	multi, _ := getText(t, srv.URL+"/hls/EG_test/index.m3u8")
	media := srv.URL + "/hls/EG_test/" + lastURI(multi, "")
	start := time.Now()
	body, hdr := getText(t, media+"?_HLS_msn=9999&_HLS_part=0")
	if !strings.HasSuffix(body, "#EXT-X-ENDLIST\n") || strings.Contains(body, "PRELOAD-HINT") ||
		hdr.Get("Cache-Control") != immutableCache || time.Since(start) > time.Second {
		t.Errorf("finished playlist (%v, Cache-Control %q):\n%s", time.Since(start), hdr.Get("Cache-Control"), body)
	}
}

// getText fetches a URL's body and headers.
func getText(t *testing.T, url string) (string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b.String())
	}
	return b.String(), resp.Header
}

// lastURI is the last URI line of a playlist (its newest segment), or
// the URI="..." of its last line with tag (e.g. #EXT-X-MAP, #EXT-X-PART).
func lastURI(playlist, tag string) string {
	lines := strings.Split(playlist, "\n")
	slices.Reverse(lines)
	for _, l := range lines {
		if tag == "" && l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
		if tag != "" && strings.HasPrefix(l, tag) {
			if _, after, ok := strings.Cut(l, `URI="`); ok {
				uri, _, _ := strings.Cut(after, `"`)
				return uri
			}
		}
	}
	return ""
}

// checkImmutable: the init segment, segments and parts a media playlist
// lists are served immutable, for CDNs to keep.
func checkImmutable(t *testing.T, base string) {
	t.Helper()
	multi, _ := getText(t, base+"index.m3u8")
	media, _ := getText(t, base+lastURI(multi, ""))
	for _, uri := range []string{lastURI(media, "#EXT-X-MAP"), lastURI(media, ""), lastURI(media, "#EXT-X-PART:")} {
		if uri == "" {
			t.Errorf("media playlist lacks a file:\n%s", media)
			continue
		}
		if _, hdr := getText(t, base+uri); hdr.Get("Cache-Control") != immutableCache {
			t.Errorf("%s: Cache-Control %q", uri, hdr.Get("Cache-Control"))
		}
	}
	if !strings.Contains(media, "#EXT-X-PRELOAD-HINT") || !strings.Contains(media, "CAN-BLOCK-RELOAD=YES") {
		t.Errorf("not a low-latency playlist:\n%s", media)
	}
}

// TestHLSEgressRefusesVP8: a VP8 source fails at once, saying what to send.
func TestHLSEgressRefusesVP8(t *testing.T) {
	_, err := Start(Params{ID: "EG_vp8", Video: newFakeTrack("TR_v", webrtc.MimeTypeVP8, 90000)})
	if !errors.Is(err, ErrNotH264) || !strings.Contains(err.Error(), "the publisher must send H.264") {
		t.Errorf("error %v, want ErrNotH264", err)
	}
}
