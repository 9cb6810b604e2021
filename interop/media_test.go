package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/livekit/server-sdk-go/v2/pkg/oggreader"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

const (
	videoFile = "testdata/video_vp8.ivf"
	audioFile = "testdata/audio_opus.ogg"

	minAudioPackets = 100
	minVideoFrames  = 50
)

// loopProvider is an lksdk.SampleProvider that plays a list of encoded samples forever.
// lksdk.NewLocalFileTrack plays a file once and stops at EOF (and, with pion/webrtc
// v4.2.x's ivfreader, derives 1 s frame durations from IVF timestamps), so the tests
// read the files themselves and loop them.
type loopProvider struct {
	samples []media.Sample
	next    int
}

// NextSample returns the next sample, wrapping around at the end of the file.
func (l *loopProvider) NextSample(ctx context.Context) (media.Sample, error) {
	if err := ctx.Err(); err != nil {
		return media.Sample{}, io.EOF
	}
	s := l.samples[l.next]
	l.next = (l.next + 1) % len(l.samples)
	return s, nil
}

// OnBind is called when the track is bound to a peer connection.
func (l *loopProvider) OnBind() error { return nil }

// OnUnbind is called when the track is unbound.
func (l *loopProvider) OnUnbind() error { return nil }

// Close releases nothing: samples are in memory.
func (l *loopProvider) Close() error { return nil }

// readIVF returns every frame of a VP8 IVF file with its duration.
func readIVF(path string) ([]media.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, err
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("%s: fourcc %q, want VP80", path, hdr.FourCC)
	}
	// IVF: bytes 16-19 are the frame rate (pion calls it the denominator), 20-23 the time
	// scale; one frame lasts scale/rate seconds at a constant frame rate.
	frameDur := time.Second * time.Duration(hdr.TimebaseNumerator) / time.Duration(hdr.TimebaseDenominator)
	var out []media.Sample
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: frame %d: %w", path, len(out), err)
		}
		out = append(out, media.Sample{Data: frame, Duration: frameDur})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no frames", path)
	}
	if !isVP8Keyframe(out[0].Data) {
		return nil, fmt.Errorf("%s: first frame is not a keyframe, so looping would not decode", path)
	}
	return out, nil
}

// readOgg returns every Opus packet of an Ogg Opus file with its duration.
func readOgg(path string) ([]media.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := oggreader.NewOggReader(f)
	if err != nil {
		return nil, err
	}
	var out []media.Sample
	for {
		pkt, err := r.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %w", path, len(out), err)
		}
		d, err := oggreader.ParsePacketDuration(pkt)
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %w", path, len(out), err)
		}
		out = append(out, media.Sample{Data: pkt, Duration: d})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no packets", path)
	}
	return out, nil
}

// isVP8Keyframe reports whether a VP8 frame is a keyframe (RFC 6386 section 9.1).
func isVP8Keyframe(frame []byte) bool {
	return len(frame) >= 10 && frame[0]&0x01 == 0 && frame[3] == 0x9d && frame[4] == 0x01 && frame[5] == 0x2a
}

// sampleSet returns the set of sample payloads, to recognise forwarded media byte for byte.
func sampleSet(samples []media.Sample) map[string]struct{} {
	set := make(map[string]struct{}, len(samples))
	for _, s := range samples {
		set[string(s.Data)] = struct{}{}
	}
	return set
}

// publishLoop publishes samples of the given codec from p, looping.
func publishLoop(t *testing.T, p *peer, samples []media.Sample, codec webrtc.RTPCodecCapability, opts *lksdk.TrackPublicationOptions) *lksdk.LocalTrackPublication {
	t.Helper()
	track, err := lksdk.NewLocalTrack(codec)
	if err != nil {
		t.Fatalf("NewLocalTrack(%s): %v", codec.MimeType, err)
	}
	// Not yet bound: StartWrite only records the provider; Bind starts the writer.
	if err := track.StartWrite(&loopProvider{samples: samples}, nil); err != nil {
		t.Fatalf("StartWrite: %v", err)
	}
	pub, err := p.Room.LocalParticipant.PublishTrack(track, opts)
	if err != nil {
		t.Fatalf("%s: PublishTrack(%s): %v", p.Identity, codec.MimeType, err)
	}
	if !strings.HasPrefix(pub.SID(), "TR_") {
		t.Errorf("%s: published track sid = %q, want prefix TR_", p.Identity, pub.SID())
	}
	return pub
}

// publishAudio publishes the looping Opus test file from p.
func publishAudio(t *testing.T, p *peer) *lksdk.LocalTrackPublication {
	t.Helper()
	samples, err := readOgg(audioFile)
	if err != nil {
		t.Fatal(err)
	}
	return publishLoop(t, p, samples,
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		&lksdk.TrackPublicationOptions{Name: "mic"})
}

// publishVideo publishes the looping VP8 test file from p.
func publishVideo(t *testing.T, p *peer) *lksdk.LocalTrackPublication {
	t.Helper()
	samples, err := readIVF(videoFile)
	if err != nil {
		t.Fatal(err)
	}
	return publishLoop(t, p, samples,
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		&lksdk.TrackPublicationOptions{Name: "camera", VideoWidth: 320, VideoHeight: 240})
}

// mediaCount tallies what a subscriber got on one track.
type mediaCount struct {
	mu sync.Mutex
	sb *samplebuilder.SampleBuilder // video only

	audioMatched  int // Opus payloads identical to one of the file's packets
	audioOther    int // any other non-empty payload
	sawKeyframe   bool
	framesBefore  int // complete frames before the first keyframe (not counted)
	framesMatched int // complete frames from the first keyframe on, identical to a file frame
	framesOther   int // complete frames from the first keyframe on, matching no file frame
	reached       *once
}

func (c *mediaCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("audio packets matching the file %d (other %d); VP8 complete frames from first keyframe matching the file %d (other %d, before keyframe %d, keyframe seen %v)",
		c.audioMatched, c.audioOther, c.framesMatched, c.framesOther, c.framesBefore, c.sawKeyframe)
}

func TestMedia(t *testing.T) {
	setup(t)
	room := uniqueRoom(t)

	audioSamples, err := readOgg(audioFile)
	if err != nil {
		t.Fatal(err)
	}
	videoSamples, err := readIVF(videoFile)
	if err != nil {
		t.Fatal(err)
	}
	audioSet, videoSet := sampleSet(audioSamples), sampleSet(videoSamples)

	a := connect(t, room, "alice")
	aPub := publishAudio(t, a)
	vPub := publishVideo(t, a)

	var countsMu sync.Mutex
	counts := map[string]*mediaCount{} // by track SID
	countFor := func(sid string) *mediaCount {
		countsMu.Lock()
		defer countsMu.Unlock()
		c := counts[sid]
		if c == nil {
			// maxLate 256 packets: generous reordering room; a frame still counts only when
			// every one of its packets arrived.
			c = &mediaCount{sb: samplebuilder.New(256, &codecs.VP8Packet{}, 90000), reached: newOnce()}
			counts[sid] = c
		}
		return c
	}

	b := newPeer(t, "bob")
	b.onPacket = func(st *subTrack, pkt *rtp.Packet) {
		c := countFor(st.SID)
		c.mu.Lock()
		defer c.mu.Unlock()
		switch st.Kind {
		case lksdk.TrackKindAudio:
			if len(pkt.Payload) == 0 {
				return
			}
			if _, ok := audioSet[string(pkt.Payload)]; ok {
				c.audioMatched++
			} else {
				c.audioOther++
			}
			if c.audioMatched >= minAudioPackets {
				c.reached.Fire()
			}
		case lksdk.TrackKindVideo:
			c.sb.Push(pkt)
			for s := c.sb.Pop(); s != nil; s = c.sb.Pop() {
				if !c.sawKeyframe {
					if !isVP8Keyframe(s.Data) {
						c.framesBefore++
						continue
					}
					c.sawKeyframe = true
				}
				if _, ok := videoSet[string(s.Data)]; ok {
					c.framesMatched++
				} else {
					c.framesOther++
				}
			}
			if c.framesMatched >= minVideoFrames {
				c.reached.Fire()
			}
		}
	}
	connectPeer(t, b, room)

	want := map[string]struct {
		kind lksdk.TrackKind
		mime string
	}{
		aPub.SID(): {lksdk.TrackKindAudio, webrtc.MimeTypeOpus},
		vPub.SID(): {lksdk.TrackKindVideo, webrtc.MimeTypeVP8},
	}
	subs := map[string]*subTrack{}
	for len(subs) < 2 {
		st := b.nextSubscribed(t, mediaTimeout)
		w, ok := want[st.SID]
		if !ok {
			t.Fatalf("bob subscribed to unexpected track %s (kind %s) from %s", st.SID, st.Kind, st.From)
		}
		if st.From != "alice" || st.FromSID != a.Room.LocalParticipant.SID() {
			t.Errorf("track %s: publisher %s/%s, want alice/%s", st.SID, st.From, st.FromSID, a.Room.LocalParticipant.SID())
		}
		if st.Kind != w.kind {
			t.Errorf("track %s: kind %s, want %s", st.SID, st.Kind, w.kind)
		}
		if got := st.Track.Codec().MimeType; !strings.EqualFold(got, w.mime) {
			t.Errorf("track %s: codec %q, want %q", st.SID, got, w.mime)
		}
		subs[st.SID] = st
	}

	for sid, st := range subs {
		c := countFor(sid)
		deadline := st.SubscribedAt.Add(mediaTimeout)
		select {
		case <-c.reached.C():
			t.Logf("%s track %s after %s: %s", st.Kind, sid, time.Since(st.SubscribedAt).Round(time.Millisecond), c)
		case <-st.Ended():
			t.Errorf("%s track %s: reading RTP stopped (%v) before the goal; %s", st.Kind, sid, st.readErr.Load(), c)
		case <-time.After(time.Until(deadline)):
			t.Errorf("%s track %s: within %s of subscribing, wanted >= %d audio packets / >= %d complete VP8 frames; got %d RTP packets: %s",
				st.Kind, sid, mediaTimeout, minAudioPackets, minVideoFrames, st.Packets.Load(), c)
		}
	}
}
