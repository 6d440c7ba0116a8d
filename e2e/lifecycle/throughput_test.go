package lifecycle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// BenchmarkBurst measures how fast a burst of b.N Tasks gets through the
// whole local cluster on an Agent that runs five at a time, with one
// controller that is never disturbed: the baseline the fault test's budget
// is sized from. Each pod runs for the given time on a kwok node.
//
//	go test -run '^$' -bench BenchmarkBurst -benchtime 200x ./e2e/lifecycle/
func BenchmarkBurst(b *testing.B) {
	for _, pod := range []string{"1s", "100ms"} {
		b.Run("pod="+pod, func(b *testing.B) {
			const limit = 5
			ctx := context.Background()
			ctrl := startController(b)
			ctrl.waitReady(b, 2*time.Minute)
			ns := namespace(b, "bench")
			obs := observe(b, ns, limit)
			require.NoError(b, env.k8s.Create(ctx, newAgent(ns, "burst", limit, map[string]string{cluster.AnnotationDuration: pod})))
			names := make([]string, b.N)
			for i := range names {
				names[i] = fmt.Sprintf("burst-%04d", i)
			}

			b.ResetTimer()
			start := time.Now()
			require.NoError(b, createAll(ctx, ns, "burst", names))
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Minute, true, func(context.Context) (bool, error) {
				return obs.countPhase(v1alpha1.TaskPhaseCompleted) >= b.N, nil
			})
			elapsed := time.Since(start)
			b.StopTimer()
			require.NoError(b, err, "%d of %d Tasks Completed", obs.countPhase(v1alpha1.TaskPhaseCompleted), b.N)
			obs.check(b)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			// A slot's cycle is limit/throughput; what the Job's lifetime
			// leaves of it is the controller's hand-off to the next Task.
			b.ReportMetric(obs.jobLifetime().Seconds(), "job-s")
			b.ReportMetric(0, "ns/op")
			ctrl.stop(b)
		})
	}
}
