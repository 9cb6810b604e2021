//go:build linux

package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var netnsSeq atomic.Int32

// inThrottledNetns runs f on a thread inside a new network namespace whose
// loopback sends 8 kbit/s (a tbf qdisc): sockets f opens there keep
// packets queued, and so their send buffers full. It skips the test where
// namespaces cannot be made (not root, no ip/tc).
func inThrottledNetns(t *testing.T, f func()) {
	t.Helper()
	name := fmt.Sprintf("fanout-sfu-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %w: %s", args, err, out)
		}
		return nil
	}
	if err := run("ip", "netns", "add", name); err != nil {
		t.Skipf("cannot make a network namespace here (needs root and iproute2): %v", err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", name) })
	for _, cmd := range [][]string{
		{"ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst", "1600", "limit", "100000000"},
	} {
		if err := run(cmd...); err != nil {
			t.Skipf("cannot throttle the namespace's loopback: %v", err)
		}
	}
	target, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		t.Fatalf("open namespace: %v", err)
	}
	defer target.Close()
	home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		t.Fatalf("open own namespace: %v", err)
	}
	defer home.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread's own namespace file must be read on the locked thread.
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			t.Errorf("open thread namespace: %v", err)
			runtime.UnlockOSThread()
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns: %v", err)
			runtime.UnlockOSThread()
			return
		}
		f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns back: %v", err) // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
}

// Fault 9a: the node's UDP socket (the one the ICE UDP mux writes every
// packet to) never blocks a writer when its send buffer is full: the
// packet is dropped and counted. Before the fix the write parked the
// goroutine (a track's reader) until the kernel had room.
func TestFault9UDPSendNeverBlocks(t *testing.T) {
	var tr *Transport
	var sink *net.UDPConn
	var err error
	inThrottledNetns(t, func() {
		tr, err = NewTransport(TransportParams{BindIP: "127.0.0.1", UDPPort: 0})
		if err != nil {
			return
		}
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	})
	if err != nil {
		t.Fatalf("sockets in the namespace: %v", err)
	}
	defer tr.Close()
	defer sink.Close()
	pkt := make([]byte, 1200)
	const total = 5000 // far more than any send buffer holds at 8 kbit/s
	within(t, fmt.Sprintf("%d writes to a full send buffer", total), 5*time.Second, func() {
		for range total {
			if _, err := tr.udpConn.WriteTo(pkt, sink.LocalAddr()); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	})
	counter, ok := any(tr).(interface{ SendDrops() uint64 })
	if !ok {
		t.Fatal("Transport does not count send drops")
	}
	if n := counter.SendDrops(); n == 0 || n >= total {
		t.Fatalf("%d of %d packets counted as dropped, want some but not all", n, total)
	}
}

// The non-blocking socket still delivers, over IPv4 and a dual-stack
// socket, and its writes do not allocate.
func TestFault9UDPSendDeliversWithoutAllocating(t *testing.T) {
	for _, tc := range []struct{ network, bind string }{{"udp4", "127.0.0.1:0"}, {"udp", "[::]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			raw, err := net.ListenPacket(tc.network, tc.bind)
			if err != nil {
				t.Skipf("listen %s: %v", tc.bind, err)
			}
			conn, drops, err := nonBlockingSocket(raw)
			if err != nil {
				t.Fatalf("wrap: %v", err)
			}
			defer conn.Close()
			rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			to := rx.LocalAddr().(*net.UDPAddr)
			if _, err := conn.WriteTo([]byte("hello"), to); err != nil {
				t.Fatalf("write: %v", err)
			}
			buf := make([]byte, 64)
			_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := rx.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read %q, %v; want hello", buf[:n], err)
			}
			pkt := make([]byte, 1000)
			ap := to.AddrPort()
			w := conn.(interface {
				WriteToAddrPort([]byte, netip.AddrPort) (int, error)
			})
			if allocs := testing.AllocsPerRun(200, func() { _, _ = w.WriteToAddrPort(pkt, ap) }); allocs != 0 && !raceEnabled {
				t.Fatalf("WriteToAddrPort: %v allocs per write, want 0", allocs)
			}
			if allocs := testing.AllocsPerRun(200, func() { _, _ = conn.WriteTo(pkt, to) }); allocs != 0 && !raceEnabled {
				t.Fatalf("WriteTo: %v allocs per write, want 0", allocs)
			}
			if _, err := conn.WriteTo(pkt, &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9}); tc.network == "udp4" && err == nil {
				t.Fatal("an IPv6 destination from an IPv4 socket was accepted")
			}
			_ = drops()
		})
	}
}

// BenchmarkUDPSendNonBlocking is one packet through the node's socket
// wrapper (sendto included): it must report 0 allocs/op.
func BenchmarkUDPSendNonBlocking(b *testing.B) {
	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	conn, _, err := nonBlockingSocket(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	w := conn.(interface {
		WriteToAddrPort([]byte, netip.AddrPort) (int, error)
	})
	ap := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 1200)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = w.WriteToAddrPort(pkt, ap)
	}
}
