package signaling_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/fanout-sfu/fanout/signaling"
)

// h264Egress publishes the H.264 simulcast test media in room and starts
// a track composite HLS egress of it; it returns the Egress client, its
// context, the request that started it and the egress's id.
func h264Egress(t *testing.T, n *node, room string) (livekit.Egress, context.Context, *livekit.TrackCompositeEgressRequest, string) {
	t.Helper()
	alice := n.join(t, room, "alice", simulcastClientOptions())
	info, _ := publishSimulcastFiles(t, alice, "h264", "cam")
	eventually(t, 10*time.Second, "the track's media", func() bool {
		_, ok := n.rooms.Room(livekit.RoomName(room)).PublishedTrack(livekit.TrackID(info.Sid))
		return ok
	})
	c, ctx := egressClient(t, n)
	req := &livekit.TrackCompositeEgressRequest{RoomName: room, VideoTrackId: info.Sid,
		SegmentOutputs: []*livekit.SegmentedFileOutput{{Protocol: livekit.SegmentedFileProtocol_HLS_PROTOCOL}}}
	eg, err := c.StartTrackCompositeEgress(ctx, req)
	if err != nil {
		t.Fatalf("StartTrackCompositeEgress: %v", err)
	}
	t.Cleanup(func() { _, _ = c.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: eg.EgressId}) })
	eventually(t, 10*time.Second, "the playlist", func() bool {
		s, _ := fetch(t, n.http.URL+"/hls/"+eg.EgressId+"/index.m3u8")
		return s == http.StatusOK
	})
	return c, ctx, req, eg.EgressId
}

// lastMSN is the media sequence number of a media playlist's last
// complete segment.
func lastMSN(t *testing.T, playlist string) int {
	t.Helper()
	first, segs := -1, 0
	sc := bufio.NewScanner(strings.NewReader(playlist))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			first, _ = strconv.Atoi(v)
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			segs++
		}
	}
	if first < 0 || segs == 0 {
		t.Fatalf("no complete segment in:\n%s", playlist)
	}
	return first + segs - 1
}

// TestFault4HLSBlockingReloadOutlivesWriteTimeout: with the server's
// write timeout far shorter than a segment, a blocking playlist reload
// (_HLS_msn two segments ahead) still gets its playlist: the HLS handler
// extends its own write deadline when it starts to wait.
func TestFault4HLSBlockingReloadOutlivesWriteTimeout(t *testing.T) {
	checkLeaks(t)
	const write = 300 * time.Millisecond
	n := startNode(t, nodeOptions{timeouts: &signaling.HTTPTimeouts{Write: write}})
	_, _, _, id := h264Egress(t, n, "hls-block")
	base := n.http.URL + "/hls/" + id + "/"
	_, multi := fetch(t, base+"index.m3u8")
	media := base + strings.TrimSpace(multi[strings.LastIndex(strings.TrimSpace(multi), "\n")+1:])
	eventually(t, 10*time.Second, "a complete segment", func() bool {
		_, body := fetch(t, media)
		return strings.Contains(body, "#EXTINF")
	})
	_, body := fetch(t, media)
	msn := lastMSN(t, body) + 2
	// A fresh connection: on a reused one, Go's client silently retries
	// a GET the server dropped, and the retry finds the segment ready.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("%s?_HLS_msn=%d", media, msn))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("blocking reload cut off after %v: %v", took, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	reloaded := string(b)
	if resp.StatusCode != http.StatusOK || !strings.Contains(reloaded, "#EXTINF") {
		t.Fatalf("blocking reload after %v: %d %q", took, resp.StatusCode, reloaded)
	}
	if took < write {
		t.Fatalf("the reload took %v: it did not block past the write timeout %v, the test proves nothing", took, write)
	}
	// gohlslib answers once segment msn is under way (its parts listed).
	if got := lastMSN(t, reloaded); got < msn-1 {
		t.Fatalf("the reload for segment %d lists complete segments up to %d only", msn, got)
	}
	t.Logf("blocking reload answered after %v (write timeout %v)", took.Round(time.Millisecond), write)
}

// TestLimitEgresses: past limits.max_egresses running egresses, a start
// is refused (resource_exhausted, naming the limit); once one ends, a
// new one starts.
func TestLimitEgresses(t *testing.T) {
	checkLeaks(t)
	n := startNode(t, nodeOptions{limits: signaling.Limits{MaxEgresses: 1}})
	c, ctx, req, id := h264Egress(t, n, "egress-limit")
	_, err := c.StartTrackCompositeEgress(ctx, req)
	expectTwirp(t, err, twirp.ResourceExhausted, "egress limit reached: 1 egresses running on this node, limits.max_egresses is 1")
	if _, err := c.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: id}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the first egress COMPLETE", func() bool {
		return egressStatus(t, c, ctx, id) == livekit.EgressStatus_EGRESS_COMPLETE
	})
	again, err := c.StartTrackCompositeEgress(ctx, req)
	if err != nil {
		t.Fatalf("a new egress once the first ended: %v", err)
	}
	_, _ = c.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: again.EgressId})
}
