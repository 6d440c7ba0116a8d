//go:build !linux

package cluster

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// sysProcAttr puts each component in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// listenFreebind is Linux only, as is the real node that needs it.
func listenFreebind(context.Context, string) (net.Listener, error) {
	return nil, errors.New("listening on an address not yet assigned needs Linux (IP_FREEBIND)")
}
