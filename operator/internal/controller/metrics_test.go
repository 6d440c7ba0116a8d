package controller_test

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// gauge returns the value of a metric with the given labels, if present.
func gauge(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue(), true
				}
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func matches(m *dto.Metric, labels map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(labels)
}

func TestMetrics(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](1)))
	createInOrder(t, ns, 3)
	eventually(t, 20*time.Second, "one running and two queued", func() bool {
		p := tasksByPhase(t, ns)
		return len(p[v1alpha1.TaskPhaseRunning]) == 1 && len(p[v1alpha1.TaskPhaseQueued]) == 2
	})
	eventually(t, 10*time.Second, "the metrics to show the queue", func() bool {
		running, _ := gauge(t, "kubeopencode_tasks", map[string]string{"namespace": ns, "phase": "Running"})
		queued, _ := gauge(t, "kubeopencode_tasks", map[string]string{"namespace": ns, "phase": "Queued"})
		depth, _ := gauge(t, "kubeopencode_agent_queue_depth", map[string]string{"namespace": ns, "agent": "default"})
		return running == 1 && queued == 2 && depth == 2
	})
	admitted, ok := gauge(t, "kubeopencode_task_admission_duration_seconds", nil)
	assert.True(t, ok)
	assert.GreaterOrEqual(t, admitted, float64(1), "every admission is timed")
}
