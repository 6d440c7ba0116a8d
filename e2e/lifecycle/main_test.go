// Package lifecycle tests the controller as users run it: the real binary,
// as a separate process, against a whole local cluster (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok fake
// nodes, from package tools/cluster). The Job controller, the garbage
// collector and the scheduler are the real ones; only the kubelet is
// simulated, and pod annotations set through an Agent's podSpec steer it
// (cluster.AnnotationExitCode, cluster.AnnotationDuration).
//
// One cluster serves the whole package: TestMain starts it, installs the
// CRDs and builds operator/cmd/controller once.
package lifecycle_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubeopencode/kubeopencode/tools/deploy"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// Init images the controller is started with. kwok never pulls images, so
// they only have to be well-formed and pinned by digest.
const (
	gitInitImage     = "registry.invalid/git-init@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	contextInitImage = "registry.invalid/context-init@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	agentImage       = "registry.invalid/agent@sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// env is the package's cluster and the controller binary, set up by TestMain.
var env struct {
	cluster       *cluster.Cluster
	cfg           *rest.Config
	k8s           client.WithWatch
	cs            kubernetes.Interface
	controllerBin string
	// dir holds the cluster, the controller's logs and the binary; it is
	// kept when a test fails.
	dir string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kubeopencode-lifecycle-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.dir = dir
	defer func() {
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "cluster and controller logs kept in %s\n", dir)
		}
	}()

	// The controller builds while the cluster starts: both take a while.
	built := make(chan error, 1)
	go func() { built <- buildController(ctx, filepath.Join(dir, "bin")) }()

	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 2, Dir: filepath.Join(dir, "cluster"), Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local cluster:", err)
		}
	}()
	env.cluster = c
	env.cfg = c.RESTConfig()
	env.cfg.QPS, env.cfg.Burst = 200, 400
	if env.k8s, err = client.NewWithWatch(env.cfg, client.Options{Scheme: scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env.cs, err = kubernetes.NewForConfig(env.cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// controller-runtime's installer creates the CRDs and waits until the
	// API server serves them.
	if _, err := envtest.InstallCRDs(env.cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join("..", "..", "manifests", "crd")},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "installing CRDs:", err)
		return 1
	}
	if err := <-built; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "cluster, CRDs and controller ready (%s)\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// buildController compiles operator/cmd/controller into dir. The Go build
// cache makes every build after the first quick.
func buildController(ctx context.Context, dir string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	env.controllerBin = filepath.Join(dir, "controller")
	return deploy.BuildControllerBinary(ctx, root, env.controllerBin)
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}
