package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
)

func TestRunToken(t *testing.T) {
	configFile := writeFile(t, "keys:\n  filekey: "+goodSecret+"\n")
	type want struct {
		key, secret, name           string
		publish, subscribe, pubData bool
		admin                       bool
		validFor                    time.Duration
	}
	base := want{key: devAPIKey, secret: devAPISecret, publish: true, subscribe: true, pubData: true,
		validFor: defaultTokenValidity}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(w *want)
		wantErr []string
	}{
		{name: "dev pair by default", want: func(w *want) {}},
		{name: "dev flag accepted", args: []string{"--dev"}, want: func(w *want) {}},
		{
			name: "name admin and validity",
			args: []string{"--name", "Alice A.", "--admin", "--valid-for", "1h"},
			want: func(w *want) { w.name, w.admin, w.validFor = "Alice A.", true, time.Hour },
		},
		{
			name: "no publish implies no data",
			args: []string{"--publish=false"},
			want: func(w *want) { w.publish, w.pubData = false, false },
		},
		{
			name: "data without media",
			args: []string{"--publish=false", "--publish-data"},
			want: func(w *want) { w.publish = false },
		},
		{
			name: "subscribe only off",
			args: []string{"--subscribe=false", "--publish-data=false"},
			want: func(w *want) { w.subscribe, w.pubData = false, false },
		},
		{
			name: "explicit key and secret",
			args: []string{"--key", "mine", "--secret", "s3"},
			env:  map[string]string{"FANOUT_KEYS": "other: " + goodSecret},
			want: func(w *want) { w.key, w.secret = "mine", "s3" },
		},
		{
			name: "single key from env",
			env:  map[string]string{"FANOUT_KEYS": "envkey: " + goodSecret},
			want: func(w *want) { w.key, w.secret = "envkey", goodSecret },
		},
		{
			name: "single key from config file",
			args: []string{"--config", configFile},
			want: func(w *want) { w.key, w.secret = "filekey", goodSecret },
		},
		{
			name: "config file from env",
			env:  map[string]string{configPathEnv: configFile},
			want: func(w *want) { w.key, w.secret = "filekey", goodSecret },
		},
		{
			name: "keys flag overrides env",
			args: []string{"--keys", "flagkey: fs"},
			env:  map[string]string{"FANOUT_KEYS": "envkey: " + goodSecret},
			want: func(w *want) { w.key, w.secret = "flagkey", "fs" },
		},
		{
			name: "key chosen among several",
			args: []string{"--key", "b"},
			env:  map[string]string{"FANOUT_KEYS": "a: sa, b: sb"},
			want: func(w *want) { w.key, w.secret = "b", "sb" },
		},
		{
			name:    "several keys need --key",
			env:     map[string]string{"FANOUT_KEYS": "b: sb, a: sa"},
			wantErr: []string{"several API keys configured (a, b)", "--key"},
		},
		{
			name:    "unknown key",
			args:    []string{"--key", "nope"},
			wantErr: []string{`API key "nope" is not configured`},
		},
		{
			name:    "secret without key",
			args:    []string{"--secret", "s"},
			wantErr: []string{"--secret needs --key"},
		},
		{
			name:    "bad validity",
			args:    []string{"--valid-for", "0s"},
			wantErr: []string{"--valid-for 0s must be positive"},
		},
		{
			name:    "bad publish-data",
			args:    []string{"--publish-data=maybe"},
			wantErr: []string{"--publish-data", `invalid boolean "maybe"`},
		},
		{
			name:    "bad keys env",
			env:     map[string]string{"FANOUT_KEYS": "nocolon"},
			wantErr: []string{"FANOUT_KEYS", "keys entry 1"},
		},
		{
			name:    "bad config file",
			args:    []string{"--config", "/nonexistent.yaml"},
			wantErr: []string{"open config file"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--room", "my-room", "--identity", "alice"}, tc.args...)
			var out bytes.Buffer
			err := runToken(args, envMap(tc.env), &out)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("runToken() succeeded, want error containing %q", tc.wantErr)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if out.Len() != 0 {
					t.Errorf("runToken() wrote %q on error", out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("runToken() error: %v", err)
			}
			w := base
			tc.want(&w)
			checkToken(t, out.String(), w.key, w.secret, func(claims tokenCheck) {
				g := claims.grants
				v := g.Video
				if g.Identity != "alice" || g.Name != w.name {
					t.Errorf("identity, name = %q, %q; want alice, %q", g.Identity, g.Name, w.name)
				}
				if v == nil || !v.RoomJoin || v.Room != "my-room" || v.RoomAdmin != w.admin {
					t.Fatalf("video grant = %+v, want join of my-room, admin %v", v, w.admin)
				}
				if v.GetCanPublish() != w.publish || v.GetCanSubscribe() != w.subscribe ||
					v.GetCanPublishData() != w.pubData {
					t.Errorf("publish, subscribe, data = %v, %v, %v; want %v, %v, %v",
						v.GetCanPublish(), v.GetCanSubscribe(), v.GetCanPublishData(),
						w.publish, w.subscribe, w.pubData)
				}
				if claims.validFor != w.validFor {
					t.Errorf("valid for %s, want %s", claims.validFor, w.validFor)
				}
			})
		})
	}
}

// tokenCheck is what checkToken extracts from a verified token.
type tokenCheck struct {
	grants   *auth.ClaimGrants
	validFor time.Duration
}

// checkToken verifies that out is exactly one JWT line signed by key/secret,
// not yet expired, and passes its claims to check.
func checkToken(t *testing.T, out, key, secret string, check func(tokenCheck)) {
	t.Helper()
	jwt, ok := strings.CutSuffix(out, "\n")
	if !ok || jwt == "" || strings.ContainsAny(jwt, "\n \t") {
		t.Fatalf("output %q is not one JWT and a newline", out)
	}
	v, err := auth.ParseAPIToken(jwt)
	if err != nil {
		t.Fatalf("ParseAPIToken: %v", err)
	}
	if v.APIKey() != key {
		t.Errorf("API key = %q, want %q", v.APIKey(), key)
	}
	claims, grants, err := v.Verify(secret)
	if err != nil {
		t.Fatalf("Verify with the expected secret: %v", err)
	}
	if _, _, err := v.Verify(secret + "x"); err == nil {
		t.Error("Verify succeeded with a wrong secret")
	}
	if claims.ExpiresAt == nil || claims.IssuedAt == nil || !claims.ExpiresAt.After(time.Now()) {
		t.Fatalf("bad expiry: exp %v, iat %v", claims.ExpiresAt, claims.IssuedAt)
	}
	check(tokenCheck{grants: grants, validFor: claims.ExpiresAt.Sub(claims.IssuedAt.Time)})
}

func TestRunTokenRequiredFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"no flags", nil, []string{"--room is required", "--identity is required"}},
		{"no identity", []string{"--room", "r"}, []string{"--identity is required"}},
		{"no room", []string{"--identity", "i"}, []string{"--room is required"}},
		{"blank room", []string{"--room", " ", "--identity", "i"}, []string{"--room is required"}},
		{"stray argument", []string{"--room", "r", "--identity", "i", "extra"},
			[]string{`unexpected argument "extra"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runToken(tc.args, envMap(nil), &out)
			if err == nil {
				t.Fatal("runToken() succeeded, want error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestRunTokenHelp(t *testing.T) {
	var out bytes.Buffer
	err := runToken([]string{"--help"}, envMap(nil), &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), "-identity") {
		t.Fatalf("runToken(--help) error = %v, want flag.ErrHelp with usage", err)
	}
	if out.Len() != 0 {
		t.Errorf("runToken(--help) wrote %q to stdout", out.String())
	}
}
