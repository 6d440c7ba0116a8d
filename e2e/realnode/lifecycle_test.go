package realnode_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

// TestExitCode: an agent that exits 7 fails its Task with AgentFailed,
// status.exitCode 7 and the end of its output in the message.
func TestExitCode(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, echoAgent(ns, "default", "env=TASK_NAME", "exit=7"))
	create(t, task(ns, "exit7", "", "Fail."))
	tk := waitEnded(t, ns, "exit7")

	assert.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase)
	require.NotNil(t, tk.Status.ExitCode, describeTask(tk))
	assert.Equal(t, int32(7), *tk.Status.ExitCode)
	c := condition(tk, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionFalse, c.Status)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, c.Reason)
	assert.Contains(t, c.Message, "exited with code 7")
	assert.Contains(t, c.Message, "== exit 7", "the last lines of the agent's output")
	assert.Equal(t, "exit7", agentOutput(t, tk).envs["TASK_NAME"])
}

// TestTimeout: a Task whose agent outlives spec.timeout is stopped and fails
// with DeadlineExceeded, and its pod does not keep running.
func TestTimeout(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, echoAgent(ns, "default", "sleep=10m"))
	tk := task(ns, "slow", "", "Take your time.")
	tk.Spec.Timeout = &metav1.Duration{Duration: 5 * time.Second}
	create(t, tk)
	tk = waitEnded(t, ns, "slow")

	assert.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase)
	c := condition(tk, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, c, describeTask(tk))
	assert.Equal(t, v1alpha1.ReasonDeadlineExceeded, c.Reason, describeTask(tk))
	require.NotNil(t, tk.Status.StartTime)
	require.NotNil(t, tk.Status.CompletionTime)
	ran := tk.Status.CompletionTime.Sub(tk.Status.StartTime.Time)
	assert.GreaterOrEqual(t, ran, 4*time.Second, "the Task ended before its timeout")
	assert.Less(t, ran, time.Minute)
	waitNoRunningPod(t, tk)
}

// TestStop: the stop annotation on a running Task deletes its Job; the pod
// goes away and the Task records that the user stopped it.
func TestStop(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, echoAgent(ns, "default", "sleep=10m"))
	tk := task(ns, "stopme", "", "Run until stopped.")
	create(t, tk)
	waitAgentStarted(t, tk)

	tk = getTask(t, ns, "stopme")
	patch := client.MergeFrom(tk.DeepCopy())
	tk.Annotations = map[string]string{v1alpha1.StopAnnotation: "true"}
	require.NoError(t, env.k8s.Patch(t.Context(), tk, patch))

	tk = waitEnded(t, ns, "stopme")
	assert.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase)
	stopped := condition(tk, v1alpha1.TaskConditionStopped)
	require.NotNil(t, stopped, describeTask(tk))
	assert.Equal(t, metav1.ConditionTrue, stopped.Status)
	assert.Equal(t, v1alpha1.ReasonUserStopped, stopped.Reason)
	assert.Equal(t, v1alpha1.ReasonStopped, condition(tk, v1alpha1.TaskConditionSucceeded).Reason)
	waitGone(t, tk)
}

// TestTaskDeletion: deleting a running Task removes its Job, its pod (the
// container is stopped) and its context ConfigMap (a context too large to
// travel inside the Job gets one).
func TestTaskDeletion(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, echoAgent(ns, "default", "sleep=10m"))
	big := strings.Repeat("context line\n", 80*1024/13)
	tk := task(ns, "deleteme", "", "Run until deleted.", v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "big.txt", Text: &big})
	create(t, tk)
	waitAgentStarted(t, tk)
	tk = getTask(t, ns, "deleteme")
	require.NotEmpty(t, tk.Status.JobName)
	cms := &corev1.ConfigMapList{}
	require.NoError(t, env.k8s.List(t.Context(), cms, client.InNamespace(ns), client.MatchingLabels{labelTaskUID: string(tk.UID)}))
	require.Len(t, cms.Items, 1, "the Task's context ConfigMap")

	require.NoError(t, env.k8s.Delete(t.Context(), tk))
	waitGone(t, tk)
	err := deploy.Poll(t.Context(), time.Minute, func() (bool, error) {
		err := env.k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: cms.Items[0].Name}, &corev1.ConfigMap{})
		return client.IgnoreNotFound(err) == nil && err != nil, err
	})
	assert.NoError(t, err, "context ConfigMap %s still exists", cms.Items[0].Name)
}

// waitGone waits until the Task's Job and pods no longer exist.
func waitGone(t *testing.T, tk *v1alpha1.Task) {
	t.Helper()
	err := deploy.Poll(t.Context(), 90*time.Second, func() (bool, error) {
		n := len(taskPods(t, tk))
		return n == 0 && jobGone(t, tk.Namespace, tk.Status.JobName), fmt.Errorf("%d pods left", n)
	})
	require.NoError(t, err, "Job %s/%s and its pods", tk.Namespace, tk.Status.JobName)
}

// waitNoRunningPod waits until no pod of the Task is running.
func waitNoRunningPod(t *testing.T, tk *v1alpha1.Task) {
	t.Helper()
	err := deploy.Poll(t.Context(), 90*time.Second, func() (bool, error) {
		for _, p := range taskPods(t, tk) {
			if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
				return false, fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
			}
		}
		return true, nil
	})
	require.NoError(t, err)
}

// TestMaxConcurrentTasks: with maxConcurrentTasks 1, three Tasks run one
// after another in creation order; no two of their pods ever run at once,
// and the agents' own clocks show no overlap.
func TestMaxConcurrentTasks(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	a := echoAgent(ns, "serial", "sleep=2s")
	a.Spec.MaxConcurrentTasks = ptr32(1)
	create(t, a)

	// Watch every pod of the namespace from before the first Task exists.
	ctx, cancel := context.WithCancel(t.Context())
	w, err := env.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var mu sync.Mutex
	running := map[string]bool{}
	maxRunning := 0
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			running[p.Name] = ev.Type != watch.Deleted && p.Status.Phase == corev1.PodRunning
			n := 0
			for _, r := range running {
				if r {
					n++
				}
			}
			maxRunning = max(maxRunning, n)
			mu.Unlock()
		}
	}()
	defer func() {
		cancel()
		w.Stop()
		done.Wait()
	}()

	names := []string{"q1", "q2", "q3"}
	for _, n := range names {
		create(t, task(ns, n, "serial", "Task "+n+"."))
	}
	waitTask(t, ns, "q3", time.Minute, "Queued", func(tk *v1alpha1.Task) bool { return tk.Status.Phase == v1alpha1.TaskPhaseQueued })

	var tasks []*v1alpha1.Task
	var outs []*echoOutput
	for _, n := range names {
		tk := waitEnded(t, ns, n)
		requireCompleted(t, tk)
		tasks = append(tasks, tk)
		outs = append(outs, agentOutput(t, tk))
	}
	for i := 1; i < len(names); i++ {
		assert.Greater(t, outs[i].start, outs[i-1].finish, "agent of %s started before the agent of %s finished", names[i], names[i-1])
		// Each agent runs for two seconds, so creation order shows even at
		// the status timestamps' one-second resolution.
		assert.True(t, tasks[i-1].Status.StartTime.Before(tasks[i].Status.StartTime),
			"%s started at %s, not after %s (started %s)", names[i], tasks[i].Status.StartTime, names[i-1], tasks[i-1].Status.StartTime)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, maxRunning, "pods running at once")
}

func ptr32(v int32) *int32 { return &v }
