//go:build !linux

package lifecycle_test

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
