package cluster

import "syscall"

// sysProcAttr puts each component in its own process group and has the kernel
// kill it should the owning process die without calling Stop, so an aborted
// test run leaves no cluster behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
