package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/twitchtv/twirp"
)

// egressClient is a Twirp Egress client with a roomRecord token.
func egressClient(t *testing.T, n *node) (livekit.Egress, context.Context) {
	t.Helper()
	tok, err := auth.NewAccessToken(testKey, testSecret).SetVideoGrant(&auth.VideoGrant{RoomRecord: true}).SetValidFor(time.Hour).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := twirp.WithHTTPRequestHeaders(context.Background(), http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	return livekit.NewEgressProtobufClient(n.http.URL, http.DefaultClient), ctx
}

// egressStatus is the status ListEgress gives an egress.
func egressStatus(t *testing.T, c livekit.Egress, ctx context.Context, id string) livekit.EgressStatus {
	t.Helper()
	res, err := c.ListEgress(ctx, &livekit.ListEgressRequest{EgressId: id})
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("ListEgress %s: %v %v", id, res, err)
	}
	return res.Items[0].Status
}

// fetch GETs a URL's body.
func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHLSEgressFromWHIP: a WHIP broadcaster (whip-client, H.264 and Opus)
// is muxed to LL-HLS by StartTrackCompositeEgress: the playlist appears
// within 10 s, ffprobe finds H.264 at the published size and Opus,
// ListEgress shows ACTIVE, StopEgress ends the playlist with
// #EXT-X-ENDLIST and the egress COMPLETE; a second egress ends COMPLETE
// when the broadcaster leaves.
func TestHLSEgressFromWHIP(t *testing.T) {
	env := whipClientEnv(t)
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (Debian package ffmpeg)")
	}
	checkLeaks(t)
	n := startNode(t, nodeOptions{allInterfaces: true})
	const room = "hls-whip"
	wc := startWHIPClient(t, env, n.http.URL+"/whip", whipToken(t, room, "studio"))
	var video, audio string
	eventually(t, 10*time.Second, "studio publishes H.264 and Opus", func() bool {
		r := n.rooms.Room(room)
		if r == nil || r.Participant("studio") == nil {
			return false
		}
		for _, tr := range r.Participant("studio").Info().Tracks {
			if tr.Type == livekit.TrackType_VIDEO {
				video = tr.Sid
			} else {
				audio = tr.Sid
			}
		}
		return video != "" && audio != ""
	})
	c, ctx := egressClient(t, n)
	out := []*livekit.SegmentedFileOutput{{Protocol: livekit.SegmentedFileProtocol_HLS_PROTOCOL}}
	info, err := c.StartTrackCompositeEgress(ctx, &livekit.TrackCompositeEgressRequest{
		RoomName: room, VideoTrackId: video, AudioTrackId: audio, SegmentOutputs: out,
	})
	if err != nil || !strings.HasPrefix(info.EgressId, "EG_") || info.Status != livekit.EgressStatus_EGRESS_STARTING {
		t.Fatalf("StartTrackCompositeEgress: %v %v", info, err)
	}
	playlist := n.http.URL + "/hls/" + info.EgressId + "/index.m3u8"
	start := time.Now()
	eventually(t, 10*time.Second, "the playlist", func() bool { s, _ := fetch(t, playlist); return s == http.StatusOK })
	t.Logf("hls-metric: playlist after %v", time.Since(start).Round(time.Millisecond))
	if s := egressStatus(t, c, ctx, info.EgressId); s != livekit.EgressStatus_EGRESS_ACTIVE {
		t.Errorf("status %s, want ACTIVE", s)
	}
	time.Sleep(2 * time.Second) // a few segments
	checkProbe(t, playlist)
	checkDecodes(t, playlist, 10*time.Second)

	// StopEgress answers ENDING, or COMPLETE if the egress finished
	// stopping before the answer was made (it takes milliseconds).
	stopped, err := c.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: info.EgressId})
	if err != nil || (stopped.Status != livekit.EgressStatus_EGRESS_ENDING && stopped.Status != livekit.EgressStatus_EGRESS_COMPLETE) {
		t.Fatalf("StopEgress: %v %v, want ENDING", stopped, err)
	}
	eventually(t, 5*time.Second, "COMPLETE after StopEgress", func() bool {
		return egressStatus(t, c, ctx, info.EgressId) == livekit.EgressStatus_EGRESS_COMPLETE
	})
	_, multi := fetch(t, playlist)
	media := multi[strings.LastIndex(strings.TrimSpace(multi), "\n")+1:]
	if _, body := fetch(t, n.http.URL+"/hls/"+info.EgressId+"/"+strings.TrimSpace(media)); !strings.HasSuffix(body, "#EXT-X-ENDLIST\n") {
		t.Errorf("the stopped media playlist does not end:\n%s", body)
	}

	// A second egress ends by itself when the broadcaster leaves.
	second, err := c.StartParticipantEgress(ctx, &livekit.ParticipantEgressRequest{RoomName: room, Identity: "studio", SegmentOutputs: out})
	if err != nil {
		t.Fatalf("StartParticipantEgress: %v", err)
	}
	wc.stop(t, syscall.SIGINT)
	eventually(t, 10*time.Second, "COMPLETE when the broadcaster leaves", func() bool {
		return egressStatus(t, c, ctx, second.EgressId) == livekit.EgressStatus_EGRESS_COMPLETE
	})
}

// checkProbe runs ffprobe on a playlist: H.264 at 640x360 and Opus.
func checkProbe(t *testing.T, url string) {
	t.Helper()
	raw, err := exec.Command("ffprobe", "-v", "error", "-show_streams", "-of", "json", url).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct {
		Streams []struct {
			Codec  string `json:"codec_name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
		}
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	var codecs []string
	for _, s := range res.Streams {
		codecs = append(codecs, s.Codec)
		if s.Codec == "h264" && (s.Width != 640 || s.Height != 360) {
			t.Errorf("H.264 at %dx%d, want 640x360", s.Width, s.Height)
		}
	}
	if got := strings.Join(codecs, ","); got != "h264,opus" && got != "opus,h264" {
		t.Errorf("ffprobe found %s, want h264 and opus", got)
	}
}

// checkDecodes decodes d of a live playlist with ffmpeg: no error at all.
func checkDecodes(t *testing.T, url string, d time.Duration) {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-v", "error", "-nostdin", "-i", url, "-t", fmt.Sprint(d.Seconds()), "-f", "null", "-")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("decoding %v of %s: %v\n%s", d, url, err, out)
	}
}

// TestHLSEgressRefusesVP8: an egress of a VP8 camera fails at once with a
// clear error, and ListEgress shows it FAILED; without roomRecord there
// is no egress at all.
func TestHLSEgressRefusesVP8(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{})
	const room = "hls-vp8"
	pub := newHTTPPeer(t, n, whipToken(t, room, "vp8cam"))
	track := newVideoTrack(t, "v")
	if _, err := pub.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if status, body := pub.negotiate("/whip"); status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, body)
	}
	startSource(t, track, true)
	eventually(t, 10*time.Second, "the VP8 camera", func() bool {
		r := n.rooms.Room(room)
		return r != nil && r.Participant("vp8cam") != nil && len(r.Participant("vp8cam").Info().Tracks) == 1
	})
	c, ctx := egressClient(t, n)
	out := []*livekit.SegmentedFileOutput{{Protocol: livekit.SegmentedFileProtocol_HLS_FMP4_PROTOCOL}}
	_, err := c.StartParticipantEgress(ctx, &livekit.ParticipantEgressRequest{RoomName: room, Identity: "vp8cam", SegmentOutputs: out})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.FailedPrecondition || !strings.Contains(terr.Msg(), "the publisher must send H.264") {
		t.Fatalf("egress of VP8: %v, want FailedPrecondition saying to send H.264", err)
	}
	res, err := c.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
	if err != nil || len(res.Items) != 1 || res.Items[0].Status != livekit.EgressStatus_EGRESS_FAILED ||
		!strings.Contains(res.Items[0].Error, "must send H.264") {
		t.Errorf("ListEgress: %v %v, want one FAILED egress with the error", res, err)
	}
	noRecord, _ := egressClient(t, n)
	plainCtx, _ := twirp.WithHTTPRequestHeaders(context.Background(), http.Header{"Authorization": {"Bearer " + token(t, room, "x", nil)}})
	if _, err := noRecord.ListEgress(plainCtx, &livekit.ListEgressRequest{}); !errors.As(err, &terr) || terr.Code() != twirp.PermissionDenied {
		t.Errorf("ListEgress without roomRecord: %v, want PermissionDenied", err)
	}
}

// TestHLSForIngress: with egress.hls_for_ingress, a WHIP broadcaster's
// response links an HLS playlist of its H.264 video, which appears once
// the video flows.
func TestHLSForIngress(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{hlsForIngress: true})
	const room = "hls-ingress"
	frames, err := loadMediaFile("h264", simFileLayers[1])
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	pub := newHTTPPeer(t, n, whipToken(t, room, "encoder"))
	if _, err := pub.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-webrtc.GatheringCompletePromise(pub.pc)
	status, answer, hdr := doHTTP(t, http.MethodPost, n.http.URL+"/whip", pub.token, "application/sdp", pub.pc.LocalDescription().SDP, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST /whip: %d %s", status, answer)
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var playlist string
	for _, l := range hdr.Values("Link") {
		if strings.Contains(l, `type="application/vnd.apple.mpegurl"`) {
			playlist = strings.TrimPrefix(l[:strings.Index(l, ">")], "<")
		}
	}
	if !strings.HasPrefix(playlist, "/hls/EG_") {
		t.Fatalf("no HLS playlist link in %q", hdr.Values("Link"))
	}
	everyFrame(t, func(frame int) error {
		if frame%2 == 1 { // 20 fps
			return nil
		}
		return track.WriteSample(media.Sample{Data: frames[(frame/2)%len(frames)].data, Duration: 50 * time.Millisecond})
	})
	eventually(t, 10*time.Second, "the linked playlist", func() bool { s, _ := fetch(t, n.http.URL+playlist); return s == http.StatusOK })
}
