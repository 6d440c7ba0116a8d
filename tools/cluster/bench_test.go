package cluster_test

import (
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// BenchmarkEnsureBinariesCached is the cost of EnsureBinaries once the
// binaries are in the cache.
func BenchmarkEnsureBinariesCached(b *testing.B) {
	_, err := cluster.EnsureBinaries(b.Context(), io.Discard)
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		_, err := cluster.EnsureBinaries(b.Context(), io.Discard)
		require.NoError(b, err)
	}
}

// BenchmarkEnsureBinariesCold builds every binary into an empty cache with an
// empty Go build cache, as on a fresh machine. It takes a quarter of an hour
// on two cores, so it runs only when KUBEOPENCODE_BENCH_COLD=1.
func BenchmarkEnsureBinariesCold(b *testing.B) {
	if os.Getenv("KUBEOPENCODE_BENCH_COLD") != "1" {
		b.Skip("set KUBEOPENCODE_BENCH_COLD=1 to measure a cold build")
	}
	for b.Loop() {
		b.StopTimer()
		b.Setenv(cluster.CacheEnv, b.TempDir())
		b.Setenv("GOCACHE", b.TempDir())
		b.StartTimer()
		_, err := cluster.EnsureBinaries(b.Context(), io.Discard)
		require.NoError(b, err)
	}
}

// BenchmarkStartStop is the time from nothing to a cluster with one Ready
// fake node and back, binaries cached.
func BenchmarkStartStop(b *testing.B) {
	bins, err := cluster.EnsureBinaries(b.Context(), io.Discard)
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		c, err := cluster.Start(b.Context(), cluster.Options{Binaries: &bins})
		require.NoError(b, err)
		require.NoError(b, c.Stop())
	}
}

// BenchmarkJobComplete is the time from creating a Job with an init container
// to its Complete condition on a running cluster: Job controller, scheduler
// and kwok's default one second of run time.
func BenchmarkJobComplete(b *testing.B) {
	c, err := cluster.Start(b.Context(), cluster.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Stop() })
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		ns := namespace(b, cs)
		job := createJob(b, cs, ns, "bench", nil)
		waitJobCondition(b, cs, job, batchv1.JobComplete)
	}
}

// BenchmarkStartStopRealNode is BenchmarkStartStop with a kubelet and
// containerd node instead of a fake node, down to a Stop that drains it.
func BenchmarkStartStopRealNode(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("a real node needs root")
	}
	bins, err := cluster.EnsureBinaries(b.Context(), io.Discard)
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		c, err := cluster.Start(b.Context(), cluster.Options{Binaries: &bins, RealNode: true})
		require.NoError(b, err)
		require.NoError(b, c.Stop())
	}
}
