package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
)

func taskExists(t testing.TB, ns, name string) bool {
	t.Helper()
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &v1alpha1.Task{})
	if apierrors.IsNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

// finishTask runs a Task to Completed or Failed the way the Job controller would end it.
func finishTask(t testing.TB, ns, name string, succeeded bool) {
	t.Helper()
	waitPhase(t, ns, name, v1alpha1.TaskPhaseRunning)
	finishJob(t, ns, name, succeeded, "BackoffLimitExceeded")
	phase := v1alpha1.TaskPhaseFailed
	if succeeded {
		phase = v1alpha1.TaskPhaseCompleted
	}
	// A Task whose time to live is 0 may be gone before it is seen finished.
	eventually(t, 20*time.Second, fmt.Sprintf("Task %s/%s to reach %s", ns, name, phase), func() bool {
		task := &v1alpha1.Task{}
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, task)
		if apierrors.IsNotFound(err) {
			return true
		}
		require.NoError(t, err)
		return task.Status.Phase == phase
	})
}

func withRetention(a *v1alpha1.Agent, r v1alpha1.TaskRetention) *v1alpha1.Agent {
	a.Spec.TaskRetention = &r
	return a
}

func withTTL(task *v1alpha1.Task, seconds int32) *v1alpha1.Task {
	task.Spec.TTLSecondsAfterFinished = ptr.To(seconds)
	return task
}

// TestTaskTTLAfterFinished: a finished Task with ttlSecondsAfterFinished is
// deleted once that time has passed since it finished, and not before; a
// Task without one is kept; a Running Task is never deleted, however short
// its time to live.
func TestTaskTTLAfterFinished(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil),
		withTTL(newTask(ns, "ttl-3s"), 3), withTTL(newTask(ns, "ttl-0"), 0), newTask(ns, "keep"))

	waitPhase(t, ns, "ttl-0", v1alpha1.TaskPhaseRunning)
	time.Sleep(2 * time.Second)
	assert.True(t, taskExists(t, ns, "ttl-0"), "a Running Task with ttlSecondsAfterFinished 0 is not deleted")

	finishTask(t, ns, "ttl-3s", true)
	finished := time.Now()
	finishTask(t, ns, "ttl-0", false)
	finishTask(t, ns, "keep", true)
	eventually(t, 10*time.Second, "the Task with TTL 0 to be deleted once it failed", func() bool { return !taskExists(t, ns, "ttl-0") })
	// completionTime has a resolution of one second.
	time.Sleep(time.Until(finished.Add(1500 * time.Millisecond)))
	assert.True(t, taskExists(t, ns, "ttl-3s"), "a Task is kept for its ttlSecondsAfterFinished")
	eventually(t, 10*time.Second, "the Task with TTL 3s to be deleted", func() bool { return !taskExists(t, ns, "ttl-3s") })
	assert.GreaterOrEqual(t, time.Since(finished), 2*time.Second)
	time.Sleep(time.Second)
	assert.True(t, taskExists(t, ns, "keep"), "a Task without a TTL, of an Agent without one, is kept")
}

// TestAgentTTLDefault: an Agent's taskRetention.ttlSecondsAfterFinished
// applies to its Tasks that set none; a Task's own value wins; setting the
// Agent's default later applies it to Tasks that had finished already.
func TestAgentTTLDefault(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "before"), withTTL(newTask(ns, "own-ttl"), 3600))
	finishTask(t, ns, "before", true)
	finishTask(t, ns, "own-ttl", true)
	time.Sleep(time.Second)
	require.True(t, taskExists(t, ns, "before"))

	agent := &v1alpha1.Agent{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, agent))
	agent.Spec.TaskRetention = &v1alpha1.TaskRetention{TTLSecondsAfterFinished: ptr.To[int32](0)}
	require.NoError(t, k8s.Update(context.Background(), agent))
	eventually(t, 10*time.Second, "the Agent's new TTL to delete the Task that had finished", func() bool { return !taskExists(t, ns, "before") })

	create(t, newTask(ns, "after"))
	finishTask(t, ns, "after", true)
	eventually(t, 10*time.Second, "the Agent's TTL to delete a Task that finishes", func() bool { return !taskExists(t, ns, "after") })
	assert.True(t, taskExists(t, ns, "own-ttl"), "the Task's own ttlSecondsAfterFinished wins over the Agent's")
}

// TestHistoryLimits: an Agent keeps exactly its newest N Completed and M
// Failed Tasks, counted apart; Tasks still running are neither counted nor
// deleted.
func TestHistoryLimits(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, withRetention(newAgent(ns, "default", nil), v1alpha1.TaskRetention{
		SuccessfulTasksHistoryLimit: ptr.To[int32](2), FailedTasksHistoryLimit: ptr.To[int32](1),
	}))
	// Created and finished one after the other: finishing order is creation order.
	var completed, failed []string
	for i := range 5 {
		name := fmt.Sprintf("ok-%d", i)
		create(t, newTask(ns, name))
		finishTask(t, ns, name, true)
		completed = append(completed, name)
	}
	for i := range 3 {
		name := fmt.Sprintf("bad-%d", i)
		create(t, newTask(ns, name))
		finishTask(t, ns, name, false)
		failed = append(failed, name)
	}
	create(t, newTask(ns, "running"))
	waitPhase(t, ns, "running", v1alpha1.TaskPhaseRunning)

	want := map[v1alpha1.TaskPhase][]string{
		v1alpha1.TaskPhaseCompleted: completed[3:],
		v1alpha1.TaskPhaseFailed:    failed[2:],
		v1alpha1.TaskPhaseRunning:   {"running"},
	}
	eventually(t, 15*time.Second, "the newest 2 Completed and newest 1 Failed Tasks to remain", func() bool {
		return assert.ObjectsAreEqual(want, tasksByPhase(t, ns))
	})
	time.Sleep(2 * time.Second)
	assert.Equal(t, want, tasksByPhase(t, ns), "retention stops at the limits")

	// One more success pushes out exactly the oldest one kept.
	create(t, newTask(ns, "ok-5"))
	finishTask(t, ns, "ok-5", true)
	want[v1alpha1.TaskPhaseCompleted] = []string{"ok-4", "ok-5"}
	eventually(t, 15*time.Second, "ok-3 to make room for ok-5", func() bool {
		return assert.ObjectsAreEqual(want, tasksByPhase(t, ns))
	})
}

// TestRunningTaskIsNeverDeletedByRetention: with the strictest policy an
// Agent can have (keep nothing, TTL 0), its Running and Queued Tasks stay
// until they finish.
func TestRunningTaskIsNeverDeletedByRetention(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, withRetention(newAgent(ns, "default", ptr.To[int32](1)), v1alpha1.TaskRetention{
		TTLSecondsAfterFinished:     ptr.To[int32](0),
		SuccessfulTasksHistoryLimit: ptr.To[int32](0), FailedTasksHistoryLimit: ptr.To[int32](0),
	}), withTTL(newTask(ns, "a"), 0))
	waitPhase(t, ns, "a", v1alpha1.TaskPhaseRunning)
	create(t, newTask(ns, "b"))
	waitPhase(t, ns, "b", v1alpha1.TaskPhaseQueued)
	time.Sleep(3 * time.Second)
	assert.Equal(t, map[v1alpha1.TaskPhase][]string{v1alpha1.TaskPhaseRunning: {"a"}, v1alpha1.TaskPhaseQueued: {"b"}}, tasksByPhase(t, ns))

	finishJob(t, ns, "a", true, "")
	eventually(t, 10*time.Second, "a to be deleted once it completed", func() bool { return !taskExists(t, ns, "a") })
	task := waitPhase(t, ns, "b", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, "b", task.Status.JobName)
	time.Sleep(2 * time.Second)
	assert.True(t, taskExists(t, ns, "b"), "the next Task, now Running, stays")
}

// TestRetentionDeletesAtItsRate: a backlog of expired Tasks is deleted no
// faster than --task-deletion-qps allows.
func TestRetentionDeletesAtItsRate(t *testing.T) {
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	const n = 30
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("old-%02d", i)
		create(t, withTTL(newTask(ns, names[i]), 0))
	}
	// Finished while no controller ran, as after an outage.
	for _, name := range names {
		markFinished(t, ns, name)
	}
	start := time.Now()
	startController(t, func(o *controller.Options) { o.TaskDeletionQPS, o.TaskDeletionBurst = 10, 5 })
	eventually(t, 20*time.Second, "the backlog to be deleted", func() bool {
		var list v1alpha1.TaskList
		require.NoError(t, k8s.List(context.Background(), &list, client.InNamespace(ns)))
		return len(list.Items) == 0
	})
	// 5 at once, then 10 a second: 25 more need at least 2.5 s.
	assert.GreaterOrEqual(t, time.Since(start), 2500*time.Millisecond)
}

// markFinished writes a Completed status, as a controller would have,
// on a Task no controller has seen.
func markFinished(t testing.TB, ns, name string) {
	t.Helper()
	task := getTask(t, ns, name)
	now := metav1.Now()
	task.Status.Phase = v1alpha1.TaskPhaseCompleted
	task.Status.CompletionTime = &now
	require.NoError(t, k8s.Status().Update(context.Background(), task))
}
