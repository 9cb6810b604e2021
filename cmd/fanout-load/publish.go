package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// publishFlags are the flags of `fanout-load publish`.
type publishFlags struct {
	url, apiKey, apiSecret, room, identity string
	videoDir, audio                        string
	duration                               time.Duration
}

func parsePublishFlags(args []string, stderr io.Writer) (publishFlags, error) {
	var f publishFlags
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.url, "url", "ws://127.0.0.1:7880", "server WebSocket URL (ws://host:port)")
	fs.StringVar(&f.apiKey, "api-key", "devkey", "API key the access token is signed for")
	fs.StringVar(&f.apiSecret, "api-secret", "secret", "API secret that signs the access token")
	fs.StringVar(&f.room, "room", "", "room to join (required)")
	fs.StringVar(&f.identity, "identity", "pub", "participant identity")
	fs.StringVar(&f.videoDir, "files", "signaling/testdata/simulcast", "folder with vp8_320x180.ivf, vp8_640x360.ivf and vp8_1280x720.ivf")
	fs.StringVar(&f.audio, "audio", "interop/testdata/audio_opus.ogg", "Ogg Opus file for the microphone track (empty: no audio)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	if err := fs.Parse(args); err != nil {
		return f, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if f.room == "" || f.identity == "" {
		return f, fmt.Errorf("%w: --room and --identity are required", errUsage)
	}
	if f.duration < 0 {
		return f, fmt.Errorf("%w: --duration %s is negative", errUsage, f.duration)
	}
	return f, nil
}

// runPublish joins, publishes the simulcast camera and the microphone, and
// sends until stopped. It prints one line `fanout-load: published ...` once
// both tracks are negotiated, and the sender's counters when it stops.
func runPublish(args []string, stdout, stderr io.Writer) error {
	f, err := parsePublishFlags(args, stderr)
	if err != nil {
		return err
	}
	video, err := loadVP8(f.videoDir)
	if err != nil {
		return err
	}
	var audio [][]byte
	if f.audio != "" {
		if audio, err = loadOpus(f.audio); err != nil {
			return err
		}
	}
	token, err := auth.NewAccessToken(f.apiKey, f.apiSecret).SetIdentity(f.identity).SetName(f.identity).
		SetValidFor(24 * time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: f.room, CanPublish: ptr(true), CanSubscribe: ptr(false)}).ToJWT()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	joinCtx, cancelJoin := context.WithTimeout(ctx, 20*time.Second)
	defer cancelJoin()
	c, err := client.Connect(joinCtx, f.url, token, client.Options{NoAutoSubscribe: true, Configure: simulcastExtensions})
	if err != nil {
		return fmt.Errorf("join %s: %w", f.url, err)
	}
	defer c.Close()
	p, err := startPublisher(joinCtx, c, video, audio)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fanout-load: published room=%s identity=%s video=%s audio=%s server=%s\n",
		f.room, f.identity, p.videoSid, p.audioSid, c.Join.GetServerInfo().GetVersion())
	select {
	case <-ctx.Done():
	case <-p.failed:
	}
	p.Stop()
	for _, l := range p.layers {
		fmt.Fprintf(stdout, "fanout-load: layer %s sent %d frames (%d keyframes), %d PLIs, %d NACKs\n",
			l.rid, l.sent.Load(), l.keys.Load(), l.plis.Load(), l.nacks.Load())
	}
	if err := p.err(); err != nil {
		return err
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// simulcastExtensions registers the MID and RID header extensions a simulcast sender needs.
func simulcastExtensions(me *webrtc.MediaEngine, _ *interceptor.Registry) error {
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return fmt.Errorf("simulcast extensions: %w", err)
	}
	return nil
}

// addTrack announces a track and waits for the server's TrackInfo.
func addTrack(ctx context.Context, c *client.Client, req *livekit.AddTrackRequest) (*livekit.TrackInfo, error) {
	mark := c.Mark()
	if err := c.Send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: req}}); err != nil {
		return nil, fmt.Errorf("addTrack %s: %w", req.Cid, err)
	}
	msg, err := c.WaitAfter(ctx, mark, func(m *livekit.SignalResponse) bool {
		return m.GetTrackPublished().GetCid() == req.Cid || m.GetRequestResponse().GetAddTrack().GetCid() == req.Cid
	})
	if err != nil {
		return nil, fmt.Errorf("addTrack %s: %w", req.Cid, err)
	}
	if rr := msg.GetRequestResponse(); rr != nil {
		return nil, fmt.Errorf("addTrack %s refused: %s: %s", req.Cid, rr.Reason, rr.Message)
	}
	return msg.GetTrackPublished().Track, nil
}
