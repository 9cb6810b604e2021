//go:build linux

package sfu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpSendBuffer is the send buffer asked for the node's UDP socket (the
// kernel caps it at net.core.wmem_max): room for bursts of many
// subscribers' packets before any is dropped.
const udpSendBuffer = 4 << 20

// nonBlockingUDP is the node's shared UDP socket as the ICE UDP mux sees
// it. Its writes never block: pion writes each packet on the goroutine that
// forwards it (a track's reader), and a blocking sendto on a full send
// buffer would stall every subscriber of that track and its publisher. A
// packet that finds the buffer full is dropped and counted, as a router
// drops a packet its queue has no room for; congestion control sees it
// lost.
type nonBlockingUDP struct {
	conn   *net.UDPConn
	raw    syscall.RawConn
	family int // AF_INET or AF_INET6, the socket's address family
	drops  atomic.Uint64
	states sync.Pool // *udpSend, so that a write does not allocate
}

// udpSend is the state of one write: the callback RawConn.Write runs is
// bound once, so that passing it does not allocate.
type udpSend struct {
	b   []byte
	sa4 syscall.SockaddrInet4
	sa6 syscall.SockaddrInet6
	to  syscall.Sockaddr
	err error
	fn  func(fd uintptr) bool
}

// wrapNonBlocking makes conn's writes non-blocking and raises its send
// buffer.
func wrapNonBlocking(conn *net.UDPConn) (*nonBlockingUDP, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	c := &nonBlockingUDP{conn: conn, raw: raw}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		c.family, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil || sockErr != nil {
		return nil, fmt.Errorf("udp socket family: %w", errors.Join(err, sockErr))
	}
	_ = conn.SetWriteBuffer(udpSendBuffer) // best effort: the kernel may cap it
	c.states.New = func() any {
		s := &udpSend{}
		s.fn = s.send
		return s
	}
	return c, nil
}

// send is the RawConn.Write callback: one sendto that never waits for
// room in the send buffer (returning true tells the poller not to wait
// either).
func (s *udpSend) send(fd uintptr) bool {
	for {
		s.err = syscall.Sendto(int(fd), s.b, syscall.MSG_DONTWAIT, s.to)
		if s.err != syscall.EINTR {
			return true
		}
	}
}

// setAddr sets the destination for a socket of family; false if the
// address cannot be reached from it.
func (s *udpSend) setAddr(ap netip.AddrPort, family int) bool {
	addr := ap.Addr()
	if family == syscall.AF_INET {
		addr = addr.Unmap()
		if !addr.Is4() {
			return false
		}
		s.sa4.Port, s.sa4.Addr = int(ap.Port()), addr.As4()
		s.to = &s.sa4
		return true
	}
	s.sa6.Port, s.sa6.Addr, s.sa6.ZoneId = int(ap.Port()), addr.As16(), 0 // As16 maps IPv4
	s.to = &s.sa6
	return addr.IsValid()
}

// WriteToAddrPort sends one packet without blocking; a packet for which
// the send buffer has no room is dropped (counted) and reported sent.
func (c *nonBlockingUDP) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	s := c.states.Get().(*udpSend)
	if !s.setAddr(addr, c.family) {
		c.states.Put(s)
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: ErrUnreachableAddress}
	}
	s.b = b
	err := c.raw.Write(s.fn)
	if err == nil {
		err = s.err
	}
	s.b, s.to, s.err = nil, nil, nil
	c.states.Put(s)
	switch err {
	case nil:
		return len(b), nil
	case syscall.EAGAIN, syscall.ENOBUFS:
		c.drops.Add(1)
		return len(b), nil
	}
	return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: err}
}

// WriteTo sends one packet to a *net.UDPAddr, as WriteToAddrPort.
func (c *nonBlockingUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: ErrUnreachableAddress}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// ReadFromAddrPort reads one packet (allocation-free).
func (c *nonBlockingUDP) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.conn.ReadFromUDPAddrPort(b)
}

// ReadFrom reads one packet.
func (c *nonBlockingUDP) ReadFrom(b []byte) (int, net.Addr, error) { return c.conn.ReadFrom(b) }

// Close closes the socket.
func (c *nonBlockingUDP) Close() error { return c.conn.Close() }

// LocalAddr is the socket's address.
func (c *nonBlockingUDP) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *nonBlockingUDP) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *nonBlockingUDP) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline (writes never wait).
func (c *nonBlockingUDP) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Drops is how many packets were dropped for a full send buffer.
func (c *nonBlockingUDP) Drops() uint64 { return c.drops.Load() }

// nonBlockingSocket wraps the node's UDP socket (see nonBlockingUDP); a
// socket that is not a kernel UDP socket (pion's vnet) stays as it is.
func nonBlockingSocket(conn net.PacketConn) (net.PacketConn, func() uint64, error) {
	udp, ok := conn.(*net.UDPConn)
	if !ok {
		return conn, func() uint64 { return 0 }, nil
	}
	c, err := wrapNonBlocking(udp)
	if err != nil {
		return nil, nil, err
	}
	return c, c.Drops, nil
}
