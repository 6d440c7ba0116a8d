// Package proctest builds the init binaries and runs them as a pod would:
// as UID/GID 65532 (when the test runs as root), with a minimal
// environment and no HOME, against directories shaped like emptyDir volumes
// with fsGroup 65532.
package proctest

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
)

// PodID is the UID and fsGroup of the pod.
const PodID = 65532

// AsPod reports whether processes run as PodID (the test runs as root).
func AsPod() bool { return os.Geteuid() == 0 }

// Sandbox is a directory every UID can traverse, removed at the end.
func Sandbox(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "initimages-")
	require.NoError(tb, err)
	require.NoError(tb, os.Chmod(dir, 0o755))
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Build compiles the main package in pkgDir (relative to the test's
// package directory) statically into dir/name.
func Build(tb testing.TB, pkgDir, dir, name string) string {
	tb.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(tb, err, "go build: %s", out)
	require.NoError(tb, os.Chmod(bin, 0o755))
	return bin
}

// Volume creates a directory like an emptyDir with fsGroup: group PodID,
// mode 2775 (setgid, so new files keep the group).
func Volume(tb testing.TB, path string) string {
	tb.Helper()
	require.NoError(tb, os.MkdirAll(path, 0o755))
	if AsPod() {
		require.NoError(tb, os.Chown(path, 0, PodID))
	}
	require.NoError(tb, os.Chmod(path, 0o775|fs.ModeSetgid))
	return path
}

// Readable makes a file readable by the pod's group, as the kubelet does
// for Secret and ConfigMap volumes with fsGroup.
func Readable(tb testing.TB, path string) {
	tb.Helper()
	if AsPod() {
		require.NoError(tb, os.Chown(path, 0, PodID))
	}
	require.NoError(tb, os.Chmod(path, 0o440))
}

// TerminationLog creates the termination message file writable by the pod.
func TerminationLog(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "termination-log")
	require.NoError(tb, os.WriteFile(p, nil, 0o666))
	require.NoError(tb, os.Chmod(p, 0o666))
	return p
}

// Run is one finished run of a binary.
type Run struct {
	ExitCode       int
	Stdout, Stderr string
	Result         contract.Result
	RawResult      string
}

// Exec runs bin with exactly env (no HOME, no inherited variables), as the
// pod's user when possible, and reads the Result from termLog.
func Exec(tb testing.TB, bin, termLog string, env ...string) Run {
	tb.Helper()
	return ExecArgs(tb, bin, nil, termLog, env...)
}

// ExecArgs is Exec with command-line arguments.
func ExecArgs(tb testing.TB, bin string, args []string, termLog string, env ...string) Run {
	tb.Helper()
	require.NoError(tb, os.WriteFile(termLog, nil, 0o666))
	cmd := exec.Command(bin, args...)
	// No HOME and an unusable TMPDIR: with a read-only root filesystem the
	// binaries may write nowhere but their volumes.
	cmd.Env = append(env, initutil.EnvTerminationMessagePath+"="+termLog, "TMPDIR=/nonexistent")
	cmd.Dir = "/"
	if AsPod() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: PodID, Gid: PodID, Groups: []uint32{PodID}}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Run{Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else {
		require.NoError(tb, err)
	}
	raw, err := os.ReadFile(termLog)
	require.NoError(tb, err)
	r.RawResult = string(raw)
	require.NoError(tb, json.Unmarshal(raw, &r.Result), "termination message %q", raw)
	return r
}
