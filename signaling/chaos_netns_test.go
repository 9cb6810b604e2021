package signaling_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/fanout-sfu/fanout/signaling/client"
)

// A chaosNet is a network namespace joined to the host by a veth pair,
// where a subscriber runs in a process of its own and its path is then
// impaired: blackholed (nftables drops all UDP) or slowed (a tbf far
// below what it receives, with a deep queue).
type chaosNet struct {
	name    string // namespace
	hostIf  string
	hostIP  string
	nsIP    string
	blackle bool // blackhole; else the slow link
	cmd     *exec.Cmd
}

// chaosNamespaces makes the namespaces of the chaos test, or none, with the
// reason logged, where this machine cannot (not root, no ip or nft).
func chaosNamespaces(t *testing.T) []*chaosNet {
	if os.Getuid() != 0 {
		t.Log("chaos: namespace subscribers skipped: not root, cannot create network namespaces")
		return nil
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("chaos: namespace subscribers skipped: %s not installed (make deps installs iproute2 and nftables)", tool)
			return nil
		}
	}
	var nets []*chaosNet
	for i, blackhole := range []bool{true, false} {
		cn := &chaosNet{
			name:   fmt.Sprintf("fchaos%d-%d", os.Getpid()%100000, i),
			hostIf: fmt.Sprintf("fch%d-%d", os.Getpid()%100000, i),
			hostIP: fmt.Sprintf("10.231.%d.1", i), nsIP: fmt.Sprintf("10.231.%d.2", i),
			blackle: blackhole,
		}
		if err := cn.create(t); err != nil {
			t.Logf("chaos: namespace subscribers skipped: %v", err)
			return nil
		}
		nets = append(nets, cn)
	}
	return nets
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (cn *chaosNet) create(t *testing.T) error {
	peer := cn.hostIf + "n"
	t.Cleanup(func() {
		_ = run("ip", "netns", "del", cn.name)
		_ = run("ip", "link", "del", cn.hostIf)
	})
	steps := [][]string{
		{"ip", "netns", "add", cn.name},
		{"ip", "link", "add", cn.hostIf, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", cn.name},
		{"ip", "addr", "add", cn.hostIP + "/24", "dev", cn.hostIf},
		{"ip", "link", "set", cn.hostIf, "up"},
		{"ip", "netns", "exec", cn.name, "ip", "addr", "add", cn.nsIP + "/24", "dev", peer},
		{"ip", "netns", "exec", cn.name, "ip", "link", "set", peer, "up"},
		{"ip", "netns", "exec", cn.name, "ip", "link", "set", "lo", "up"},
	}
	// The impairment is tried once now, so that a machine without
	// nftables or tbf skips the namespace part rather than failing later.
	if cn.blackle {
		steps = append(steps, []string{"ip", "netns", "exec", cn.name, "nft", "add", "table", "inet", "chaosprobe"},
			[]string{"ip", "netns", "exec", cn.name, "nft", "delete", "table", "inet", "chaosprobe"})
	} else {
		steps = append(steps, []string{"tc", "qdisc", "add", "dev", cn.hostIf, "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "10000"},
			[]string{"tc", "qdisc", "del", "dev", cn.hostIf, "root"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// startSubscriber runs a subscriber of the room inside the namespace and
// waits until it receives video.
func (cn *chaosNet) startSubscriber(t *testing.T, n *node, room string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(n.wsURL)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(u.Host)
	tok, err := soakToken(room, "ns-"+cn.name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cn.name, self, "-test.run", "^TestChaosNamespaceSubscriber$", "-test.v", "-test.timeout", "2m")
	cmd.Env = append(os.Environ(), "FANOUT_CHAOS_URL=ws://"+net.JoinHostPort(cn.hostIP, port), "FANOUT_CHAOS_TOKEN="+tok)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cn.cmd = cmd
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "CHAOS-SUBSCRIBED") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("the subscriber in namespace %s never received video", cn.name)
	}
}

// impair blackholes the namespace's UDP, or slows its link to a crawl
// with a deep queue (where a blocking send would stall the node).
func (cn *chaosNet) impair(t *testing.T) {
	t.Helper()
	var err error
	if cn.blackle {
		nft := []string{"ip", "netns", "exec", cn.name, "nft"}
		for _, cmd := range [][]string{
			{"add", "table", "inet", "chaos"},
			{"add", "chain", "inet", "chaos", "in", "{ type filter hook input priority 0; }"},
			{"add", "chain", "inet", "chaos", "out", "{ type filter hook output priority 0; }"},
			{"add", "rule", "inet", "chaos", "in", "meta", "l4proto", "udp", "drop"},
			{"add", "rule", "inet", "chaos", "out", "meta", "l4proto", "udp", "drop"},
		} {
			if err = run(append(nft, cmd...)...); err != nil {
				break
			}
		}
	} else {
		err = run("tc", "qdisc", "add", "dev", cn.hostIf, "root", "tbf", "rate", "32kbit", "burst", "1600", "limit", "4000000")
	}
	if err != nil {
		t.Fatalf("impair %s: %v", cn.name, err)
	}
}

// TestChaosNamespaceSubscriber is the subscriber process the chaos test
// starts inside a namespace; it does nothing in a normal test run.
func TestChaosNamespaceSubscriber(t *testing.T) {
	wsURL, tok := os.Getenv("FANOUT_CHAOS_URL"), os.Getenv("FANOUT_CHAOS_TOKEN")
	if wsURL == "" {
		t.Skip("run by TestChaos inside a network namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, wsURL, tok, client.Options{Settings: func(se *webrtc.SettingEngine) {
		se.SetInterfaceFilter(func(string) bool { return true })
	}})
	if err != nil {
		t.Fatalf("join from the namespace: %v", err)
	}
	defer c.Drop()
	tc := watchTracks(c)
	eventually(t, 15*time.Second, "video in the namespace", func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		for _, rc := range tc.counts {
			if rc.packets.Load() > 30 {
				return true
			}
		}
		return false
	})
	fmt.Println("CHAOS-SUBSCRIBED")
	// Stay until the chaos test ends this process.
	<-make(chan struct{})
}
