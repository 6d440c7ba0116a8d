package cluster

import (
	"context"
	"net"
	"syscall"
)

// sysProcAttr puts each component in its own process group and has the kernel
// kill it should the owning process die without calling Stop, so an aborted
// test run leaves no cluster behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// listenFreebind listens on a TCP address that need not be on an interface
// yet (IP_FREEBIND).
func listenFreebind(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(ctx, "tcp4", addr)
}
