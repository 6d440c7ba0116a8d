package lifecycle_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// A Task with ttlSecondsAfterFinished is deleted that long after it
// finished, and the garbage collector takes its Job, its pod and its
// context ConfigMap with it.
func testTTLDeletesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "ttl")
	task := newTask(ns, "short-lived", "")
	task.Spec.TTLSecondsAfterFinished = ptr.To[int32](5)
	// A context over 64 KiB travels in a ConfigMap of the Task's own.
	task.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeText, MountPath: "notes.md", Text: ptr.To(strings.Repeat("A line of review notes.\n", 3000))}}
	create(t, newAgent(ns, "default", 0, nil), task)

	task = waitPhase(t, ns, "short-lived", v1alpha1.TaskPhaseCompleted, taskTimeout)
	pods, err := podsOf(ctx, task)
	require.NoError(t, err)
	require.Len(t, pods, 1)
	var cms corev1.ConfigMapList
	require.NoError(t, env.k8s.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{labelTaskUID: string(task.UID)}))
	require.Len(t, cms.Items, 1, "the large context's ConfigMap")
	ok, err := exists(ctx, &batchv1.Job{}, ns, task.Status.JobName)
	require.NoError(t, err)
	require.True(t, ok, "the Job is kept while the Task is")

	waitGone(t, taskTimeout, "Task short-lived", func(ctx context.Context) (bool, error) {
		return exists(ctx, &v1alpha1.Task{}, ns, task.Name)
	})
	// completionTime has a resolution of one second.
	assert.GreaterOrEqual(t, time.Since(task.Status.CompletionTime.Time), 4*time.Second, "deleted no sooner than its TTL allows")
	waitGone(t, taskTimeout, "Job "+task.Status.JobName, func(ctx context.Context) (bool, error) {
		return exists(ctx, &batchv1.Job{}, ns, task.Status.JobName)
	})
	waitGone(t, taskTimeout, "pod "+pods[0].Name, func(ctx context.Context) (bool, error) {
		return exists(ctx, &corev1.Pod{}, ns, pods[0].Name)
	})
	waitGone(t, taskTimeout, "ConfigMap "+cms.Items[0].Name, func(ctx context.Context) (bool, error) {
		return exists(ctx, &corev1.ConfigMap{}, ns, cms.Items[0].Name)
	})
}

// An Agent with successfulTasksHistoryLimit 2 and failedTasksHistoryLimit 1
// keeps exactly its newest two Completed and newest Failed Task, and the
// Jobs of the others go with them.
func testHistoryLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "history")
	agent := newAgent(ns, "default", 0, nil)
	agent.Spec.TaskRetention = &v1alpha1.TaskRetention{SuccessfulTasksHistoryLimit: ptr.To[int32](2), FailedTasksHistoryLimit: ptr.To[int32](1)}
	create(t, agent)
	run := func(name string, phase v1alpha1.TaskPhase) {
		create(t, newTask(ns, name, ""))
		waitTask(t, ns, name, taskTimeout, "phase "+string(phase)+" (or deleted by the limit)", func(task *v1alpha1.Task) bool {
			return task.Status.Phase == phase
		})
	}
	for i := range 4 {
		run(fmt.Sprintf("ok-%d", i), v1alpha1.TaskPhaseCompleted)
	}
	// From now on the Agent's pods exit 1.
	require.NoError(t, env.k8s.Get(ctx, client.ObjectKeyFromObject(agent), agent))
	agent.Spec.PodSpec = &v1alpha1.AgentPodSpec{Annotations: map[string]string{cluster.AnnotationExitCode: "1"}}
	require.NoError(t, env.k8s.Update(ctx, agent))
	for i := range 3 {
		run(fmt.Sprintf("bad-%d", i), v1alpha1.TaskPhaseFailed)
	}

	want := []string{"bad-2", "ok-2", "ok-3"}
	var got, jobs []string
	err := wait.PollUntilContextTimeout(ctx, defaultWaitPeriod, taskTimeout, true, func(ctx context.Context) (bool, error) {
		got, jobs = names(ctx, ns)
		return assert.ObjectsAreEqual(want, got) && assert.ObjectsAreEqual(want, jobs), nil
	})
	require.NoError(t, err, "want Tasks and Jobs %v, have Tasks %v and Jobs %v", want, got, jobs)
	time.Sleep(3 * time.Second)
	got, _ = names(ctx, ns)
	assert.Equal(t, want, got, "retention stops at the limits")
}

// names lists the Tasks and the Jobs of a namespace (Jobs by their Task).
func names(ctx context.Context, ns string) (tasks, jobs []string) {
	var tl v1alpha1.TaskList
	var jl batchv1.JobList
	if env.k8s.List(ctx, &tl, client.InNamespace(ns)) != nil || env.k8s.List(ctx, &jl, client.InNamespace(ns)) != nil {
		return nil, nil
	}
	for _, t := range tl.Items {
		tasks = append(tasks, t.Name)
	}
	for _, j := range jl.Items {
		if j.DeletionTimestamp == nil {
			jobs = append(jobs, j.Annotations[annotationTask])
		}
	}
	sort.Strings(tasks)
	sort.Strings(jobs)
	return tasks, jobs
}

// With the strictest retention an Agent can have (TTL 0, keep nothing), a
// Running Task and its pod stay until the Task finishes; then it goes.
func testRetentionSparesRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "spare")
	agent := newAgent(ns, "default", 0, map[string]string{cluster.AnnotationDuration: longRun})
	agent.Spec.TaskRetention = &v1alpha1.TaskRetention{
		TTLSecondsAfterFinished:     ptr.To[int32](0),
		SuccessfulTasksHistoryLimit: ptr.To[int32](0), FailedTasksHistoryLimit: ptr.To[int32](0),
	}
	task := newTask(ns, "long", "")
	task.Spec.TTLSecondsAfterFinished = ptr.To[int32](0)
	create(t, agent, task)
	task = waitPhase(t, ns, "long", v1alpha1.TaskPhaseRunning, taskTimeout)
	pod := waitPodRunning(t, task, taskTimeout)
	time.Sleep(5 * time.Second)
	task = getTask(t, ns, "long")
	assert.Equal(t, v1alpha1.TaskPhaseRunning, task.Status.Phase, "still Running")
	ok, err := exists(ctx, &corev1.Pod{}, ns, pod.Name)
	require.NoError(t, err)
	assert.True(t, ok, "its pod still runs")

	stop(t, ns, "long")
	waitGone(t, taskTimeout, "the stopped Task", func(ctx context.Context) (bool, error) {
		return exists(ctx, &v1alpha1.Task{}, ns, "long")
	})
}

// With --pprof-bind-address the controller serves a heap profile, the way
// to see what its memory holds.
func testHeapProfile(t *testing.T, addr string) {
	t.Parallel()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Greater(t, len(body), 100)
	assert.Equal(t, []byte{0x1f, 0x8b}, body[:2], "a gzipped pprof profile")
}
