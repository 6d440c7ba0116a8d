package controller_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
)

func startedEvents(t *testing.T, ns string) int {
	t.Helper()
	var evs eventsv1.EventList
	require.NoError(t, k8s.List(context.Background(), &evs, client.InNamespace(ns)))
	n := 0
	for _, e := range evs.Items {
		if e.Reason == "Started" {
			n++
		}
	}
	return n
}

func counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// Events yield to the work: a burst of Tasks starts at once while their
// events follow at the configured rate, all of them in the end.
func TestEventsFollowAtTheirOwnRate(t *testing.T) {
	const qps, burst, tasks = 2, 1, 8
	startController(t, func(o *controller.Options) { o.EventQPS, o.EventBurst = qps, burst })
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	start := time.Now()
	for i := range tasks {
		create(t, newTask(ns, fmt.Sprintf("t-%d", i)))
	}
	eventually(t, 20*time.Second, "every Task Running", func() bool {
		return len(tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]) == tasks
	})
	written := startedEvents(t, ns)
	allowed := burst + int(math.Ceil(time.Since(start).Seconds()*qps))
	assert.LessOrEqual(t, written, allowed, "no more events than --event-qps and --event-burst allow")
	eventually(t, 20*time.Second, "an event for every start", func() bool { return startedEvents(t, ns) == tasks })
}

// Events still waiting for their turn when the controller stops are dropped
// and counted, not retried against a controller that is going away.
func TestEventsWaitingAtStopAreCounted(t *testing.T) {
	const tasks = 6
	stop := startController(t, func(o *controller.Options) { o.EventQPS, o.EventBurst = 0.1, 1 })
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	before := counter(t, "kubeopencode_events_dropped_total")
	for i := range tasks {
		create(t, newTask(ns, fmt.Sprintf("t-%d", i)))
	}
	eventually(t, 20*time.Second, "every Task Running", func() bool {
		return len(tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]) == tasks
	})
	eventually(t, 10*time.Second, "the burst's event to be written", func() bool { return startedEvents(t, ns) == 1 })
	// Each event is recorded just after its Task's status write returns and
	// then passes client-go's broadcaster before it waits for its turn:
	// give the last ones a moment to get there before the controller stops.
	time.Sleep(time.Second)
	stop()
	eventually(t, 10*time.Second, "the waiting events to be counted as dropped", func() bool {
		return counter(t, "kubeopencode_events_dropped_total")-before >= tasks-1
	})
	assert.Equal(t, 1, startedEvents(t, ns), "only the burst's one event was written")
}
