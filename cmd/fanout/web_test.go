package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRegisterWebDevTokenOnlyInDevMode checks / is always the demo page and
// /api/dev-token exists in dev mode only.
func TestRegisterWebDevTokenOnlyInDevMode(t *testing.T) {
	for _, dev := range []bool{true, false} {
		mux := http.NewServeMux()
		registerWeb(mux, &Config{Dev: dev, Keys: map[string]string{"other": strings.Repeat("s", 32), devAPIKey: devAPISecret}})
		srv := httptest.NewServer(mux)
		status := func(path string) int {
			res, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if got := status("/"); got != http.StatusOK {
			t.Errorf("dev=%v: / status %d", dev, got)
		}
		want := http.StatusNotFound
		if dev {
			want = http.StatusOK
		}
		if got := status("/api/dev-token?room=r&identity=i"); got != want {
			t.Errorf("dev=%v: /api/dev-token status %d, want %d", dev, got, want)
		}
		srv.Close()
	}
}

// TestDevSigningKey prefers devkey, else the first key.
func TestDevSigningKey(t *testing.T) {
	if k, s := devSigningKey(map[string]string{"b": "2", devAPIKey: devAPISecret}); k != devAPIKey || s != devAPISecret {
		t.Errorf("got %s/%s", k, s)
	}
	if k, s := devSigningKey(map[string]string{"b": "2", "a": "1"}); k != "a" || s != "1" {
		t.Errorf("got %s/%s", k, s)
	}
}
