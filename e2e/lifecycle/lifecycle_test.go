package lifecycle_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// How long a Task may take to get through the whole cluster on a busy
// machine: controller, Job controller, scheduler, kwok and back.
const taskTimeout = 90 * time.Second

// longRun keeps a pod Running for longer than any test lasts.
const longRun = "10m"

// TestLifecycle runs one controller for all its subtests, which run in
// parallel, each in its own namespace.
func TestLifecycle(t *testing.T) {
	port, err := freePort()
	require.NoError(t, err)
	pprofAddr := "127.0.0.1:" + strconv.Itoa(port)
	ctrl := startController(t, "--pprof-bind-address="+pprofAddr)
	ctrl.waitReady(t, 2*time.Minute)

	t.Run("group", func(t *testing.T) {
		t.Run("TaskCompletes", testTaskCompletes)
		t.Run("AgentExitCodeFailsTask", testAgentExitCode)
		t.Run("TimeoutFailsTask", testTimeout)
		t.Run("StopQueuedAndRunning", testStop)
		t.Run("DeleteRemovesJobAndPods", testDelete)
		t.Run("QueueIsFirstInFirstOut", testFIFO)
		t.Run("TTLDeletesTaskJobPodsConfigMap", testTTLDeletesEverything)
		t.Run("HistoryLimitsKeepTheNewest", testHistoryLimits)
		t.Run("RetentionSparesRunningTasks", testRetentionSparesRunning)
		t.Run("HeapProfileOnRequest", func(t *testing.T) { testHeapProfile(t, pprofAddr) })
	})
}

// An Agent and a Task become a Job the controller creates, a pod the
// scheduler places on a fake node, a Job the Job controller completes and a
// Completed Task.
func testTaskCompletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "complete")
	create(t, newAgent(ns, "default", 0, nil), newTask(ns, "hello", ""))

	task := waitPhase(t, ns, "hello", v1alpha1.TaskPhaseCompleted, taskTimeout)
	require.NotNil(t, task.Status.ExitCode, "status.exitCode")
	assert.Equal(t, int32(0), *task.Status.ExitCode)
	require.NotNil(t, task.Status.StartTime, "status.startTime")
	require.NotNil(t, task.Status.CompletionTime, "status.completionTime")
	assert.False(t, task.Status.CompletionTime.Before(task.Status.StartTime), "completionTime %s before startTime %s", task.Status.CompletionTime, task.Status.StartTime)
	assert.Equal(t, "default", task.Status.Agent)
	require.NotNil(t, task.Status.Images)
	assert.Equal(t, gitInitImage, task.Status.Images.GitInit)
	assert.Equal(t, contextInitImage, task.Status.Images.ContextInit)
	succeeded := condition(task, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, succeeded, "Succeeded condition")
	assert.Equal(t, metav1.ConditionTrue, succeeded.Status)
	assert.Equal(t, v1alpha1.ReasonCompleted, succeeded.Reason)

	job := &batchv1.Job{}
	require.NoError(t, env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: task.Status.JobName}, job), "the Task's Job")
	assert.True(t, metav1.IsControlledBy(job, task), "the Job is controlled by its Task")
	assert.True(t, hasJobCondition(job, batchv1.JobComplete), "the Job controller marked the Job Complete: %v", job.Status.Conditions)

	pods, err := podsOf(ctx, task)
	require.NoError(t, err)
	require.Len(t, pods, 1, "one pod per Task")
	pod := pods[0]
	assert.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
	assert.Contains(t, env.cluster.NodeNames, pod.Spec.NodeName, "the scheduler placed the pod on a fake node")
	assert.True(t, metav1.IsControlledBy(&pod, job), "the pod belongs to the Task's Job")
}

// A pod whose agent exits 3 fails the Task with the code in status and message.
func testAgentExitCode(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "exitcode")
	create(t,
		newAgent(ns, "crashy", 0, map[string]string{cluster.AnnotationExitCode: "3"}),
		newTask(ns, "crash", "crashy"),
	)

	task := waitPhase(t, ns, "crash", v1alpha1.TaskPhaseFailed, taskTimeout)
	succeeded := condition(task, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, succeeded, "Succeeded condition")
	assert.Equal(t, metav1.ConditionFalse, succeeded.Status)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, succeeded.Reason)
	assert.Contains(t, succeeded.Message, "code 3")
	require.NotNil(t, task.Status.ExitCode, "status.exitCode")
	assert.Equal(t, int32(3), *task.Status.ExitCode)
	assert.NotNil(t, task.Status.CompletionTime, "status.completionTime")
}

// A Task whose agent runs longer than spec.timeout is stopped by the Job
// controller and fails with DeadlineExceeded, long before the agent would end.
func testTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "timeout")
	task := newTask(ns, "slow", "sleepy")
	task.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Second}
	create(t, newAgent(ns, "sleepy", 0, map[string]string{cluster.AnnotationDuration: "60s"}), task)

	got := waitPhase(t, ns, "slow", v1alpha1.TaskPhaseFailed, taskTimeout)
	succeeded := condition(got, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, succeeded, "Succeeded condition")
	assert.Equal(t, metav1.ConditionFalse, succeeded.Status)
	assert.Equal(t, v1alpha1.ReasonDeadlineExceeded, succeeded.Reason)
	assert.Contains(t, succeeded.Message, "3s")
	require.NotNil(t, got.Status.StartTime)
	require.NotNil(t, got.Status.CompletionTime)
	ran := got.Status.CompletionTime.Sub(got.Status.StartTime.Time)
	// Timestamps have one-second resolution.
	assert.GreaterOrEqual(t, ran, 2*time.Second, "the Task ran until its timeout")
	assert.Less(t, ran, 45*time.Second, "the Task was stopped at its timeout, not when the agent ended")
	assert.Nil(t, got.Status.ExitCode, "the agent never exited")

	// The Job controller ends the pod that ran out of time.
	waitGone(t, taskTimeout, "a running pod of Task slow", func(ctx context.Context) (bool, error) {
		pods, err := podsOf(ctx, got)
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				return true, err
			}
		}
		return false, err
	})
	// The Task fails as soon as the Job controller decides the Job fails
	// (FailureTarget); Failed follows once the pod is gone.
	job := &batchv1.Job{}
	err := wait.PollUntilContextTimeout(ctx, defaultWaitPeriod, taskTimeout, true, func(ctx context.Context) (bool, error) {
		err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: got.Status.JobName}, job)
		return err == nil && hasJobCondition(job, batchv1.JobFailed), nil
	})
	require.NoError(t, err, "Job %s not Failed: %v", got.Status.JobName, job.Status.Conditions)
}

// With one slot, stopping the queued Task keeps it from ever starting;
// stopping the running one deletes its Job and pod and lets the next start.
func testStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "stop")
	obs := observe(t, ns, 1)
	create(t, newAgent(ns, "single", 1, map[string]string{cluster.AnnotationDuration: longRun}))
	for _, name := range []string{"a-running", "b-queued", "c-next"} {
		create(t, newTask(ns, name, "single"))
	}

	running := waitPhase(t, ns, "a-running", v1alpha1.TaskPhaseRunning, taskTimeout)
	runningPod := waitPodRunning(t, running, taskTimeout)
	for _, name := range []string{"b-queued", "c-next"} {
		queued := waitPhase(t, ns, name, v1alpha1.TaskPhaseQueued, taskTimeout)
		c := condition(queued, v1alpha1.TaskConditionQueued)
		require.NotNil(t, c, "Task %s: Queued condition", name)
		assert.Equal(t, metav1.ConditionTrue, c.Status)
		assert.Equal(t, v1alpha1.ReasonWaitingForSlot, c.Reason)
	}

	stop(t, ns, "b-queued")
	stopped := waitPhase(t, ns, "b-queued", v1alpha1.TaskPhaseFailed, taskTimeout)
	assertStopped(t, stopped)
	assert.Empty(t, stopped.Status.JobName, "a Task stopped in the queue has no Job")
	assert.Nil(t, stopped.Status.StartTime, "a Task stopped in the queue never started")
	// The running Task is untouched.
	assert.Equal(t, v1alpha1.TaskPhaseRunning, getTask(t, ns, "a-running").Status.Phase)

	stop(t, ns, "a-running")
	stopped = waitPhase(t, ns, "a-running", v1alpha1.TaskPhaseFailed, taskTimeout)
	assertStopped(t, stopped)
	waitGone(t, taskTimeout, "Job a-running", func(ctx context.Context) (bool, error) {
		return exists(ctx, &batchv1.Job{}, ns, running.Status.JobName)
	})
	waitGone(t, taskTimeout, "pod "+runningPod.Name, func(ctx context.Context) (bool, error) {
		return exists(ctx, &corev1.Pod{}, ns, runningPod.Name)
	})

	next := waitPhase(t, ns, "c-next", v1alpha1.TaskPhaseRunning, taskTimeout)
	assert.NotEmpty(t, next.Status.JobName)
	waitPodRunning(t, next, taskTimeout)

	ok, err := exists(ctx, &batchv1.Job{}, ns, "b-queued")
	require.NoError(t, err)
	assert.False(t, ok, "the stopped queued Task has no Job")
	assert.Equal(t, v1alpha1.TaskPhaseFailed, getTask(t, ns, "b-queued").Status.Phase, "a stopped Task stays stopped")
	obs.check(t)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, []string{"a-running", "c-next"}, obs.jobOrder, "Jobs created, in order")
	assert.Equal(t, 1, obs.maxActive, "never more than one active Job")
}

// Deleting a running Task deletes its Job and pod: the garbage collector
// follows the owner references the controller set.
func testDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "delete")
	create(t, newAgent(ns, "default", 0, map[string]string{cluster.AnnotationDuration: longRun}), newTask(ns, "doomed", ""))

	task := waitPhase(t, ns, "doomed", v1alpha1.TaskPhaseRunning, taskTimeout)
	pod := waitPodRunning(t, task, taskTimeout)
	require.NoError(t, env.k8s.Delete(ctx, task))

	waitGone(t, taskTimeout, "Task doomed", func(ctx context.Context) (bool, error) {
		return exists(ctx, &v1alpha1.Task{}, ns, task.Name)
	})
	waitGone(t, taskTimeout, "Job "+task.Status.JobName, func(ctx context.Context) (bool, error) {
		return exists(ctx, &batchv1.Job{}, ns, task.Status.JobName)
	})
	waitGone(t, taskTimeout, "pod "+pod.Name, func(ctx context.Context) (bool, error) {
		return exists(ctx, &corev1.Pod{}, ns, pod.Name)
	})
	waitGone(t, taskTimeout, "the Task's ConfigMap", func(ctx context.Context) (bool, error) {
		var cms corev1.ConfigMapList
		err := env.k8s.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{labelTaskUID: string(task.UID)})
		return len(cms.Items) > 0, err
	})
}

// Eight Tasks on an Agent that runs two at a time start in the order they
// were created, and never more than two run at once.
func testFIFO(t *testing.T) {
	t.Parallel()
	const (
		limit = 2
		n     = 8
	)
	ns := namespace(t, "fifo")
	obs := observe(t, ns, limit)
	names := make([]string, n)
	index := map[string]int{}
	for i := range names {
		names[i] = fmt.Sprintf("fifo-%d", i)
		index[names[i]] = i
	}
	// When a Task's Job appears, every older Task must have one already,
	// save those admitted alongside it into the slots that were free.
	obs.onJobAdded = func(task string, o *observer) {
		i, ok := index[task]
		if !ok {
			return
		}
		var behind []string
		for _, older := range names[:i] {
			if !o.hadJob[older] {
				behind = append(behind, older)
			}
		}
		if len(behind) > limit-1 {
			o.violate("Task %s started before the older %v", task, behind)
		}
	}
	create(t, newAgent(ns, "pair", limit, nil))
	for _, name := range names {
		create(t, newTask(ns, name, "pair"))
	}

	tasks := make([]*v1alpha1.Task, n)
	for i, name := range names {
		tasks[i] = waitPhase(t, ns, name, v1alpha1.TaskPhaseCompleted, 3*taskTimeout)
	}
	obs.check(t)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	t.Logf("Jobs created in order %v; at most %d active Jobs, %d Running Tasks", obs.jobOrder, obs.maxActive, obs.maxRunning)
	assert.Len(t, obs.jobOrder, n, "one Job per Task")
	assert.LessOrEqual(t, obs.maxActive, limit)
	assert.LessOrEqual(t, obs.maxRunning, limit)
	assert.Equal(t, limit, obs.maxRunning, "the Agent used both slots")
	// startTime has one-second resolution: a Task never started before
	// one created limit places ahead of it.
	for i := limit; i < n; i++ {
		for j := 0; j <= i-limit; j++ {
			assert.False(t, tasks[i].Status.StartTime.Before(tasks[j].Status.StartTime),
				"Task %s started at %s, before the older %s at %s", names[i], tasks[i].Status.StartTime, names[j], tasks[j].Status.StartTime)
		}
	}
}

func hasJobCondition(job *batchv1.Job, typ batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func stop(t testing.TB, ns, name string) {
	t.Helper()
	task := getTask(t, ns, name)
	patch := client.MergeFrom(task.DeepCopy())
	if task.Annotations == nil {
		task.Annotations = map[string]string{}
	}
	task.Annotations[v1alpha1.StopAnnotation] = "true"
	require.NoError(t, env.k8s.Patch(context.Background(), task, patch))
}

func assertStopped(t testing.TB, task *v1alpha1.Task) {
	t.Helper()
	c := condition(task, v1alpha1.TaskConditionStopped)
	if assert.NotNil(t, c, "Task %s: Stopped condition", task.Name) {
		assert.Equal(t, metav1.ConditionTrue, c.Status)
		assert.Equal(t, v1alpha1.ReasonUserStopped, c.Reason)
	}
	assert.NotNil(t, task.Status.CompletionTime, "Task %s: completionTime", task.Name)
}

func exists(ctx context.Context, obj client.Object, ns, name string) (bool, error) {
	err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
