package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/fanout-sfu/fanout/sfu"
	"github.com/fanout-sfu/fanout/signaling"
	"github.com/fanout-sfu/fanout/webclient"
)

// serve runs the node until SIGINT or SIGTERM.
func serve(cfg *Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
	slog.SetDefault(log)
	for key, secret := range cfg.Keys {
		if strings.HasPrefix(secret, "replace-me") {
			return fmt.Errorf("key %q still has the example's public placeholder secret: generate one with `openssl rand -base64 32`", key)
		}
	}
	if cfg.Redis != "" {
		return fmt.Errorf("redis %q: multi-node cascade is not available in this build yet; run without --redis", cfg.Redis)
	}
	transport, err := sfu.NewTransport(sfu.TransportParams{
		BindIP: bindIP(cfg.Bind), UDPPort: cfg.UDPPort, TCPPort: cfg.TCPPort, NodeIP: cfg.NodeIP,
	})
	if err != nil {
		return err
	}
	defer transport.Close()
	nodeID := sfu.NewID("ND_")
	rooms := sfu.NewManager(sfu.ManagerParams{
		Transport: transport,
		ServerInfo: &livekit.ServerInfo{
			Edition: livekit.ServerInfo_Standard, Version: version, Protocol: 16,
			Region: cfg.Region, NodeId: nodeID,
		},
		EmptyTimeout:       cfg.Room.EmptyTimeout.Std(),
		DepartureTimeout:   cfg.Room.DepartureTimeout.Std(),
		ParticipantTimeout: cfg.Room.ParticipantTimeout.Std(),
		MaxParticipants:    cfg.Room.MaxParticipants,
		ICEServers:         cfg.iceServers(),
		Limits:             cfg.Limits.sfu(),
		Logger:             log,
	})
	defer rooms.Close()
	mux := http.NewServeMux()
	signaling.NewServer(signaling.ServerParams{
		Rooms: rooms, Keys: signaling.StaticKeys(cfg.Keys), ICEServers: cfg.iceServers(), Logger: log,
		HLSForIngress: cfg.Egress.HLSForIngress, Limits: cfg.Limits.signaling(),
	}).Register(mux)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	registerWeb(mux, cfg)
	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", addr, err)
	}
	srv := signaling.NewHTTPServer(mux, signaling.DefaultHTTPTimeouts())
	log.Info("fanout started", "version", version, "http", ln.Addr().String(), "udp", cfg.UDPPort,
		"tcp", cfg.TCPPort, "node_ip", cfg.NodeIP, "dev", cfg.Dev, "node", nodeID)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
	case sig := <-stop:
		log.Info("shutting down", "signal", sig.String())
	}
	rooms.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// registerWeb serves the demo pages at / and, in dev mode only, dev tokens
// at /api/dev-token (outside dev mode that path is a 404 like any other).
func registerWeb(mux *http.ServeMux, cfg *Config) {
	mux.Handle("/", webclient.Handler())
	if !cfg.Dev {
		return
	}
	key, secret := devSigningKey(cfg.Keys)
	mux.Handle("/api/dev-token", signaling.DevTokenHandler(key, secret))
}

// devSigningKey picks the key dev tokens are signed with: devkey when
// configured, else the first key in sorted order.
func devSigningKey(keys map[string]string) (key, secret string) {
	if s, ok := keys[devAPIKey]; ok {
		return devAPIKey, s
	}
	if names := sortedKeys(keys); len(names) > 0 {
		return names[0], keys[names[0]]
	}
	return "", ""
}

// bindIP turns the HTTP bind address into the media sockets' address.
func bindIP(bind string) string {
	if bind == "0.0.0.0" {
		return ""
	}
	return bind
}
