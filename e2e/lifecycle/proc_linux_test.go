package lifecycle_test

import "syscall"

// sysProcAttr has the kernel kill the controller should the test binary die
// without stopping it, so an aborted run leaves no controller acting on a
// later cluster.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
