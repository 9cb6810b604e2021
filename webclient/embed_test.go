package webclient

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEmbedServesDemoPageAndBundle checks / is the demo page, uncached,
// and that every script it loads is served as JavaScript.
func TestEmbedServesDemoPageAndBundle(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodGet, "/", nil)
	page := body(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/: status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("/: content type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("/: cache control %q", cc)
	}
	for _, want := range []string{`data-testid="join-form"`, `data-testid="video-grid"`, `/assets/style.css`} {
		if !strings.Contains(page, want) {
			t.Errorf("/ lacks %s", want)
		}
	}
	scripts := regexp.MustCompile(`src="(/assets/[^"]+\.js)"`).FindAllStringSubmatch(page, -1)
	if len(scripts) == 0 {
		t.Fatal("/ loads no script")
	}
	for _, m := range scripts {
		js := get(t, h, http.MethodGet, m[1], nil)
		code := body(t, js)
		if js.StatusCode != http.StatusOK || len(code) < 1000 {
			t.Errorf("%s: status %d, %d bytes", m[1], js.StatusCode, len(code))
		}
		if ct := js.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
			t.Errorf("%s: content type %q", m[1], ct)
		}
		// The entry imports its shared chunk: that must be served too.
		for _, c := range regexp.MustCompile(`"\./(chunk-[A-Z0-9]+\.js)"`).FindAllStringSubmatch(code, -1) {
			chunk := get(t, h, http.MethodGet, "/assets/"+c[1], nil)
			if chunk.StatusCode != http.StatusOK || !strings.Contains(chunk.Header.Get("Cache-Control"), "immutable") {
				t.Errorf("%s: status %d, cache %q", c[1], chunk.StatusCode, chunk.Header.Get("Cache-Control"))
			}
		}
	}
	css := get(t, h, http.MethodGet, "/assets/style.css", nil)
	if css.StatusCode != http.StatusOK || css.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("style.css: %d %q", css.StatusCode, css.Header.Get("Content-Type"))
	}
}

// TestEmbedViewerAndErrors covers the viewer page, 404s, 405 and 304.
func TestEmbedViewerAndErrors(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/viewer.html", "/viewer"} {
		res := get(t, h, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusOK || !strings.Contains(body(t, res), `data-testid="viewer-form"`) {
			t.Errorf("%s: status %d", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/nope", "/api/dev-token", "/assets/", "/../embed.go", "/dist/index.html"} {
		if res := get(t, h, http.MethodGet, p, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
	}
	if res := get(t, h, http.MethodPost, "/", nil); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d", res.StatusCode)
	}
	first := get(t, h, http.MethodGet, "/", nil)
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if res := get(t, h, http.MethodGet, "/", http.Header{"If-None-Match": {etag}}); res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", res.StatusCode)
	}
	if res := get(t, h, http.MethodHead, "/", nil); res.StatusCode != http.StatusOK || body(t, res) != "" {
		t.Errorf("HEAD /: status %d", res.StatusCode)
	}
}
