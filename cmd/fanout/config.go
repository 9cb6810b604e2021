package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"

	"gopkg.in/yaml.v3"
)

// Defaults shared by the server and the token subcommand.
const (
	defaultBind    = "0.0.0.0"
	defaultPort    = 7880
	defaultTCPPort = 7881
	defaultUDPPort = 7882

	// devAPIKey and devAPISecret are the well-known credentials of --dev mode,
	// the same pair livekit-server --dev uses.
	devAPIKey    = "devkey"
	devAPISecret = "secret"

	// minSecretLen is the shortest API secret accepted outside dev mode.
	minSecretLen = 32

	// configPathEnv names the environment variable holding the YAML config path.
	configPathEnv = "FANOUT_CONFIG"
)

// errNoAPIKeys is returned when neither keys nor --dev are given.
var errNoAPIKeys = errors.New(`no API keys configured: pass --keys "key: secret" or --dev`)

// Duration is a time.Duration read from YAML as a Go duration string ("5m", "20s").
type Duration time.Duration

// UnmarshalYAML parses a scalar such as "5m" or "1h30m" with time.ParseDuration.
func (d *Duration) UnmarshalYAML(value *yaml.Node) error {
	if value.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string such as \"20s\"", value.Line)
	}
	v, err := time.ParseDuration(value.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q: %w", value.Line, value.Value, err)
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Config is the whole server configuration (YAML keys in snake_case shown in tags).
type Config struct {
	Dev      bool              `yaml:"dev"`
	Bind     string            `yaml:"bind"`      // HTTP/WS bind address, default "0.0.0.0" ("" = all)
	Port     int               `yaml:"port"`      // HTTP/WS, default 7880
	UDPPort  int               `yaml:"udp_port"`  // one muxed UDP port for WebRTC, default 7882
	TCPPort  int               `yaml:"tcp_port"`  // ICE-TCP, default 7881
	NodeIP   string            `yaml:"node_ip"`   // IP advertised in ICE candidates; "" = the interface addresses
	Keys     map[string]string `yaml:"keys"`      // API key -> secret
	Redis    string            `yaml:"redis"`     // host:port; "" = single node, no Redis
	Region   string            `yaml:"region"`    // region label of this node, for multi-node setups
	LogLevel string            `yaml:"log_level"` // debug|info|warn|error, default info (debug with --dev)
	Room     RoomConfig        `yaml:"room"`
	Egress   EgressConfig      `yaml:"egress"`
	Limits   LimitsConfig      `yaml:"limits"`
	// ICEServers are STUN/TURN servers handed to clients: in join
	// responses, and in WHIP and WHEP responses' Link headers.
	ICEServers []ICEServerConfig `yaml:"ice_servers"`
}

// EgressConfig holds the HLS egress settings.
type EgressConfig struct {
	HLSForIngress bool `yaml:"hls_for_ingress"` // every WHIP broadcaster gets an HLS egress, linked from the WHIP response
}

// ICEServerConfig is one STUN or TURN server.
type ICEServerConfig struct {
	URLs       []string `yaml:"urls"` // e.g. stun:stun.example.net:3478, turn:turn.example.net?transport=udp
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// iceServers converts the configured servers to the protocol's type.
func (c *Config) iceServers() []*livekit.ICEServer {
	out := make([]*livekit.ICEServer, 0, len(c.ICEServers))
	for _, s := range c.ICEServers {
		out = append(out, &livekit.ICEServer{Urls: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// RoomConfig holds room defaults.
type RoomConfig struct {
	EmptyTimeout       Duration `yaml:"empty_timeout"`       // close an empty room after, default (and 0) 5m
	DepartureTimeout   Duration `yaml:"departure_timeout"`   // close room after the last participant left, default (and 0) 20s
	ParticipantTimeout Duration `yaml:"participant_timeout"` // remove a participant whose signal connection vanished without leave, default 20s
	MaxParticipants    int      `yaml:"max_participants"`    // 0 = unlimited
}

// defaultConfig returns the built-in defaults; LogLevel stays empty so that
// LoadConfig can tell whether any source set it (dev mode then picks debug).
func defaultConfig() Config {
	return Config{
		Bind:    defaultBind,
		Port:    defaultPort,
		UDPPort: defaultUDPPort,
		TCPPort: defaultTCPPort,
		Room: RoomConfig{
			EmptyTimeout:       Duration(5 * time.Minute),
			DepartureTimeout:   Duration(20 * time.Second),
			ParticipantTimeout: Duration(20 * time.Second),
		},
		Limits: defaultLimits(),
	}
}

// setting is one option that can come from a FANOUT_* variable and a flag.
type setting struct {
	flag   string
	env    string
	isBool bool
	usage  string
	set    func(c *Config, v string) error
}

// settings lists every option except --config, which is handled first.
var settings = []setting{
	{"dev", "FANOUT_DEV", true, "development mode: key devkey/secret if none configured, debug logging",
		func(c *Config, v string) error { return parseBool(v, &c.Dev) }},
	{"bind", "FANOUT_BIND", false, "HTTP/WebSocket bind `address` (empty = all interfaces)",
		func(c *Config, v string) error { c.Bind = v; return nil }},
	{"port", "FANOUT_PORT", false, "HTTP/WebSocket `port`",
		func(c *Config, v string) error { return parseInt(v, &c.Port) }},
	{"udp-port", "FANOUT_UDP_PORT", false, "muxed UDP `port` for WebRTC media",
		func(c *Config, v string) error { return parseInt(v, &c.UDPPort) }},
	{"tcp-port", "FANOUT_TCP_PORT", false, "ICE-TCP `port`",
		func(c *Config, v string) error { return parseInt(v, &c.TCPPort) }},
	{"node-ip", "FANOUT_NODE_IP", false, "`IP` advertised in ICE candidates (empty = interface addresses)",
		func(c *Config, v string) error { c.NodeIP = v; return nil }},
	{"keys", "FANOUT_KEYS", false, "API `keys` as \"key: secret\" pairs separated by newlines or commas",
		func(c *Config, v string) error { return parseKeysInto(v, &c.Keys) }},
	{"redis", "FANOUT_REDIS", false, "Redis `host:port` for multi-node mode (empty = single node)",
		func(c *Config, v string) error { c.Redis = v; return nil }},
	{"region", "FANOUT_REGION", false, "`region` label of this node",
		func(c *Config, v string) error { c.Region = v; return nil }},
	{"log-level", "FANOUT_LOG_LEVEL", false, "log `level`: debug, info, warn or error",
		func(c *Config, v string) error { c.LogLevel = strings.ToLower(strings.TrimSpace(v)); return nil }},
}

// rawValue records a flag's text so it can be applied after the YAML file
// and the environment, which have lower precedence.
type rawValue struct {
	text   string
	isBool bool
}

// String returns the text given on the command line.
func (r *rawValue) String() string {
	if r == nil {
		return ""
	}
	return r.text
}

// Set records the text given on the command line.
func (r *rawValue) Set(s string) error { r.text = s; return nil }

// IsBoolFlag lets boolean options be given as a bare --name.
func (r *rawValue) IsBoolFlag() bool { return r.isBool }

// LoadConfig builds the server configuration from defaults, the YAML file
// (--config or FANOUT_CONFIG), FANOUT_* variables and flags, each overriding
// the previous, then validates it.
func LoadConfig(args []string, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	configPath := fs.String("config", "", "`path` of a YAML config file (env "+configPathEnv+")")
	raw := make(map[string]*rawValue, len(settings))
	for _, s := range settings {
		raw[s.flag] = &rawValue{isBool: s.isBool}
		fs.Var(raw[s.flag], s.flag, s.usage+" (env "+s.env+")")
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}

	cfg := defaultConfig()
	if err := loadYAML(pathOf(*configPath, getenv), &cfg); err != nil {
		return nil, err
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(&cfg, v); err != nil {
				return nil, fmt.Errorf("%s: %w", s.env, err)
			}
		}
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flag == f.Name && flagErr == nil {
				if err := s.set(&cfg, raw[s.flag].text); err != nil {
					flagErr = fmt.Errorf("--%s: %w", s.flag, err)
				}
			}
		}
	})
	if flagErr != nil {
		return nil, flagErr
	}

	cfg.applyDevDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// parseFlags parses args with fs, keeping the flag package's own output
// quiet: errors are returned, and --help returns flag.ErrHelp with the usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var usage strings.Builder
	fs.SetOutput(&usage)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w\n%s", flag.ErrHelp, usage.String())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// pathOf returns the config file path from the flag, else from FANOUT_CONFIG.
func pathOf(flagPath string, getenv func(string) string) string {
	if flagPath != "" {
		return flagPath
	}
	return getenv(configPathEnv)
}

// loadYAML decodes the file at path over cfg; an empty path is no file.
// Keys not in Config are rejected.
func loadYAML(path string, cfg *Config) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// applyDevDefaults fills in the dev key pair and debug logging in dev mode,
// and the info log level otherwise, where nothing else set them.
func (c *Config) applyDevDefaults() {
	if c.Dev && len(c.Keys) == 0 {
		c.Keys = map[string]string{devAPIKey: devAPISecret}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
		if c.Dev {
			c.LogLevel = "debug"
		}
	}
}

// validate reports every problem in c at once.
func (c *Config) validate() error {
	errs := []error{c.validatePorts(), c.validateKeys()}
	if c.NodeIP != "" {
		if _, err := netip.ParseAddr(c.NodeIP); err != nil {
			errs = append(errs, fmt.Errorf("node_ip %q is not an IP address: %w", c.NodeIP, err))
		}
	}
	if c.Redis != "" {
		if _, port, err := net.SplitHostPort(c.Redis); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("redis %q is not host:port", c.Redis))
		}
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		errs = append(errs, fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel))
	}
	errs = append(errs, c.Room.validate(), c.Limits.validate())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	return nil
}

// validatePorts checks the range of each port and that the three differ.
func (c *Config) validatePorts() error {
	ports := []struct {
		name string
		val  int
	}{{"port", c.Port}, {"udp_port", c.UDPPort}, {"tcp_port", c.TCPPort}}
	var errs []error
	for i, p := range ports {
		if p.val < 1 || p.val > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is out of range 1..65535", p.name, p.val))
			continue
		}
		for _, q := range ports[:i] {
			if q.val == p.val {
				errs = append(errs, fmt.Errorf("%s and %s are both %d: they must differ", q.name, p.name, p.val))
			}
		}
	}
	return errors.Join(errs...)
}

// validateKeys requires at least one key, and secrets of minSecretLen
// characters or more outside dev mode. Secrets never appear in errors.
func (c *Config) validateKeys() error {
	if len(c.Keys) == 0 {
		return errNoAPIKeys
	}
	var errs []error
	for _, key := range sortedKeys(c.Keys) {
		secret := c.Keys[key]
		switch {
		case key == "":
			errs = append(errs, errors.New("keys: empty API key"))
		case secret == "":
			errs = append(errs, fmt.Errorf("keys: API key %q has an empty secret", key))
		case !c.Dev && len(secret) < minSecretLen:
			errs = append(errs, fmt.Errorf("keys: secret of API key %q is %d characters long, need at least %d (or use --dev)",
				key, len(secret), minSecretLen))
		}
	}
	return errors.Join(errs...)
}

// validate rejects negative timeouts and limits.
func (r RoomConfig) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		val  Duration
	}{
		{"room.empty_timeout", r.EmptyTimeout},
		{"room.departure_timeout", r.DepartureTimeout},
		{"room.participant_timeout", r.ParticipantTimeout},
	} {
		if d.val < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", d.name, d.val))
		}
	}
	if r.MaxParticipants < 0 {
		errs = append(errs, fmt.Errorf("room.max_participants %d is negative", r.MaxParticipants))
	}
	return errors.Join(errs...)
}

// logLevels maps the accepted log_level names to slog levels.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// SlogLevel returns the configured log level for log/slog (info if unknown).
func (c *Config) SlogLevel() slog.Level {
	if l, ok := logLevels[strings.ToLower(c.LogLevel)]; ok {
		return l
	}
	return slog.LevelInfo
}

// parseKeys parses livekit-server's --keys format: "key: secret" pairs
// separated by newlines or commas. Errors name the key, never the secret.
func parseKeys(s string) (map[string]string, error) {
	keys := make(map[string]string)
	entries := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' })
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		key, secret, ok := strings.Cut(entry, ":")
		key, secret = strings.TrimSpace(key), strings.TrimSpace(secret)
		if !ok || key == "" || secret == "" {
			return nil, fmt.Errorf(`keys entry %d: want "key: secret"`, i+1)
		}
		if _, dup := keys[key]; dup {
			return nil, fmt.Errorf("keys: API key %q given twice", key)
		}
		keys[key] = secret
	}
	if len(keys) == 0 {
		return nil, errors.New(`keys: no "key: secret" pair found`)
	}
	return keys, nil
}

// parseKeysInto replaces *dst with the keys parsed from s.
func parseKeysInto(s string, dst *map[string]string) error {
	keys, err := parseKeys(s)
	if err != nil {
		return err
	}
	*dst = keys
	return nil
}

// parseBool parses s with strconv.ParseBool into *dst.
func parseBool(s string, dst *bool) error {
	v, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid boolean %q: %w", s, err)
	}
	*dst = v
	return nil
}

// parseInt parses a decimal integer s into *dst.
func parseInt(s string, dst *int) error {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid number %q: %w", s, err)
	}
	*dst = v
	return nil
}

// sortedKeys returns the keys of m in order, for stable messages.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
