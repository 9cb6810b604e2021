package signaling_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/livekit/protocol/auth"

	"github.com/fanout-sfu/fanout/signaling"
)

func devTokenRequest(t *testing.T, method, query string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://sfu.example:7880/api/dev-token?"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	signaling.DevTokenHandler("devkey", "secret").ServeHTTP(rec, req)
	return rec
}

// TestDevTokenMintsJoinToken checks the token's grants and the URL returned.
func TestDevTokenMintsJoinToken(t *testing.T) {
	rec := devTokenRequest(t, http.MethodGet, "room=demo&identity=alice-1&name="+url.QueryEscape("Alice A."), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("cache control %q", cc)
	}
	var body struct {
		Token string `json:"token"`
		URL   string `json:"url"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.URL != "ws://sfu.example:7880" {
		t.Errorf("url %q", body.URL)
	}
	v, err := auth.ParseAPIToken(body.Token)
	if err != nil {
		t.Fatal(err)
	}
	if v.APIKey() != "devkey" {
		t.Errorf("key %q", v.APIKey())
	}
	_, g, err := v.Verify("secret")
	if err != nil {
		t.Fatal(err)
	}
	if g.Identity != "alice-1" || g.Name != "Alice A." {
		t.Errorf("identity %q name %q", g.Identity, g.Name)
	}
	vg := g.Video
	if vg == nil || !vg.RoomJoin || vg.Room != "demo" || vg.RoomAdmin {
		t.Fatalf("video grant %+v", vg)
	}
	if !vg.GetCanPublish() || !vg.GetCanSubscribe() || !vg.GetCanPublishData() || !vg.GetCanUpdateOwnMetadata() {
		t.Errorf("permissions %+v", vg)
	}
}

// TestDevTokenViewer checks viewer=1 gives a hidden subscribe-only token.
func TestDevTokenViewer(t *testing.T) {
	rec := devTokenRequest(t, http.MethodGet, "room=r&identity=v&viewer=1", nil)
	var body struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	v, err := auth.ParseAPIToken(body.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := v.Verify("secret")
	if err != nil {
		t.Fatal(err)
	}
	vg := g.Video
	if !vg.RoomJoin || vg.Room != "r" || !vg.Hidden || vg.GetCanPublish() || vg.GetCanPublishData() || !vg.GetCanSubscribe() {
		t.Errorf("viewer grant %+v", vg)
	}
}

// TestDevTokenWSSBehindTLSProxy checks the scheme follows X-Forwarded-Proto.
func TestDevTokenWSSBehindTLSProxy(t *testing.T) {
	rec := devTokenRequest(t, http.MethodGet, "room=r&identity=i", http.Header{"X-Forwarded-Proto": {"https"}})
	if !strings.Contains(rec.Body.String(), `"url":"wss://sfu.example:7880"`) {
		t.Errorf("body %s", rec.Body)
	}
}

// TestDevTokenRejectsBadInput covers the 400 and 405 answers.
func TestDevTokenRejectsBadInput(t *testing.T) {
	long := strings.Repeat("x", 257)
	cases := []struct {
		name, method, query string
		status              int
		want                string
	}{
		{"no room", http.MethodGet, "identity=i", http.StatusBadRequest, "missing room"},
		{"empty room", http.MethodGet, "room=&identity=i", http.StatusBadRequest, "missing room"},
		{"no identity", http.MethodGet, "room=r", http.StatusBadRequest, "missing identity"},
		{"spaces", http.MethodGet, "room=r&identity=%20i", http.StatusBadRequest, "spaces"},
		{"control char", http.MethodGet, "room=r%07x&identity=i", http.StatusBadRequest, "control"},
		{"long identity", http.MethodGet, "room=r&identity=" + long, http.StatusBadRequest, "longer"},
		{"bad utf8 name", http.MethodGet, "room=r&identity=i&name=%ff", http.StatusBadRequest, "UTF-8"},
		{"post", http.MethodPost, "room=r&identity=i", http.StatusMethodNotAllowed, "method"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := devTokenRequest(t, c.method, c.query, nil)
			if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.want) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, rec.Body, c.status, c.want)
			}
		})
	}
}
