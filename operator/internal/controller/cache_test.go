package controller

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// A pull request review as a Sensor creates it: a long prompt, a Git
// context, labels and annotations from the webhook.
func sensorTask() *v1alpha1.Task {
	return &v1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{
			Name: "pr-review-x7k2p", Namespace: "github", UID: "6f1c9a52-1c4e-4f0e-9d55-0c3a1e5b7a10", ResourceVersion: "48213",
			CreationTimestamp: metav1.Now(),
			Labels:            map[string]string{"app.kubernetes.io/managed-by": "argo-events", "kubeopencode.io/pull-request": "1234"},
			Annotations: map[string]string{
				"kubeopencode.io/github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
				"kubeopencode.io/github-url":      "https://github.com/acme/app/pull/1234",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "argo-events", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: v1alpha1.TaskSpec{
			Description: ptr.To(strings.Repeat("Review the changes for correctness, security and maintainability. ", 120)),
			Contexts: []v1alpha1.ContextItem{{Name: "source", Type: v1alpha1.ContextTypeGit, MountPath: "repo",
				Git: &v1alpha1.GitContext{Repository: "https://github.com/acme/app.git", Ref: "0123456789abcdef0123456789abcdef01234567"}}},
			Timeout:                 &metav1.Duration{Duration: 3600e9},
			TTLSecondsAfterFinished: ptr.To[int32](604800),
		},
	}
}

func builtJob(t *testing.T, task *v1alpha1.Task) *batchv1.Job {
	agent := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: task.Namespace},
		Spec: v1alpha1.AgentSpec{AgentImage: "registry.example/agent@sha256:3333333333333333333333333333333333333333333333333333333333333333",
			Command: []string{"sh", "-c", "opencode run"}, ServiceAccountName: "agent"}}
	out, err := jobbuilder.Build(jobbuilder.Input{Task: task, Agent: agent,
		Images: jobbuilder.Images{GitInit: "registry.example/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111",
			ContextInit: "registry.example/context-init@sha256:2222222222222222222222222222222222222222222222222222222222222222"}})
	require.NoError(t, err)
	return out.Job
}

func jsonSize(t *testing.T, o any) int {
	raw, err := json.Marshal(o)
	require.NoError(t, err)
	return len(raw)
}

func slim[T any](t *testing.T, f func(any) (any, error), o T) T {
	out, err := f(o)
	require.NoError(t, err)
	again, err := f(out)
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(out, again), "a transform applied twice changes nothing more")
	return out.(T)
}

// TestFinishedTaskKeepsOnlyWhatRetentionReads: a finished Task in the cache
// keeps its identity, Agent, phase, completion time and time to live, and
// nothing of its prompt; a Task still in flight is kept whole.
func TestFinishedTaskKeepsOnlyWhatRetentionReads(t *testing.T) {
	open := sensorTask()
	open.Status.Phase = v1alpha1.TaskPhaseRunning
	kept := slim(t, slimTask, open.DeepCopy())
	open.ManagedFields = nil
	assert.Empty(t, cmp.Diff(open, kept), "a Task in flight loses only its managedFields")

	done := sensorTask()
	now := metav1.Now()
	done.Status = v1alpha1.TaskStatus{Phase: v1alpha1.TaskPhaseCompleted, Agent: "default", JobName: done.Name, CompletionTime: &now,
		StartTime: &now, Images: &v1alpha1.TaskImages{GitInit: "g", ContextInit: "c"},
		Conditions: []metav1.Condition{{Type: v1alpha1.TaskConditionSucceeded, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonCompleted, Message: "The agent exited with code 0."}}}
	s := slim(t, slimTask, done.DeepCopy())
	assert.Equal(t, done.UID, s.UID)
	assert.Equal(t, done.Spec.TTLSecondsAfterFinished, s.Spec.TTLSecondsAfterFinished)
	assert.Equal(t, done.AgentName(), s.AgentName())
	assert.Equal(t, done.Status.Phase, s.Status.Phase)
	assert.Equal(t, done.Status.CompletionTime, s.Status.CompletionTime)
	assert.Nil(t, s.Spec.Description)
	assert.Nil(t, s.Spec.Contexts)
	assert.Nil(t, s.Labels)
	assert.Nil(t, s.Annotations)
	t.Logf("finished Task as JSON: %d bytes, in the cache: %d", jsonSize(t, done), jsonSize(t, s))
	assert.Less(t, jsonSize(t, s), 600)
}

// TestSlimJobAndPodDecideTheSame: every decision the controller takes from
// a Job and its pod (the outcome, the commits checked out, a pod that
// cannot start) comes out the same from the cache's slim copies as from
// the objects the API server holds.
func TestSlimJobAndPodDecideTheSame(t *testing.T) {
	task := sensorTask()
	job := builtJob(t, task)
	now := metav1.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-abcde", Namespace: job.Namespace, CreationTimestamp: now,
			Labels: job.Spec.Template.Labels, Annotations: job.Spec.Template.Annotations},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	terminated := func(code int32, reason, msg string) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}
	}
	statuses := map[string]corev1.PodStatus{
		"agent failed after a clone": {Phase: corev1.PodFailed,
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: jobbuilder.ContextInitContainer, State: terminated(0, "Completed", `{}`), ImageID: "sha256:aa", ContainerID: "containerd://1"},
				{Name: "git-init-0", State: terminated(0, "Completed", `{"commit":"0123456789abcdef0123456789abcdef01234567","repository":"https://github.com/acme/app.git"}`)}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: jobbuilder.AgentContainer, State: terminated(2, "Error", "lint failed")}}},
		"oom": {Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: jobbuilder.AgentContainer, State: terminated(137, "OOMKilled", "")}}},
		"image pull": {Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: jobbuilder.AgentContainer, Image: "registry.example/agent:x",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}}}}},
		"stuck creating": {Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: jobbuilder.ContextInitContainer, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}},
		"unschedulable": {Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available"}}},
	}
	conditions := map[string][]batchv1.JobCondition{
		"running":  nil,
		"complete": {{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue}, {Type: batchv1.JobComplete, Status: corev1.ConditionTrue}},
		"failed":   {{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded}, {Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: "Job has reached the specified backoff limit"}},
		"deadline": {{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded}},
	}
	for pname, ps := range statuses {
		for jname, conds := range conditions {
			fullJob, fullPod := job.DeepCopy(), pod.DeepCopy()
			fullJob.Status.Conditions, fullPod.Status = conds, ps
			slimJ, slimP := slim(t, slimJob, fullJob.DeepCopy()), slim(t, slimPod, fullPod.DeepCopy())
			want, got := jobOutcome(fullJob, []corev1.Pod{*fullPod}), jobOutcome(slimJ, []corev1.Pod{*slimP})
			want.pod, got.pod = nil, nil // the pod itself differs by design; what is read from it must not
			assert.Empty(t, cmp.Diff(want, got, cmp.AllowUnexported(outcome{})), "outcome of a %s Job whose pod is %s", jname, pname)
			assert.Equal(t, podTrouble(fullPod), podTrouble(slimP), "trouble of a pod that is %s", pname)
			assert.Equal(t, jobFinished(fullJob), jobFinished(slimJ))
			assert.True(t, metav1.IsControlledBy(slimJ, task) == metav1.IsControlledBy(fullJob, task))
			assert.Equal(t, fullJob.Labels, slimJ.Labels)
			assert.Equal(t, fullPod.Labels, slimP.Labels, "the pods are listed by label from the cache")
			assert.Equal(t, fullPod.Annotations[jobbuilder.AnnotationTaskName], slimP.Annotations[jobbuilder.AnnotationTaskName])
		}
	}
	// The git-init mount path really was read from the slim pod.
	ps := statuses["agent failed after a clone"]
	p := pod.DeepCopy()
	p.Status = ps
	repos := repositories(slim(t, slimPod, p))
	require.Len(t, repos, 1)
	assert.Equal(t, "/workspace/repo", repos[0].MountPath)

	full, cached := jsonSize(t, job), jsonSize(t, slim(t, slimJob, job.DeepCopy()))
	t.Logf("Job as JSON: %d bytes, in the cache: %d", full, cached)
	assert.NotContains(t, string(mustJSON(t, slim(t, slimJob, job.DeepCopy()))), "Review the changes", "the prompt is not kept")
	assert.NotContains(t, string(mustJSON(t, slim(t, slimPod, pod.DeepCopy()))), "Review the changes", "the context plan is not kept")
	assert.Less(t, cached, 1000)
}

func mustJSON(t *testing.T, o any) []byte {
	raw, err := json.Marshal(o)
	require.NoError(t, err)
	return raw
}
