package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// startCluster starts a cluster for the test and stops it when the test
// ends (Stop is idempotent, so a test may stop it first to check what
// stopping does).
func startCluster(t *testing.T, opts cluster.Options) (*cluster.Cluster, kubernetes.Interface) {
	t.Helper()
	c, err := cluster.Start(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	require.NoError(t, err)
	return c, cs
}

// TestLocalCluster starts one cluster, runs Jobs through the real
// controller-manager, scheduler and kwok, and finally stops it.
func TestLocalCluster(t *testing.T) {
	ctx := t.Context()
	c, cs := startCluster(t, cluster.Options{Nodes: 2, Progress: t.Output()})

	t.Run("workloads", func(t *testing.T) {
		t.Run("JobWithInitContainerCompletes", func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, cs)
			job := createJob(t, cs, ns, "complete", nil)

			waitJobCondition(t, cs, job, batchv1.JobComplete)
			pod := onlyPod(t, cs, job)
			assert.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
			assert.Contains(t, c.NodeNames, pod.Spec.NodeName, "the scheduler placed the pod on a fake node")
			require.Len(t, pod.Status.InitContainerStatuses, 1)
			init := pod.Status.InitContainerStatuses[0].State.Terminated
			require.NotNil(t, init, "init container terminated")
			assert.Equal(t, int32(0), init.ExitCode)
			main := terminated(t, pod)
			assert.Equal(t, int32(0), main.ExitCode)
			assert.Equal(t, "Completed", main.Reason)
		})

		t.Run("ExitCodeAnnotationFailsJob", func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, cs)
			job := createJob(t, cs, ns, "fail", map[string]string{cluster.AnnotationExitCode: "3"})

			waitJobCondition(t, cs, job, batchv1.JobFailed)
			pod := onlyPod(t, cs, job)
			assert.Equal(t, corev1.PodFailed, pod.Status.Phase)
			state := terminated(t, pod)
			assert.Equal(t, int32(3), state.ExitCode)
			assert.Equal(t, "Error", state.Reason)
		})

		t.Run("DurationAnnotationKeepsPodRunning", func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, cs)
			job := createJob(t, cs, ns, "slow", map[string]string{cluster.AnnotationDuration: "8s"})

			waitPodsRunning(t, cs, ns, 1)
			// Still running well after the default one second.
			time.Sleep(4 * time.Second)
			pod := onlyPod(t, cs, job)
			assert.Equal(t, corev1.PodRunning, pod.Status.Phase)

			waitJobCondition(t, cs, job, batchv1.JobComplete)
			state := terminated(t, onlyPod(t, cs, job))
			ran := state.FinishedAt.Sub(state.StartedAt.Time)
			assert.GreaterOrEqual(t, ran, 7*time.Second, "container ran for the annotated duration")
		})

		t.Run("NamespaceDeletionRemovesJobsAndPods", func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, cs)
			createJob(t, cs, ns, "long", map[string]string{cluster.AnnotationDuration: "1h"})
			waitPodsRunning(t, cs, ns, 1)

			require.NoError(t, cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))
			err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
				_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
			require.NoError(t, err, "namespace %s still exists", ns)
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, pods.Items)
			jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, jobs.Items)
		})
	})

	t.Run("StopLeavesNoProcesses", func(t *testing.T) {
		pids := c.PIDs()
		require.Len(t, pids, 5)
		dir := c.Dir

		require.NoError(t, c.Stop())
		for name, pid := range pids {
			assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "%s (pid %d) still exists", name, pid)
			assert.ErrorIs(t, syscall.Kill(-pid, 0), syscall.ESRCH, "process group of %s (pgid %d) still exists", name, pid)
		}
		_, err := os.Stat(dir)
		assert.True(t, errors.Is(err, os.ErrNotExist), "temporary cluster directory %s removed", dir)
		require.NoError(t, c.Stop(), "a second Stop is harmless")
	})
}

func namespace(t testing.TB, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return ns.Name
}

// createJob creates a one-pod Job with an init container, as the operator's
// Jobs have, and the given pod annotations.
func createJob(t testing.TB, cs kubernetes.Interface, ns, name string, annotations map[string]string) *batchv1.Job {
	t.Helper()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy:  corev1.RestartPolicyNever,
					InitContainers: []corev1.Container{{Name: "prepare", Image: "registry.invalid/prepare:1"}},
					Containers:     []corev1.Container{{Name: "agent", Image: "registry.invalid/agent:1"}},
				},
			},
		},
	}
	// The service account controller creates "default" in a new namespace
	// shortly after it; until then the Job controller's pod creation is
	// retried, so no wait is needed here.
	job, err := cs.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{})
	require.NoError(t, err)
	return job
}

func waitJobCondition(t testing.TB, cs kubernetes.Interface, job *batchv1.Job, want batchv1.JobConditionType) {
	t.Helper()
	var last *batchv1.Job
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = j
		for _, c := range j.Status.Conditions {
			if c.Type == want && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "Job %s/%s never reached %s; last status: %+v", job.Namespace, job.Name, want, statusOf(last))
}

func statusOf(j *batchv1.Job) any {
	if j == nil {
		return nil
	}
	return j.Status
}

func waitPodsRunning(t testing.TB, cs kubernetes.Interface, ns string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running >= n, nil
	})
	require.NoError(t, err, "%d pod(s) in %s never ran", n, ns)
}

func onlyPod(t testing.TB, cs kubernetes.Interface, job *batchv1.Job) *corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(job.Namespace).List(t.Context(), metav1.ListOptions{
		LabelSelector: fmt.Sprintf("batch.kubernetes.io/job-name=%s", job.Name),
	})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1, "pods of Job %s/%s", job.Namespace, job.Name)
	return &pods.Items[0]
}

func terminated(t testing.TB, pod *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	require.Len(t, pod.Status.ContainerStatuses, 1)
	state := pod.Status.ContainerStatuses[0].State.Terminated
	require.NotNil(t, state, "container of pod %s terminated: %+v", pod.Name, pod.Status.ContainerStatuses[0].State)
	return state
}
