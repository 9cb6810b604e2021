// Package interop runs LiveKit's own Go SDK (server-sdk-go v2.13.0) against a freshly built
// fanout binary, so that the server is checked by a client nobody here wrote.
package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/stdr"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

const (
	apiKey    = "devkey"
	apiSecret = "secret"

	healthTimeout = 20 * time.Second
	// logTailLines is how many lines of a log a failing test prints.
	logTailLines = 80
)

// srv describes the fanout process shared by every test in this package.
var srv struct {
	httpURL string // http://127.0.0.1:P
	wsURL   string // ws://127.0.0.1:P
	logPath string // the server's stdout+stderr
	sdkLog  string // the SDK's (and pion's) log
	bin     string // the fanout binary TestMain built
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()

	tmp, err := os.MkdirTemp("", "fanout-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop: temp dir:", err)
		return 1
	}
	// FANOUT_INTEROP_KEEP=1 keeps the server and SDK logs even when every test passes.
	keep := os.Getenv("FANOUT_INTEROP_KEEP") != ""
	defer func() {
		if keep {
			fmt.Fprintln(os.Stderr, "interop: logs kept in", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()

	sdkLog, err := os.Create(filepath.Join(tmp, "sdk.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop: sdk log:", err)
		return 1
	}
	defer sdkLog.Close()
	srv.sdkLog = sdkLog.Name()
	// The SDK logs through a package-level logger (stdout by default); keep test output readable.
	lksdk.SetLogger(protologger.LogRLogger(stdr.New(log.New(sdkLog, "", log.LstdFlags|log.Lmicroseconds))))

	bin := filepath.Join(tmp, "fanout")
	if err := buildServer(bin); err != nil {
		fmt.Fprintln(os.Stderr, "interop: FAIL: cannot build the server:", err)
		return 1
	}

	srv.bin = bin
	stop, err := startServer(bin, tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop: FAIL: cannot start the server:", err)
		if srv.logPath != "" {
			fmt.Fprintf(os.Stderr, "--- server log tail (%s) ---\n%s\n", srv.logPath, tailFile(srv.logPath, 0, logTailLines))
		}
		keep = true
		return 1
	}

	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "interop: server stop:", err)
	}
	if code != 0 {
		keep = true
	}
	return code
}

// buildServer compiles ./cmd/fanout of the parent module into bin.
func buildServer(bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fanout")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/fanout (in ..): %w\n%s", err, out)
	}
	return nil
}

// startServer runs bin on free loopback ports and waits for /healthz. The returned func
// stops the process.
func startServer(bin, dir string) (func() error, error) {
	httpPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	tcpPort, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	udpPort, err := freeUDPPort()
	if err != nil {
		return nil, err
	}

	logFile, err := os.Create(filepath.Join(dir, "fanout.log"))
	if err != nil {
		return nil, err
	}
	srv.logPath = logFile.Name()

	args := []string{
		"--dev",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(httpPort),
		"--udp-port", strconv.Itoa(udpPort),
		"--tcp-port", strconv.Itoa(tcpPort),
		"--node-ip", "127.0.0.1",
		"--keys", apiKey + ": " + apiSecret,
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	// An *os.File is handed to the child directly: no copying goroutine in this process.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	fmt.Fprintf(logFile, "interop: started %s %s (pid %d)\n", bin, strings.Join(args, " "), cmd.Process.Pid)

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	stop := func() error {
		defer logFile.Close()
		select {
		case <-exited:
			return fmt.Errorf("server had already exited: %v", waitErr)
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("server ignored SIGTERM for 5 s; killed")
		}
	}

	srv.httpURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	srv.wsURL = fmt.Sprintf("ws://127.0.0.1:%d", httpPort)

	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(healthTimeout)
	for {
		resp, err := client.Get(srv.httpURL + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("server exited before /healthz answered 200: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("GET %s/healthz did not answer 200 within %s (last error: %v)", srv.httpURL, healthTimeout, err)
		}
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// fileSize returns the current size of path, or 0.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tailFile returns the last n lines of path written after byte offset from.
func tailFile(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err.Error()
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// setup prepares one test or subtest: it prints the server's (and the SDK's) log lines
// written during the test if it fails, and checks for goroutine leaks after every other
// cleanup (participants' Disconnect) has run. Call it first, before connecting anyone.
func setup(t *testing.T) {
	t.Helper()
	serverFrom := fileSize(srv.logPath)
	sdkFrom := fileSize(srv.sdkLog)
	checkLeaks(t) // registered first, so it runs last
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("--- server log during %s (last %d lines of %s) ---\n%s",
			t.Name(), logTailLines, srv.logPath, tailFile(srv.logPath, serverFrom, logTailLines))
		t.Logf("--- SDK log during %s (last %d lines of %s) ---\n%s",
			t.Name(), logTailLines, srv.sdkLog, tailFile(srv.sdkLog, sdkFrom, logTailLines))
	})
}

// uniqueRoom returns a room name no other test (or earlier run against the same server) uses.
func uniqueRoom(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "_", "#", "_").Replace(t.Name())
	return name + "-" + hex.EncodeToString(b)
}

// roomClient returns a RoomService client for the test server.
func roomClient() *lksdk.RoomServiceClient {
	return lksdk.NewRoomServiceClient(srv.httpURL, apiKey, apiSecret)
}

// rpcCtx is the context for one RoomService call.
func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond every 20 ms until it holds or timeout passes. It is for state that
// has no callback (peer connection stats, data channel state).
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// once is a channel closed on first Fire, for one-off events observed from SDK callbacks.
type once struct {
	o  sync.Once
	ch chan struct{}
}

func newOnce() *once { return &once{ch: make(chan struct{})} }

// Fire marks the event as happened; later calls do nothing.
func (o *once) Fire() { o.o.Do(func() { close(o.ch) }) }

// C is closed once the event happened.
func (o *once) C() <-chan struct{} { return o.ch }
