package interop

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ccNet is the congestion test's network: namespace fanout-cc-<pid> with
// one veth pair; the host end (ccHost, 10.202.x.1/30) stays in the root
// namespace and the servers listen on it, the other end (x.2) is the
// namespace's only link. A tbf qdisc on the host end shapes everything the
// servers send to the namespace, and nothing else.
type ccNet struct {
	ns, hostIf, nsIf string
	hostIP, nsIP     string
}

const ccNSPrefix = "fanout-cc-"

// ccNetwork builds the namespace, or returns why the test must be skipped.
func ccNetwork(t *testing.T) (*ccNet, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, "needs root to create a network namespace, a veth pair and a tc qdisc"
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Sprintf("no %s: %v", tool, err)
		}
	}
	removeStaleCC()
	pid := os.Getpid()
	base := (pid % 16384) * 4
	ip := func(n int) string { return fmt.Sprintf("10.202.%d.%d", (base+n)>>8, (base+n)&255) }
	n := &ccNet{ns: ccNSPrefix + strconv.Itoa(pid), hostIf: fmt.Sprintf("fcc%dh", pid), nsIf: fmt.Sprintf("fcc%dn", pid),
		hostIP: ip(1), nsIP: ip(2)}
	if err := ccRun("ip", "netns", "add", n.ns); err != nil {
		return nil, fmt.Sprintf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(n.remove)
	steps := [][]string{
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.ns},
		{"ip", "addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "-n", n.ns, "addr", "add", n.nsIP + "/30", "dev", n.nsIf},
		{"ip", "-n", n.ns, "link", "set", n.nsIf, "up"},
		{"ip", "-n", n.ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ccRun(s...); err != nil {
			return nil, fmt.Sprintf("cannot set up the namespace's link: %v", err)
		}
	}
	_ = ccRun("ip", "netns", "exec", n.ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
	if err := n.shape(ccShape{RateKbit: 700, BurstKB: 16, LatencyMs: 100}); err != nil {
		return nil, fmt.Sprintf("cannot add a tbf qdisc: %v", err)
	}
	if err := n.unshape(); err != nil {
		return nil, fmt.Sprintf("cannot remove a tbf qdisc: %v", err)
	}
	return n, ""
}

func ccRun(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// shape puts the tbf qdisc of s on the host end (the namespace's downlink).
func (n *ccNet) shape(s ccShape) error {
	return ccRun("tc", "qdisc", "replace", "dev", n.hostIf, "root", "tbf", "rate", fmt.Sprintf("%dkbit", s.RateKbit),
		"burst", fmt.Sprintf("%dkb", s.BurstKB), "latency", fmt.Sprintf("%dms", s.LatencyMs))
}

func (n *ccNet) unshape() error { return ccRun("tc", "qdisc", "del", "dev", n.hostIf, "root") }

// tbfStats returns the qdisc's sent bytes, drops and overlimits.
func (n *ccNet) tbfStats() (bytes, drops, over int64) {
	out, err := exec.Command("tc", "-s", "qdisc", "show", "dev", n.hostIf).CombinedOutput()
	if err != nil {
		return 0, 0, 0
	}
	m := regexp.MustCompile(`Sent (\d+) bytes \d+ pkt \(dropped (\d+), overlimits (\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		return 0, 0, 0
	}
	b, _ := strconv.ParseInt(m[1], 10, 64)
	d, _ := strconv.ParseInt(m[2], 10, 64)
	o, _ := strconv.ParseInt(m[3], 10, 64)
	return b, d, o
}

// remove kills what runs in the namespace and removes it with its veth.
func (n *ccNet) remove() {
	killNSPids(n.ns)
	_ = ccRun("ip", "link", "del", n.hostIf)
	_ = ccRun("ip", "netns", "del", n.ns)
}

func killNSPids(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStaleCC removes namespaces and veths of earlier runs whose process is gone.
func removeStaleCC() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], ccNSPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[0], ccNSPrefix))
		if err == nil && syscall.Kill(pid, 0) != nil {
			killNSPids(f[0])
			_ = ccRun("ip", "netns", "del", f[0])
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	re := regexp.MustCompile(`^\d+: fcc(\d+)h[@:]`)
	for _, line := range strings.Split(string(links), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			if pid, _ := strconv.Atoi(m[1]); syscall.Kill(pid, 0) != nil {
				_ = ccRun("ip", "link", "del", "fcc"+m[1]+"h")
			}
		}
	}
}

// ccServer is one server under test, listening on the veth's host end.
type ccServer struct {
	name    string // "fanout" or "livekit"
	wsURL   string
	logPath string
	stop    func()
}

// ccSecret is the API secret of the congestion test's servers (livekit-server wants >= 32 bytes).
const ccSecret = "congestion-secret-congestion-secret"

// startCCServer starts fanout (bin) or, when LIVEKIT_SERVER names a binary
// and kind is "livekit", livekit-server with send-side BWE, bound to ip.
func startCCServer(t *testing.T, kind, ip, dir string) *ccServer {
	t.Helper()
	httpPort, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	tcpPort, _ := freeTCPPort()
	udpPort, _ := freeUDPPort()
	logPath := filepath.Join(dir, kind+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch kind {
	case "fanout":
		cmd = exec.Command(srv.bin, "--dev", "--bind", ip, "--node-ip", ip, "--port", strconv.Itoa(httpPort),
			"--udp-port", strconv.Itoa(udpPort), "--tcp-port", strconv.Itoa(tcpPort), "--keys", apiKey+": "+ccSecret)
	case "livekit":
		cfg := filepath.Join(dir, "livekit.yaml")
		yaml := fmt.Sprintf(`port: %d
bind_addresses: [%q]
keys:
  %s: %s
logging:
  level: debug
rtc:
  udp_port: %d
  tcp_port: %d
  node_ip: %s
  use_external_ip: false
  stun_servers: ["127.0.0.1:3478"]
  ips:
    includes: ["%s/32"]
  congestion_control:
    use_send_side_bwe: true
`, httpPort, ip, apiKey, ccSecret, udpPort, tcpPort, ip, ip)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(os.Getenv("LIVEKIT_SERVER"), "--config", cfg)
	default:
		t.Fatalf("unknown server kind %q", kind)
	}
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", kind, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s := &ccServer{name: kind, wsURL: fmt.Sprintf("ws://%s:%d", ip, httpPort), logPath: logPath}
	s.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if os.Getenv("FANOUT_INTEROP_KEEP") != "" {
			if data, err := os.ReadFile(logPath); err == nil {
				kept := filepath.Join(os.TempDir(), fmt.Sprintf("fanout-cc-%s-%d.log", kind, time.Now().UnixNano()))
				if os.WriteFile(kept, data, 0o600) == nil {
					fmt.Printf("interop: %s's log kept in %s\n", kind, kept)
				}
			}
		}
	}
	t.Cleanup(s.stop)
	if err := waitHTTP(fmt.Sprintf("http://%s", net.JoinHostPort(ip, strconv.Itoa(httpPort))), exited); err != nil {
		t.Fatalf("%s did not come up: %v\n%s", kind, err, tailFile(logPath, 0, 40))
	}
	return s
}

var errExited = errors.New("server exited")

// waitHTTP waits until base answers any HTTP request (fanout: /healthz; livekit: /).
func waitHTTP(base string, exited <-chan struct{}) error {
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		if resp, err := c.Get(base + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no HTTP answer in 20 s")
}
