package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
)

// defaultTokenValidity is how long a minted token is valid unless --valid-for says otherwise.
const defaultTokenValidity = 6 * time.Hour

// tokenOptions holds the parsed flags of the token subcommand.
type tokenOptions struct {
	room, identity, name string
	publish, subscribe   bool
	publishData          rawValue // "" = follow --publish, like LiveKit's unset grant
	canPublishData       bool     // the resolved --publish-data
	admin                bool
	record               bool
	validFor             time.Duration
	key, secret          string
	configPath, keys     string
	keysSet, dev         bool
}

// runToken implements `fanout token`: it mints a join token for one room and
// writes only the JWT and a newline to stdout, so `$(fanout token ...)` works.
//
// The signing pair is --key/--secret if given. With --key alone, the secret
// is looked up in the configured keys. Otherwise the configured keys are used
// (--keys, FANOUT_KEYS, then the YAML file from --config or FANOUT_CONFIG),
// which must hold exactly one key. When no key is configured at all the token
// is signed with the dev pair devkey/secret, exactly what a server started
// with --dev accepts; --dev is accepted so the server's arguments can be reused.
func runToken(args []string, getenv func(string) string, stdout io.Writer) error {
	opts, err := parseTokenFlags(args)
	if err != nil {
		return err
	}
	key, secret, err := tokenCredentials(opts, getenv)
	if err != nil {
		return err
	}
	canPublish, canSubscribe, canPublishData := opts.publish, opts.subscribe, opts.canPublishData
	jwt, err := auth.NewAccessToken(key, secret).
		SetIdentity(opts.identity).
		SetName(opts.name).
		SetValidFor(opts.validFor).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin:       true,
			Room:           opts.room,
			RoomAdmin:      opts.admin,
			RoomRecord:     opts.record,
			CanPublish:     &canPublish,
			CanSubscribe:   &canSubscribe,
			CanPublishData: &canPublishData,
		}).
		ToJWT()
	if err != nil {
		return fmt.Errorf("token: sign JWT: %w", err)
	}
	if _, err := fmt.Fprintln(stdout, jwt); err != nil {
		return fmt.Errorf("token: write: %w", err)
	}
	return nil
}

// parseTokenFlags parses and checks the token subcommand's arguments.
func parseTokenFlags(args []string) (*tokenOptions, error) {
	o := &tokenOptions{}
	fs := flag.NewFlagSet("fanout token", flag.ContinueOnError)
	fs.StringVar(&o.room, "room", "", "room the token may join (required)")
	fs.StringVar(&o.identity, "identity", "", "participant identity (required)")
	fs.StringVar(&o.name, "name", "", "participant display name")
	fs.BoolVar(&o.publish, "publish", true, "may publish tracks")
	fs.BoolVar(&o.subscribe, "subscribe", true, "may subscribe to tracks")
	o.publishData.isBool = true
	fs.Var(&o.publishData, "publish-data", "may publish data messages (default: same as --publish)")
	fs.BoolVar(&o.admin, "admin", false, "room admin grant")
	fs.BoolVar(&o.record, "record", false, "roomRecord grant: start and stop egresses (HLS)")
	fs.DurationVar(&o.validFor, "valid-for", defaultTokenValidity, "token lifetime")
	fs.StringVar(&o.key, "key", "", "API key to sign with (default: the configured key)")
	fs.StringVar(&o.secret, "secret", "", "API secret to sign with (default: the configured secret of --key)")
	fs.StringVar(&o.configPath, "config", "", "YAML config file to read keys from (env "+configPathEnv+")")
	fs.StringVar(&o.keys, "keys", "", `API keys as "key: secret" pairs, as for the server (env FANOUT_KEYS)`)
	fs.BoolVar(&o.dev, "dev", false, "accepted for symmetry with the server: no configured key means devkey/secret")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.keysSet = o.keysSet || f.Name == "keys" })
	var errs []error
	if o.publishData.text == "" {
		o.publishData.text = strconv.FormatBool(o.publish)
	}
	if err := parseBool(o.publishData.text, &o.canPublishData); err != nil {
		errs = append(errs, fmt.Errorf("token: --publish-data: %w", err))
	}
	if strings.TrimSpace(o.room) == "" {
		errs = append(errs, errors.New("token: --room is required"))
	}
	if strings.TrimSpace(o.identity) == "" {
		errs = append(errs, errors.New("token: --identity is required"))
	}
	if o.validFor <= 0 {
		errs = append(errs, fmt.Errorf("token: --valid-for %s must be positive", o.validFor))
	}
	if o.secret != "" && o.key == "" {
		errs = append(errs, errors.New("token: --secret needs --key"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// tokenCredentials picks the API key and secret to sign with (see runToken).
func tokenCredentials(o *tokenOptions, getenv func(string) string) (key, secret string, err error) {
	if o.key != "" && o.secret != "" {
		return o.key, o.secret, nil
	}
	keys, err := configuredKeys(o, getenv)
	if err != nil {
		return "", "", err
	}
	if len(keys) == 0 {
		keys = map[string]string{devAPIKey: devAPISecret}
	}
	if o.key != "" {
		secret, ok := keys[o.key]
		if !ok {
			return "", "", fmt.Errorf("token: API key %q is not configured: pass --secret too", o.key)
		}
		return o.key, secret, nil
	}
	names := sortedKeys(keys)
	if len(names) > 1 {
		return "", "", fmt.Errorf("token: several API keys configured (%s): choose one with --key",
			strings.Join(names, ", "))
	}
	return names[0], keys[names[0]], nil
}

// configuredKeys reads the keys from the server's config sources, with the
// server's precedence: YAML file < FANOUT_KEYS < --keys.
func configuredKeys(o *tokenOptions, getenv func(string) string) (map[string]string, error) {
	cfg := defaultConfig()
	if err := loadYAML(pathOf(o.configPath, getenv), &cfg); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if v := getenv("FANOUT_KEYS"); v != "" {
		if err := parseKeysInto(v, &cfg.Keys); err != nil {
			return nil, fmt.Errorf("token: FANOUT_KEYS: %w", err)
		}
	}
	if o.keysSet {
		if err := parseKeysInto(o.keys, &cfg.Keys); err != nil {
			return nil, fmt.Errorf("token: --keys: %w", err)
		}
	}
	return cfg.Keys, nil
}
