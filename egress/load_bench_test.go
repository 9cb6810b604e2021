package egress

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// nextPart is the media sequence number and part index an LL-HLS client
// asks for next: the part after the last one a playlist lists.
func nextPart(playlist string) (msn, part int, ok bool) {
	for _, l := range strings.Split(playlist, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			if _, err := fmt.Sscanf(l, "#EXT-X-MEDIA-SEQUENCE:%d", &msn); err != nil {
				return 0, 0, false
			}
			ok = true
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			part++
		case l != "" && !strings.HasPrefix(l, "#"):
			msn, part = msn+1, 0
		}
	}
	return msn, part, ok
}

// viewerStats gathers the response times of the load's viewers.
type viewerStats struct {
	mu       sync.Mutex
	blocking []time.Duration // playlist reloads blocking for the next part
	parts    []time.Duration
	errors   int
	firstErr string
}

func (s *viewerStats) add(list *[]time.Duration, d time.Duration) {
	s.mu.Lock()
	*list = append(*list, d)
	s.mu.Unlock()
}

func (s *viewerStats) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors++
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// viewer is one LL-HLS client: it reloads the media playlist blocking for
// the next part (_HLS_msn, _HLS_part), then fetches that part, until stop.
func viewer(c *http.Client, base, media string, stop time.Time, st *viewerStats) {
	playlist, err := getBody(c, base+media)
	for err == nil && time.Now().Before(stop) {
		msn, part, ok := nextPart(playlist)
		if !ok {
			err = fmt.Errorf("playlist without a media sequence")
			break
		}
		start := time.Now()
		playlist, err = getBody(c, fmt.Sprintf("%s%s?_HLS_msn=%d&_HLS_part=%d", base, media, msn, part))
		if err != nil {
			break
		}
		st.add(&st.blocking, time.Since(start))
		uri := lastURI(playlist, "#EXT-X-PART:")
		start = time.Now()
		if _, err = getBody(c, base+uri); err != nil {
			break
		}
		st.add(&st.parts, time.Since(start))
	}
	if err != nil {
		st.fail(err)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHLSViewers runs 1,000 LL-HLS viewers for 10 s against the
// origin alone (one egress, in-process, over loopback HTTP): each reloads
// the playlist blocking for the next part and fetches the part. It
// reports the CPU time per viewer (of the whole process, load clients
// included, so an upper bound for the origin) and the response times.
//
//	go test -run xxx -bench HLSViewers -benchtime 1x ./egress
func BenchmarkHLSViewers(b *testing.B) {
	const viewers, runFor = 1000, 10 * time.Second
	for b.Loop() {
		video, audio := newFakeTrack("TR_v", webrtc.MimeTypeH264, 90000), newFakeTrack("TR_a", webrtc.MimeTypeOpus, 48000)
		e, err := Start(Params{ID: "EG_load", Video: video, Audio: audio})
		if err != nil {
			b.Fatal(err)
		}
		origin := httptest.NewServer(http.StripPrefix("/hls/EG_load", e))
		done := make(chan struct{})
		go func() { defer close(done); feed(b, video, audio, runFor+5*time.Second) }()
		for deadline := time.Now().Add(10 * time.Second); !e.Started() && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		base := origin.URL + "/hls/EG_load/"
		multi, err := getBody(http.DefaultClient, base+"index.m3u8")
		if err != nil {
			b.Fatal(err)
		}
		media := lastURI(multi, "")
		client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: viewers, MaxConnsPerHost: 0}}
		st := &viewerStats{}
		var wg sync.WaitGroup
		cpu0, t0 := cpuTime(), time.Now()
		stop := t0.Add(runFor)
		for range viewers {
			wg.Add(1)
			go func() { defer wg.Done(); viewer(client, base, media, stop, st) }()
		}
		wg.Wait()
		cpu, wall := cpuTime()-cpu0, time.Since(t0)
		client.CloseIdleConnections()
		<-done
		origin.Close()
		e.Close()
		if st.errors > 0 {
			b.Errorf("%d viewers failed, the first: %s", st.errors, st.firstErr)
		}
		perViewer := float64(cpu) / float64(time.Millisecond) / viewers / wall.Seconds()
		b.ReportMetric(perViewer, "cpu-ms/viewer-s")
		b.ReportMetric(float64(percentile(st.blocking, 0.5))/1e6, "p50-playlist-ms")
		b.ReportMetric(float64(percentile(st.blocking, 0.99))/1e6, "p99-playlist-ms")
		b.ReportMetric(float64(percentile(st.parts, 0.99))/1e6, "p99-part-ms")
		b.ReportMetric(float64(len(st.blocking))/wall.Seconds(), "playlists/s")
	}
}
