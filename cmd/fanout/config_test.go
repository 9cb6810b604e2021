package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// goodSecret is a secret long enough for non-dev mode.
const goodSecret = "0123456789abcdef0123456789abcdef"

// envMap returns a getenv backed by m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	devKeys := map[string]string{devAPIKey: devAPISecret}
	goodKeys := map[string]string{"k1": goodSecret}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		yaml    string // written to a file passed with --config when not empty
		want    func(c *Config)
		wantErr []string // substrings of the error; nil means success
	}{
		{
			name: "dev defaults",
			args: []string{"--dev"},
			want: func(c *Config) { c.Dev, c.Keys, c.LogLevel = true, devKeys, "debug" },
		},
		{
			name: "dev keeps explicit log level",
			args: []string{"--dev", "--log-level", "WARN"},
			want: func(c *Config) { c.Dev, c.Keys, c.LogLevel = true, devKeys, "warn" },
		},
		{
			name: "dev keeps configured keys and allows short secrets",
			args: []string{"--dev", "--keys", "a: b"},
			want: func(c *Config) { c.Dev, c.Keys, c.LogLevel = true, map[string]string{"a": "b"}, "debug" },
		},
		{
			name: "dev from env",
			env:  map[string]string{"FANOUT_DEV": "1"},
			want: func(c *Config) { c.Dev, c.Keys, c.LogLevel = true, devKeys, "debug" },
		},
		{
			name:    "no keys",
			wantErr: []string{`no API keys configured: pass --keys "key: secret" or --dev`},
		},
		{
			name:    "dev=false from flag overrides env",
			args:    []string{"--dev=false"},
			env:     map[string]string{"FANOUT_DEV": "true"},
			wantErr: []string{"no API keys configured"},
		},
		{
			name: "keys flag with commas and newlines",
			args: []string{"--keys", "k1: " + goodSecret + ", k2:" + goodSecret + "x\n k3 : " + goodSecret},
			want: func(c *Config) {
				c.Keys = map[string]string{"k1": goodSecret, "k2": goodSecret + "x", "k3": goodSecret}
				c.LogLevel = "info"
			},
		},
		{
			name:    "short secret rejected outside dev",
			args:    []string{"--keys", "short: tooshort"},
			wantErr: []string{`API key "short"`, "at least 32"},
		},
		{
			name:    "malformed keys",
			args:    []string{"--keys", "k1 " + goodSecret},
			wantErr: []string{"--keys", `keys entry 1: want "key: secret"`},
		},
		{
			name: "every flag",
			args: []string{"--keys", "k1: " + goodSecret, "--bind", "127.0.0.1", "--port", "8000",
				"--udp-port", "8002", "--tcp-port", "8001", "--node-ip", "203.0.113.7",
				"--redis", "localhost:6379", "--region", "eu", "--log-level", "error"},
			want: func(c *Config) {
				c.Keys, c.Bind, c.Port, c.UDPPort, c.TCPPort = goodKeys, "127.0.0.1", 8000, 8002, 8001
				c.NodeIP, c.Redis, c.Region, c.LogLevel = "203.0.113.7", "localhost:6379", "eu", "error"
			},
		},
		{
			name: "every env var",
			env: map[string]string{"FANOUT_KEYS": "k1: " + goodSecret, "FANOUT_BIND": "::1",
				"FANOUT_PORT": "9000", "FANOUT_UDP_PORT": "9002", "FANOUT_TCP_PORT": "9001",
				"FANOUT_NODE_IP": "2001:db8::1", "FANOUT_REDIS": "[::1]:6379", "FANOUT_REGION": "us",
				"FANOUT_LOG_LEVEL": "debug"},
			want: func(c *Config) {
				c.Keys, c.Bind, c.Port, c.UDPPort, c.TCPPort = goodKeys, "::1", 9000, 9002, 9001
				c.NodeIP, c.Redis, c.Region, c.LogLevel = "2001:db8::1", "[::1]:6379", "us", "debug"
			},
		},
		{
			name: "yaml file",
			yaml: "keys:\n  k1: " + goodSecret + "\nbind: \"\"\nport: 1000\nregion: ap\n" +
				"room:\n  empty_timeout: 1m\n  max_participants: 50\n",
			want: func(c *Config) {
				c.Keys, c.Bind, c.Port, c.Region, c.LogLevel = goodKeys, "", 1000, "ap", "info"
				c.Room.EmptyTimeout, c.Room.MaxParticipants = Duration(time.Minute), 50
			},
		},
		{
			name: "env overrides yaml",
			yaml: "keys:\n  k1: " + goodSecret + "\nport: 1000\n",
			env:  map[string]string{"FANOUT_PORT": "2000"},
			want: func(c *Config) { c.Keys, c.Port, c.LogLevel = goodKeys, 2000, "info" },
		},
		{
			name: "flag overrides env and yaml",
			yaml: "keys:\n  k1: " + goodSecret + "\nport: 1000\n",
			env:  map[string]string{"FANOUT_PORT": "2000"},
			args: []string{"--port", "3000"},
			want: func(c *Config) { c.Keys, c.Port, c.LogLevel = goodKeys, 3000, "info" },
		},
		{
			name: "env keys replace yaml keys",
			yaml: "keys:\n  old: " + goodSecret + "\n",
			env:  map[string]string{"FANOUT_KEYS": "k1: " + goodSecret},
			want: func(c *Config) { c.Keys, c.LogLevel = goodKeys, "info" },
		},
		{
			name: "empty yaml file",
			yaml: "# nothing\n",
			args: []string{"--dev"},
			want: func(c *Config) { c.Dev, c.Keys, c.LogLevel = true, devKeys, "debug" },
		},
		{
			name:    "unknown yaml key",
			yaml:    "dev: true\nudp_prot: 7882\n",
			wantErr: []string{"udp_prot"},
		},
		{
			name:    "unknown nested yaml key",
			yaml:    "dev: true\nroom:\n  emptytimeout: 1m\n",
			wantErr: []string{"emptytimeout"},
		},
		{
			name:    "bad yaml duration",
			yaml:    "dev: true\nroom:\n  departure_timeout: 20\n",
			wantErr: []string{`invalid duration "20"`, "line 3"},
		},
		{
			name:    "negative duration",
			yaml:    "dev: true\nroom:\n  empty_timeout: -1s\n",
			wantErr: []string{"room.empty_timeout -1s is negative"},
		},
		{
			name:    "missing config file",
			args:    []string{"--config", "/nonexistent/fanout.yaml"},
			wantErr: []string{"open config file", "/nonexistent/fanout.yaml"},
		},
		{
			name:    "port out of range",
			args:    []string{"--dev", "--port", "70000"},
			wantErr: []string{"port 70000 is out of range 1..65535"},
		},
		{
			name:    "udp and tcp clash",
			args:    []string{"--dev", "--udp-port", "7881"},
			wantErr: []string{"udp_port and tcp_port are both 7881"},
		},
		{
			name:    "http and tcp clash",
			args:    []string{"--dev", "--tcp-port", "7880"},
			wantErr: []string{"port and tcp_port are both 7880"},
		},
		{
			name:    "bad port in env",
			args:    []string{"--dev"},
			env:     map[string]string{"FANOUT_UDP_PORT": "abc"},
			wantErr: []string{"FANOUT_UDP_PORT", `invalid number "abc"`},
		},
		{
			name:    "bad dev env",
			env:     map[string]string{"FANOUT_DEV": "maybe"},
			wantErr: []string{"FANOUT_DEV", `invalid boolean "maybe"`},
		},
		{
			name:    "bad node ip",
			args:    []string{"--dev", "--node-ip", "example.com"},
			wantErr: []string{`node_ip "example.com" is not an IP address`},
		},
		{
			name:    "bad redis",
			args:    []string{"--dev", "--redis", "localhost"},
			wantErr: []string{`redis "localhost" is not host:port`},
		},
		{
			name:    "bad log level",
			args:    []string{"--dev", "--log-level", "verbose"},
			wantErr: []string{`log_level "verbose"`},
		},
		{
			name:    "several problems reported together",
			args:    []string{"--dev", "--port", "0", "--log-level", "loud"},
			wantErr: []string{"port 0 is out of range", `log_level "loud"`},
		},
		{
			name:    "unknown flag",
			args:    []string{"--dev", "--prot", "1"},
			wantErr: []string{"flag provided but not defined: -prot"},
		},
		{
			name:    "stray argument",
			args:    []string{"--dev", "serve"},
			wantErr: []string{`unexpected argument "serve"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append([]string{"--config", writeFile(t, tc.yaml)}, args...)
			}
			got, err := LoadConfig(args, envMap(tc.env))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("LoadConfig() = %+v, want error containing %q", got, tc.wantErr)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig() error: %v", err)
			}
			want := defaultConfig()
			tc.want(&want)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("LoadConfig() =\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestLoadConfigFromEnvPath(t *testing.T) {
	tests := []struct {
		name     string
		envPath  string
		flagPath string
		wantPort int
	}{
		{"env path", "a", "", 1111},
		{"flag path wins", "a", "b", 2222},
	}
	files := map[string]string{
		"a": writeFile(t, "dev: true\nport: 1111\n"),
		"b": writeFile(t, "dev: true\nport: 2222\n"),
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.flagPath != "" {
				args = []string{"--config", files[tc.flagPath]}
			}
			cfg, err := LoadConfig(args, envMap(map[string]string{configPathEnv: files[tc.envPath]}))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Port != tc.wantPort {
				t.Errorf("Port = %d, want %d", cfg.Port, tc.wantPort)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		_, err := LoadConfig([]string{arg}, envMap(nil))
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("LoadConfig(%s) error = %v, want flag.ErrHelp", arg, err)
		}
		for _, s := range []string{"-udp-port", "FANOUT_UDP_PORT", "-config"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("usage does not mention %q:\n%s", s, err)
			}
		}
	}
}

// TestExampleConfig checks that fanout.example.yaml loads, shows the real
// defaults, and documents every key of Config.
func TestExampleConfig(t *testing.T) {
	const path = "../../fanout.example.yaml"
	cfg, err := LoadConfig([]string{"--config", path}, envMap(nil))
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	want := defaultConfig()
	want.Keys, want.LogLevel = cfg.Keys, "info"
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("example config values differ from defaults:\n%+v\nwant\n%+v", *cfg, want)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeFor[Config]()) {
		// Each key must be present and preceded by a comment line.
		re := regexp.MustCompile(`(?m)^\s*#.*\n\s*` + regexp.QuoteMeta(key) + `:`)
		if !re.Match(text) {
			t.Errorf("example config lacks a commented %q key", key)
		}
	}
}

// yamlKeys lists the yaml tag names of t's fields and of nested structs.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		keys = append(keys, name)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(f.Type)...)
		}
	}
	return keys
}

func TestSlogLevel(t *testing.T) {
	tests := []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"error", slog.LevelError},
		{"ERROR", slog.LevelError},
		{"", slog.LevelInfo},
		{"bogus", slog.LevelInfo},
	}
	for _, tc := range tests {
		c := &Config{LogLevel: tc.level}
		if got := c.SlogLevel(); got != tc.want {
			t.Errorf("SlogLevel(%q) = %v, want %v", tc.level, got, tc.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "devkey: secret", want: map[string]string{"devkey": "secret"}},
		{in: "a:b,c: d\n\ne :f:g\n", want: map[string]string{"a": "b", "c": "d", "e": "f:g"}},
		{in: "a: b, a: c", wantErr: `API key "a" given twice`},
		{in: "a: b, nocolon", wantErr: "keys entry 2"},
		{in: "a:", wantErr: "keys entry 1"},
		{in: ": s3cret", wantErr: "keys entry 1"},
		{in: " , \n", wantErr: "no \"key: secret\" pair"},
	}
	for _, tc := range tests {
		got, err := parseKeys(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseKeys(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("parseKeys(%q) error leaks the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseKeys(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestLimitsConfig: the limits: section is read from YAML over the
// defaults, reaches the SFU and the signaling layer, and refuses a limit
// that is zero or negative, or a signal size no offer fits in.
func TestLimitsConfig(t *testing.T) {
	path := writeFile(t, "keys: {k1: "+goodSecret+"}\nlimits:\n  max_rooms: 7\n  signal_rate: 2.5\n  max_egresses: 3\n")
	cfg, err := LoadConfig([]string{"--config", path}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultLimits()
	want.MaxRooms, want.SignalRate, want.MaxEgresses = 7, 2.5, 3
	if cfg.Limits != want {
		t.Fatalf("limits %+v, want %+v", cfg.Limits, want)
	}
	if s, g := cfg.Limits.sfu(), cfg.Limits.signaling(); s.MaxRooms != 7 || g.SignalRate != 2.5 || g.MaxEgresses != 3 ||
		s.MaxDataPacketSize != want.MaxDataPacketSize || g.MaxWHEPSessions != want.MaxWHEPSessions {
		t.Fatalf("sfu %+v, signaling %+v", s, g)
	}
	for _, tc := range []struct{ yaml, err string }{
		{"max_rooms: 0", "limits.max_rooms 0 must be positive"},
		{"data_packet_rate: -1", "limits.data_packet_rate -1 must be positive"},
		{"max_signal_message_size: 1000", "limits.max_signal_message_size 1000 is below 16384"},
		{"max_whip_session: 3", "field max_whip_session not found"},
	} {
		path := writeFile(t, "keys: {k1: "+goodSecret+"}\nlimits:\n  "+tc.yaml+"\n")
		if _, err := LoadConfig([]string{"--config", path}, envMap(nil)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.err)
		}
	}
}
