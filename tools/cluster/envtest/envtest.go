// Package envtest starts a real kube-apiserver and etcd, built from source by
// package cluster, through controller-runtime's envtest, for integration tests
// that need an API server but no controllers, scheduler or nodes.
//
// In a test, one line gives a running API server with the project's CRDs
// installed; it is stopped when the test ends:
//
//	cfg := envtest.ForTest(t, "../../manifests/crds")
//
// The first use on a machine builds etcd and kube-apiserver (about 10 minutes
// on two cores); warm the cache beforehand with
// `go run ./tools/localcluster build`. KUBEBUILDER_ASSETS, when set, still
// takes precedence, as in controller-runtime.
package envtest

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// Start runs etcd and kube-apiserver, installs the CRDs in crdDirs (each must
// exist) and returns an admin configuration and the function that stops both.
// Progress of a first-time build goes to progress (which may be nil).
func Start(ctx context.Context, progress io.Writer, crdDirs ...string) (*rest.Config, func() error, error) {
	assets, err := cluster.EnvtestAssets(ctx, progress)
	if err != nil {
		return nil, nil, err
	}
	useExisting := false
	env := &crenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crdDirs,
		ErrorIfCRDPathMissing: true,
		UseExistingCluster:    &useExisting,
		// Two shared cores under a parallel test run start the API server
		// far slower than envtest's 20 second default allows.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, nil, fmt.Errorf("starting envtest API server from %s: %w", assets, err)
	}
	return cfg, env.Stop, nil
}

// ForTest starts an API server for t with the CRDs in crdDirs installed,
// fails t when that is impossible and stops the server when t ends.
func ForTest(t testing.TB, crdDirs ...string) *rest.Config {
	t.Helper()
	cfg, stop, err := Start(context.Background(), t.Output(), crdDirs...)
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stopping envtest API server: %v", err)
		}
	})
	return cfg
}
