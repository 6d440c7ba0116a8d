//go:build !linux

package cluster

import "syscall"

// sysProcAttr puts each component in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
