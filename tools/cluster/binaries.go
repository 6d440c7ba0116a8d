package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Versions of the components built from source. They must match the
// requirements in tools/k8sbin/*/go.mod; a test keeps them in step.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
	KwokVersion       = "v0.8.0"
	// KubeRouterVersion is kube-router's, whose network policy controller
	// enforces NetworkPolicies on the real node (Options.NetworkPolicy).
	KubeRouterVersion = "v2.1.0"
)

// Names of the binaries in a Binaries directory.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubelet               = "kubelet"
	Kwok                  = "kwok"
	KubeRouter            = "kube-router"
)

// CacheEnv names the environment variable that moves the binary cache away
// from $HOME/.cache/kubeopencode.
const CacheEnv = "KUBEOPENCODE_CACHE"

// Binaries locates the built binaries. All of them sit in Dir but
// kube-router, which is in KubeRouterDir.
type Binaries struct {
	Dir string
	// KubeRouterDir holds kube-router. It is cached apart from the others,
	// under its own version only, so that adding or bumping kube-router does
	// not rebuild Kubernetes. Empty means Dir.
	KubeRouterDir string
}

// Path returns the path of the named binary, e.g. b.Path(KubeAPIServer).
func (b Binaries) Path(name string) string {
	if name == KubeRouter && b.KubeRouterDir != "" {
		return filepath.Join(b.KubeRouterDir, name)
	}
	return filepath.Join(b.Dir, name)
}

// binarySource says where a binary comes from: the package to build inside one
// of the modules of the repository.
type binarySource struct {
	module  string // module directory, relative to the repository root
	pkg     string
	ldflags string
	static  bool // runs inside a container image without libc
}

// kubeVersionFlags stamps the release into the binaries; without it they
// report v0.0.0-master, which clients and kwok's version checks misread.
var kubeVersionFlags = strings.Join([]string{
	"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=37",
	"-X k8s.io/component-base/version.gitTreeState=clean",
}, " ")

var sources = map[string]binarySource{
	Etcd:                  {module: "tools/k8sbin/etcd", pkg: "go.etcd.io/etcd/server/v3"},
	KubeAPIServer:         {module: "tools/k8sbin/kube", pkg: "k8s.io/kubernetes/cmd/kube-apiserver", ldflags: kubeVersionFlags},
	KubeControllerManager: {module: "tools/k8sbin/kube", pkg: "k8s.io/kubernetes/cmd/kube-controller-manager", ldflags: kubeVersionFlags},
	KubeScheduler:         {module: "tools/k8sbin/kube", pkg: "k8s.io/kubernetes/cmd/kube-scheduler", ldflags: kubeVersionFlags},
	Kubelet:               {module: "tools/k8sbin/kube", pkg: "k8s.io/kubernetes/cmd/kubelet", ldflags: kubeVersionFlags},
	Kwok:                  {module: "tools/k8sbin/kwok", pkg: "sigs.k8s.io/kwok/cmd/kwok", ldflags: "-X sigs.k8s.io/kwok/pkg/consts.Version=" + KwokVersion},
	KubeRouter:            {module: "tools/k8sbin/kuberouter", pkg: "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router", ldflags: "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=" + KubeRouterVersion},
	pause:                 {module: ".", pkg: "github.com/kubeopencode/kubeopencode/tools/cluster/internal/pause", static: true},
}

// pause is the sandbox binary of the real node's pause image.
const pause = "pause"

// allBinaries is the build order: the quick etcd first, then the API server
// that envtest needs, then the rest.
var allBinaries = []string{Etcd, KubeAPIServer, KubeControllerManager, KubeScheduler, Kwok, Kubelet, KubeRouter}

// CacheDir returns the directory that holds the binaries of the pinned
// versions: ${KUBEOPENCODE_CACHE:-$HOME/.cache/kubeopencode}/k8s/<versions>.
// kube-router is not in it but beside it (Binaries.KubeRouterDir).
func CacheDir() (string, error) {
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s-etcd%s-kwok%s", KubernetesVersion, EtcdVersion, KwokVersion)
	return filepath.Join(root, key), nil
}

// kubeRouterCacheDir holds kube-router of KubeRouterVersion:
// .../k8s/kube-router-<version>, beside CacheDir.
func kubeRouterCacheDir() (string, error) {
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "kube-router-"+KubeRouterVersion), nil
}

func cacheRoot() (string, error) {
	root := os.Getenv(CacheEnv)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locating the binary cache: set %s or HOME: %w", CacheEnv, err)
		}
		root = filepath.Join(home, ".cache", "kubeopencode")
	}
	return filepath.Join(root, "k8s"), nil
}

// EnsureBinaries returns the etcd, Kubernetes, kwok and kube-router binaries
// of the pinned versions, building the missing ones from source with the Go
// toolchain. A cold build takes 10-15 minutes on two cores (kube-router alone
// about 3); once cached the call returns at once. Concurrent callers, also in
// other processes, wait for one build. Progress lines go to progress (which
// may be nil).
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	return ensure(ctx, progress, allBinaries...)
}

// EnvtestAssets returns a directory holding etcd and kube-apiserver (and a
// kubectl link when kubectl is on PATH), suitable as controller-runtime's
// KUBEBUILDER_ASSETS or envtest.Environment.BinaryAssetsDirectory. It builds
// only these two binaries when they are missing.
func EnvtestAssets(ctx context.Context, progress io.Writer) (string, error) {
	b, err := ensure(ctx, progress, Etcd, KubeAPIServer)
	if err != nil {
		return "", err
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		link := b.Path("kubectl")
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			// A concurrent caller may have made the same link; either wins.
			_ = os.Symlink(kubectl, link)
		}
	}
	return b.Dir, nil
}

func ensure(ctx context.Context, progress io.Writer, names ...string) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	dir, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	krDir, err := kubeRouterCacheDir()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir, KubeRouterDir: krDir}
	if len(missing(b, names)) == 0 {
		return b, nil
	}
	srcRoot, err := repoRoot()
	if err != nil {
		return Binaries{}, err
	}
	// Each cache directory has its own lock: a kube-router build does not
	// wait for a Kubernetes build, nor the other way round.
	var dirs []string
	for _, n := range names {
		if d := filepath.Dir(b.Path(n)); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		var here []string
		for _, n := range names {
			if filepath.Dir(b.Path(n)) == d {
				here = append(here, n)
			}
		}
		if err := ensureIn(ctx, progress, srcRoot, d, b, here); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// ensureIn builds those of names that are missing into dir, under dir's lock.
func ensureIn(ctx context.Context, progress io.Writer, srcRoot, dir string, b Binaries, names []string) error {
	if len(missing(b, names)) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the binary cache %s: %w", dir, err)
	}
	unlock, err := lockFile(ctx, dir+".lock", progress)
	if err != nil {
		return err
	}
	defer unlock()

	todo := missing(b, names)
	if len(todo) == 0 {
		return nil
	}
	start := time.Now()
	for _, name := range todo {
		if err := build(ctx, progress, srcRoot, dir, name); err != nil {
			return err
		}
	}
	fmt.Fprintf(progress, "built %s in %s into %s\n", strings.Join(todo, ", "), time.Since(start).Round(time.Second), dir)
	return nil
}

func missing(b Binaries, names []string) []string {
	var out []string
	for _, n := range names {
		if _, err := os.Stat(b.Path(n)); err != nil {
			out = append(out, n)
		}
	}
	return out
}

// build compiles one binary with the caller's Go toolchain and build cache and
// renames it into place, so a binary in the cache is always complete.
func build(ctx context.Context, progress io.Writer, srcRoot, dir, name string) error {
	src, ok := sources[name]
	if !ok {
		return fmt.Errorf("unknown binary %q", name)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	args := []string{"build", "-buildvcs=false", "-o", tmp}
	if src.ldflags != "" {
		args = append(args, "-ldflags", src.ldflags)
	}
	args = append(args, src.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(srcRoot, src.module)
	// The modules under tools/k8sbin stand alone: a go.work elsewhere in the
	// tree must not pull them into another build list.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if src.static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out

	fmt.Fprintf(progress, "building %s (%s) ...\n", name, src.pkg)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "  still building %s (%s)\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	err := cmd.Run()
	close(done)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("building %s in %s failed (go %s): %w\n%s", name, cmd.Dir, strings.Join(args, " "), err, out.String())
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("placing %s in the cache: %w", name, err)
	}
	fmt.Fprintf(progress, "built %s in %s\n", name, time.Since(start).Round(time.Second))
	return nil
}

// repoRoot finds the repository holding tools/k8sbin: two levels above this
// package's source, which go test and go run always have, or else above the
// working directory.
func repoRoot() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			candidates = append(candidates, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "tools", "k8sbin", "kube", "go.mod")); err == nil {
			return filepath.Clean(c), nil
		}
	}
	return "", errors.New("cannot find tools/k8sbin/kube/go.mod to build the Kubernetes binaries: run from a checkout of the repository")
}

// lockFile takes an exclusive flock on path, waiting while another process
// builds. The standard library has no file lock; flock is one call, so no
// extra dependency is warranted.
func lockFile(ctx context.Context, path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock %s: %w", path, err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !told {
			fmt.Fprintf(progress, "waiting for another process building into %s\n", filepath.Dir(path))
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
