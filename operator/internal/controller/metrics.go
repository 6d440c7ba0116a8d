package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// admissionLatency measures from the moment the controller first sees a
// Task to the moment its Job exists (queueing included).
var admissionLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "kubeopencode_task_admission_duration_seconds",
	Help:    "Time from the controller first seeing a Task to the creation of its Job, queueing included.",
	Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
})

// taskCollector reports Tasks by phase and queue depth per Agent, read from
// the cache at scrape time so the numbers are never stale counters.
type taskCollector struct {
	mu      sync.Mutex
	reader  client.Reader
	byPhase *prometheus.Desc
	queue   *prometheus.Desc
}

func newTaskCollector(reader client.Reader) *taskCollector {
	return &taskCollector{
		reader:  reader,
		byPhase: prometheus.NewDesc("kubeopencode_tasks", "Tasks by namespace and phase.", []string{"namespace", "phase"}, nil),
		queue:   prometheus.NewDesc("kubeopencode_agent_queue_depth", "Tasks waiting in Queued, by Agent.", []string{"namespace", "agent"}, nil),
	}
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byPhase
	ch <- c.queue
}

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var tasks v1alpha1.TaskList
	if err := c.reader.List(ctx, &tasks, readOnly); err != nil {
		return
	}
	type key struct{ ns, v string }
	phases := map[key]int{}
	queues := map[key]int{}
	for i := range tasks.Items {
		t := &tasks.Items[i]
		phase := string(t.Status.Phase)
		if phase == "" {
			phase = "New"
		}
		phases[key{t.Namespace, phase}]++
		if t.Status.Phase == v1alpha1.TaskPhaseQueued {
			queues[key{t.Namespace, t.AgentName()}]++
		}
	}
	for k, n := range phases {
		ch <- prometheus.MustNewConstMetric(c.byPhase, prometheus.GaugeValue, float64(n), k.ns, k.v)
	}
	for k, n := range queues {
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(n), k.ns, k.v)
	}
}

var (
	registerOnce sync.Once
	collector    *taskCollector
)

// registerMetrics registers the metrics once per process and points them at
// the newest manager's cache (tests start several managers in one process).
func registerMetrics(reader client.Reader) {
	registerOnce.Do(func() {
		collector = newTaskCollector(reader)
		metrics.Registry.MustRegister(admissionLatency, eventsDropped, tasksDeleted, collector)
	})
	collector.mu.Lock()
	collector.reader = reader
	collector.mu.Unlock()
}
