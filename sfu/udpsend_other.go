//go:build !linux

package sfu

import "net"

// nonBlockingSocket leaves the socket as it is where sends cannot be made
// non-blocking per call (MSG_DONTWAIT is used on Linux only).
func nonBlockingSocket(conn net.PacketConn) (net.PacketConn, func() uint64, error) {
	return conn, func() uint64 { return 0 }, nil
}
