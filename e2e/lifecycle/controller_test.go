package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// Where the controller keeps its leader election Lease.
const (
	leaseNamespace = "kube-system"
	leaseName      = "kubeopencode-controller"
)

// controllerProcess is one run of the controller binary.
type controllerProcess struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	probe   string // host:port of /healthz and /readyz
	done    chan struct{}
	waitErr error
	// expectExit is set before the test ends the process on purpose, or
	// from the start when the test copes with the controller exiting.
	expectExit atomic.Bool
}

var controllerRuns atomic.Int32

// startController runs the controller binary against the package's cluster
// with leader election on. The test's cleanup stops it (SIGTERM) unless the
// test has ended it already; a controller that exits on its own while the
// test runs fails the test.
func startController(t testing.TB, extraArgs ...string) *controllerProcess {
	t.Helper()
	return runController(t, false, extraArgs)
}

// startExpendableController is startController for a test that kills and
// replaces controllers, and checks exits itself.
func startExpendableController(t testing.TB, extraArgs ...string) *controllerProcess {
	t.Helper()
	return runController(t, true, extraArgs)
}

func runController(t testing.TB, mayExit bool, extraArgs []string) *controllerProcess {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	n := controllerRuns.Add(1)
	p := &controllerProcess{
		name:    fmt.Sprintf("controller-%d", n),
		probe:   "127.0.0.1:" + strconv.Itoa(port),
		done:    make(chan struct{}),
		logPath: filepath.Join(env.dir, "logs", fmt.Sprintf("controller-%d.log", n)),
	}
	p.expectExit.Store(mayExit)
	if err := os.MkdirAll(filepath.Dir(p.logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--git-init-image=" + gitInitImage,
		"--context-init-image=" + contextInitImage,
		"--leader-elect=true",
		"--leader-election-namespace=" + leaseNamespace,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + p.probe,
	}, extraArgs...)
	p.cmd = exec.Command(env.controllerBin, args...)
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = sysProcAttr()
	fmt.Fprintf(logFile, "+ %s %s\n", env.controllerBin, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting the controller: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
		if !p.expectExit.Load() {
			t.Errorf("%s exited by itself (%v); last lines of %s:\n%s", p.name, p.waitErr, p.logPath, cluster.LogTail(p.logPath, 40))
		}
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitReady waits until the controller answers /readyz.
func (p *controllerProcess) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("%s exited (%v)", p.name, p.waitErr)
		default:
		}
		resp, err := http.Get("http://" + p.probe + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%s not ready: %v; last lines of %s:\n%s", p.name, err, p.logPath, cluster.LogTail(p.logPath, 40))
	}
}

// kill ends the process with SIGKILL: no lease release, no clean shutdown.
// It returns false when a controller started by startExpendableController
// had exited by itself before the signal.
func (p *controllerProcess) kill(t testing.TB) bool {
	t.Helper()
	exitedBefore := p.exited()
	mayExit := p.expectExit.Swap(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s (pid %d) survived SIGKILL", p.name, p.cmd.Process.Pid)
	}
	var exit *exec.ExitError
	if !exitedBefore && errors.As(p.waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if !mayExit {
		t.Fatalf("%s ended with %v before it was killed", p.name, p.waitErr)
	}
	return false
}

// stop ends the process with SIGTERM, as a Deployment rollout would.
func (p *controllerProcess) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.expectExit.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Errorf("%s did not stop cleanly: %v; last lines of %s:\n%s", p.name, p.waitErr, p.logPath, cluster.LogTail(p.logPath, 40))
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// exited reports whether the process has ended.
func (p *controllerProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// leaseHolder returns the identity holding the controller's Lease; "" when
// nobody does.
func leaseHolder(ctx context.Context) (string, error) {
	lease := &coordinationv1.Lease{}
	err := env.k8s.Get(ctx, types.NamespacedName{Namespace: leaseNamespace, Name: leaseName}, lease)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil || lease.Spec.HolderIdentity == nil {
		return "", err
	}
	return *lease.Spec.HolderIdentity, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
