package egress

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// nginxConf is a caching reverse proxy in front of the origin, as a CDN
// edge is: it caches by URL for as long as the origin's Cache-Control
// allows, and collapses concurrent misses of one URL into one origin
// request (proxy_cache_lock).
const nginxConf = `daemon off;
{{user}}
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 2048; }
http {
  access_log off;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
  proxy_cache_path {{dir}}/cache levels=1:2 keys_zone=hls:10m max_size=200m inactive=2m use_temp_path=off;
  server {
    listen 127.0.0.1:{{port}};
    location / {
      proxy_pass http://{{origin}};
      proxy_http_version 1.1;
      proxy_cache hls;
      proxy_cache_key $request_uri;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 15s;
      proxy_cache_lock_age 15s;
      proxy_read_timeout 30s;
    }
  }
}
`

// startNginx runs nginx with nginxConf in front of origin; it skips the
// test where nginx is not installed.
func startNginx(t *testing.T, origin string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx not installed (Debian package nginx)")
		}
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	user := "" // as root, workers would run as nobody, who cannot enter the test's directory
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := strings.NewReplacer("{{user}}", user, "{{dir}}", dir, "{{port}}", fmt.Sprint(port), "{{origin}}", origin).Replace(nginxConf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path)
	out, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// nginx's workers are its children: a process group of their own, so
	// that the cleanup stops them all (and no pipe stays open).
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			output, _ := os.ReadFile(filepath.Join(dir, "output.log"))
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", output, log)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return url
		}
	}
	t.Fatal("nginx did not listen within 5 s")
	return ""
}

// originCounter counts the origin's requests by path.
type originCounter struct {
	mu     sync.Mutex
	byPath map[string]int
	next   http.Handler
}

func (c *originCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.byPath[r.URL.RequestURI()]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

// TestHLSBehindCachingProxy: 200 clients polling the playlist and fetching
// parts and segments through a caching proxy (nginx) cost the origin at
// most two requests per part or segment: the cache headers work.
func TestHLSBehindCachingProxy(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after nginx's cleanup
	video, audio := newFakeTrack("TR_v", webrtc.MimeTypeH264, 90000), newFakeTrack("TR_a", webrtc.MimeTypeOpus, 48000)
	e, err := Start(Params{ID: "EG_cdn", Video: video, Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	counter := &originCounter{byPath: map[string]int{}, next: http.StripPrefix("/hls/EG_cdn", e)}
	origin := httptest.NewServer(counter)
	defer origin.Close()
	edge := startNginx(t, strings.TrimPrefix(origin.URL, "http://"))
	done := make(chan struct{})
	go func() { defer close(done); feed(t, video, audio, 14*time.Second) }()
	defer func() { <-done }()
	for deadline := time.Now().Add(10 * time.Second); !e.Started() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	multi, _ := getText(t, origin.URL+"/hls/EG_cdn/index.m3u8")
	mediaName := lastURI(multi, "")

	const clients, runFor = 200, 8 * time.Second
	var wg sync.WaitGroup
	var failures sync.Map
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	stop := time.Now().Add(runFor)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := pollOnce(client, edge+"/hls/EG_cdn/", mediaName); err != nil {
					failures.Store(err.Error(), true)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
	failures.Range(func(k, _ any) bool { t.Errorf("client: %v", k); return true })

	counter.mu.Lock()
	defer counter.mu.Unlock()
	var files, requests, worst, playlists int
	worstPath := ""
	for path, n := range counter.byPath {
		if strings.Contains(path, ".m3u8") {
			playlists += n
			continue
		}
		files++
		requests += n
		if n > worst {
			worst, worstPath = n, path
		}
	}
	t.Logf("hls-cdn-metric: %d clients for %v: %d parts/segments, %d origin requests for them (worst %d for %s), %d playlist origin requests",
		clients, runFor, files, requests, worst, worstPath, playlists)
	if files == 0 || worst > 2 {
		t.Errorf("origin requests per part or segment: worst %d (%s), want at most 2", worst, worstPath)
	}
}

// pollOnce is one round of an LL-HLS client through the edge: the media
// playlist, then its newest part and segment.
func pollOnce(c *http.Client, base, media string) error {
	playlist, err := getBody(c, base+media)
	if err != nil {
		return err
	}
	for _, uri := range []string{lastURI(playlist, "#EXT-X-PART:"), lastURI(playlist, "")} {
		if uri == "" {
			continue
		}
		if _, err := getBody(c, base+uri); err != nil {
			return err
		}
	}
	return nil
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return string(b), nil
}
