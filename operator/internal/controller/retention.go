package controller

import (
	"context"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// Retention removes finished Tasks: after a time (ttl_after_finished.go) and
// beyond a count per Agent (history_limit.go). Both delete through one
// taskDeleter, whose rate limit keeps a backlog of thousands of expired
// Tasks (after an Agent first gets a policy, or a controller outage) from
// taking the API server away from the admission of new Tasks. Retention has
// work queues of its own; it never delays a reconcile of the Task
// controller.

// Defaults of the deletion rate limit.
const (
	DefaultTaskDeletionQPS   = 20
	DefaultTaskDeletionBurst = 20
)

// indexFinishedTaskAgent holds finished Tasks by the Agent they used
// ("<namespace>/<agent>"): the history an Agent's limits count.
const indexFinishedTaskAgent = "kubeopencode.io/finished-agent"

// +kubebuilder:rbac:groups=kubeopencode.io,resources=tasks,verbs=delete

var tasksDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubeopencode_retention_deleted_tasks_total",
	Help: "Finished Tasks deleted by retention, by policy (ttl, history-limit).",
}, []string{"policy"})

// taskDeleter deletes finished Tasks at a bounded rate.
type taskDeleter struct {
	client  client.Client
	limiter *rate.Limiter
}

func newTaskDeleter(c client.Client, qps float32, burst int) *taskDeleter {
	if qps <= 0 {
		qps = DefaultTaskDeletionQPS
	}
	if burst <= 0 {
		burst = DefaultTaskDeletionBurst
	}
	return &taskDeleter{client: c, limiter: rate.NewLimiter(rate.Limit(qps), burst)}
}

// delete waits for its turn and deletes the Task, if it is still the one
// that was judged (same UID). Background propagation, as kubectl and the
// CronJob controller use: the Task goes at once, and the garbage collector
// then deletes its Job, the Job's pods and its context ConfigMap.
func (d *taskDeleter) delete(ctx context.Context, task *v1alpha1.Task, policy, why string) error {
	if err := d.limiter.Wait(ctx); err != nil {
		return err
	}
	err := d.client.Delete(ctx, task,
		client.Preconditions{UID: &task.UID},
		client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone already, or another object of the same name now.
		return nil
	}
	if err != nil {
		return err
	}
	tasksDeleted.WithLabelValues(policy).Inc()
	log.FromContext(ctx).V(1).Info("Deleted finished Task", "task", types.NamespacedName{Namespace: task.Namespace, Name: task.Name}, "phase", task.Status.Phase, "policy", policy, "why", why)
	return nil
}

// finishedTasks lists an Agent's finished Tasks that are not being deleted,
// newest first (by completion time, then creation, then name).
func finishedTasks(ctx context.Context, c client.Reader, namespace, agent string) ([]*v1alpha1.Task, error) {
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, client.InNamespace(namespace), client.MatchingFields{indexFinishedTaskAgent: namespace + "/" + agent}, readOnly); err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.Task, 0, len(tasks.Items))
	for i := range tasks.Items {
		if t := &tasks.Items[i]; t.DeletionTimestamp == nil {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return finishedAfter(out[i], out[j]) })
	return out, nil
}

// finishedAfter orders finished Tasks newest first.
func finishedAfter(a, b *v1alpha1.Task) bool {
	ca, cb := finishedAt(a), finishedAt(b)
	if !ca.Equal(&cb) {
		return cb.Before(&ca)
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// finishedAt is when the Task finished: its completion time, or its
// creation for a Task whose status never recorded one.
func finishedAt(t *v1alpha1.Task) metav1.Time {
	if t.Status.CompletionTime != nil {
		return *t.Status.CompletionTime
	}
	return t.CreationTimestamp
}
