package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

func TestTaskRunsToCompletion(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "hello"))

	task := waitPhase(t, ns, "hello", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, "hello", task.Status.JobName)
	assert.Equal(t, "default", task.Status.Agent)
	assert.NotNil(t, task.Status.StartTime)
	require.NotNil(t, task.Status.Images)
	assert.Equal(t, gitInitImage, task.Status.Images.GitInit)
	assert.Equal(t, contextInitImage, task.Status.Images.ContextInit)
	assert.Equal(t, metav1.ConditionTrue, condition(task, v1alpha1.TaskConditionReady).Status)

	job, ok := getJob(t, ns, "hello")
	require.True(t, ok)
	assert.True(t, metav1.IsControlledBy(job, task), "the Job belongs to the Task, so deleting the Task deletes it")
	assert.Contains(t, job.Spec.Template.Annotations[jobbuilder.AnnotationContextPlan], "Do the thing.", "a small context travels inside the Job")

	eventually(t, 10*time.Second, "Agent status to count the running Task", func() bool {
		a := &v1alpha1.Agent{}
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, a))
		return a.Status.Running == 1
	})

	finishJob(t, ns, "hello", true, "")
	task = waitPhase(t, ns, "hello", v1alpha1.TaskPhaseCompleted)
	assert.NotNil(t, task.Status.CompletionTime)
	require.NotNil(t, task.Status.ExitCode)
	assert.Equal(t, int32(0), *task.Status.ExitCode)
	assert.Equal(t, v1alpha1.ReasonCompleted, condition(task, v1alpha1.TaskConditionSucceeded).Reason)

	eventually(t, 10*time.Second, "an event for the start and the end", func() bool {
		var evs eventsv1.EventList
		require.NoError(t, k8s.List(context.Background(), &evs, client.InNamespace(ns)))
		reasons := map[string]bool{}
		for _, e := range evs.Items {
			if e.Regarding.Name == "hello" {
				reasons[e.Reason] = true
			}
		}
		return reasons["Started"] && reasons[v1alpha1.ReasonCompleted]
	})
}

func TestTaskWaitsForItsAgent(t *testing.T) {
	startController(t)
	ns := namespace(t)
	task := newTask(ns, "early")
	task.Spec.AgentRef = "reviewer"
	create(t, task)

	got := waitPhase(t, ns, "early", v1alpha1.TaskPhasePending)
	c := condition(got, v1alpha1.TaskConditionReady)
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonAgentNotFound, c.Reason)
	assert.Contains(t, c.Message, `Agent "reviewer" does not exist`)
	_, exists := getJob(t, ns, "early")
	assert.False(t, exists)

	start := time.Now()
	create(t, newAgent(ns, "reviewer", nil))
	waitPhase(t, ns, "early", v1alpha1.TaskPhaseRunning)
	assert.Less(t, time.Since(start), 3*time.Second, "the Task starts as soon as its Agent appears, not on a timer")
}

func TestConfigMapContexts(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))

	needs := newTask(ns, "needs-guide")
	needs.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeConfigMap, MountPath: "guide.md", ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide", Key: "guide.md"}}}
	optional := newTask(ns, "optional-guide")
	optional.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeConfigMap, MountPath: "guide.md", ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide", Key: "guide.md", Optional: ptr.To(true)}}}
	create(t, needs, optional)

	waitPhase(t, ns, "optional-guide", v1alpha1.TaskPhaseRunning)
	got := waitPhase(t, ns, "needs-guide", v1alpha1.TaskPhasePending)
	assert.Equal(t, v1alpha1.ReasonConfigMapNotFound, condition(got, v1alpha1.TaskConditionReady).Reason)
	assert.Contains(t, condition(got, v1alpha1.TaskConditionReady).Message, `ConfigMap "guide" does not exist`)

	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "guide", Namespace: ns}, Data: map[string]string{"other.md": "x"}})
	eventually(t, 15*time.Second, "the missing key to be reported", func() bool {
		c := condition(getTask(t, ns, "needs-guide"), v1alpha1.TaskConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonConfigMapKeyNotFound && strings.Contains(c.Message, `no key "guide.md"`)
	})

	cm := &corev1.ConfigMap{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "guide"}, cm))
	cm.Data["guide.md"] = "Be kind."
	require.NoError(t, k8s.Update(context.Background(), cm))
	waitPhase(t, ns, "needs-guide", v1alpha1.TaskPhaseRunning)
	job, ok := getJob(t, ns, "needs-guide")
	require.True(t, ok)
	assert.Contains(t, job.Spec.Template.Annotations[jobbuilder.AnnotationContextPlan], `"content":"Be kind."`, "the ConfigMap's value is what context-init writes")
}

func TestLargeContextTravelsInAnOwnedConfigMap(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	task := newTask(ns, "large")
	task.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeText, MountPath: "big.txt", Text: ptr.To(strings.Repeat("z", jobbuilder.MaxInlineContextBytes))}}
	create(t, task)
	got := waitPhase(t, ns, "large", v1alpha1.TaskPhaseRunning)
	cm := &corev1.ConfigMap{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "large-context"}, cm))
	assert.True(t, metav1.IsControlledBy(cm, got), "deleting the Task deletes its context")
	assert.True(t, *cm.Immutable)
	assert.Contains(t, cm.Data, "context-plan.json")
}

func TestFailureReasons(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))

	cases := []struct {
		name       string
		jobReason  string
		status     corev1.PodStatus
		wantReason string
		wantMsg    string
		wantCode   *int32
		wantRepos  []v1alpha1.RepositoryStatus
	}{
		{
			name: "agent-exit-3", jobReason: batchv1.JobReasonBackoffLimitExceeded,
			status: corev1.PodStatus{Phase: corev1.PodFailed,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "context-init", State: terminated(0, "Completed", `{}`)}},
				ContainerStatuses:     []corev1.ContainerStatus{{Name: "agent", State: terminated(3, "Error", "line one\nmodel quota exhausted")}}},
			wantReason: v1alpha1.ReasonAgentFailed, wantMsg: "exited with code 3: line one | model quota exhausted", wantCode: ptr.To[int32](3),
		},
		{
			name: "agent-fails-after-a-clone", jobReason: batchv1.JobReasonBackoffLimitExceeded,
			status: corev1.PodStatus{Phase: corev1.PodFailed,
				InitContainerStatuses: []corev1.ContainerStatus{
					{Name: "context-init", State: terminated(0, "Completed", `{}`)},
					{Name: "git-init-0", State: terminated(0, "Completed", `{"commit":"0123456789abcdef0123456789abcdef01234567","repository":"https://git.example/app.git"}`)},
				},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", State: terminated(1, "Error", "tests failed")}}},
			wantReason: v1alpha1.ReasonAgentFailed, wantMsg: "exited with code 1: tests failed", wantCode: ptr.To[int32](1),
			wantRepos: []v1alpha1.RepositoryStatus{{MountPath: "/workspace/app", Repository: "https://git.example/app.git", Commit: "0123456789abcdef0123456789abcdef01234567"}},
		},
		{
			name: "oom", jobReason: batchv1.JobReasonBackoffLimitExceeded,
			status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", State: terminated(137, "OOMKilled", "")}}},
			wantReason: v1alpha1.ReasonOOMKilled, wantMsg: "more memory than its limit", wantCode: ptr.To[int32](137),
		},
		{
			name: "git-auth", jobReason: batchv1.JobReasonBackoffLimitExceeded,
			status: corev1.PodStatus{Phase: corev1.PodFailed,
				InitContainerStatuses: []corev1.ContainerStatus{
					{Name: "context-init", State: terminated(0, "Completed", `{}`)},
					{Name: "git-init-0", State: terminated(1, "Error", `{"error":"authentication to https://git.example/r.git failed: check the username and password in Secret \"git\""}`)}}},
			wantReason: v1alpha1.ReasonInitFailed, wantMsg: `Init container git-init-0 failed: authentication to https://git.example/r.git failed`,
		},
		{
			name: "contract", jobReason: batchv1.JobReasonBackoffLimitExceeded,
			status: corev1.PodStatus{Phase: corev1.PodFailed,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "context-init", State: terminated(2, "Error", `{"error":"plan version \"kubeopencode.io/workspace/v1\" is not supported (this image understands \"kubeopencode.io/workspace/v2\")"}`)}}},
			wantReason: v1alpha1.ReasonContractMismatch, wantMsg: "is not supported",
		},
		{
			name: "deadline", jobReason: batchv1.JobReasonDeadlineExceeded,
			wantReason: v1alpha1.ReasonDeadlineExceeded, wantMsg: "timeout",
		},
	}
	for _, tc := range cases {
		task := newTask(ns, tc.name)
		if tc.wantRepos != nil {
			task.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeGit, MountPath: "app", Git: &v1alpha1.GitContext{Repository: "https://git.example/app.git"}}}
		}
		create(t, task)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			waitPhase(t, ns, tc.name, v1alpha1.TaskPhaseRunning)
			if tc.status.Phase != "" {
				podFor(t, ns, tc.name, tc.status)
			}
			finishJob(t, ns, tc.name, false, tc.jobReason)
			task := waitPhase(t, ns, tc.name, v1alpha1.TaskPhaseFailed)
			c := condition(task, v1alpha1.TaskConditionSucceeded)
			require.NotNil(t, c)
			assert.Equal(t, metav1.ConditionFalse, c.Status)
			assert.Equal(t, tc.wantReason, c.Reason)
			assert.Contains(t, c.Message, tc.wantMsg)
			assert.Equal(t, tc.wantCode, task.Status.ExitCode)
			assert.Equal(t, tc.wantRepos, task.Status.Repositories, "the commit each Git context checked out, where the agent saw it")
			assert.NotNil(t, task.Status.CompletionTime)
		})
	}
}

func TestPodsThatCannotStart(t *testing.T) {
	startController(t) // StuckPodTimeout is 2s in tests
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	waiting := func(container, reason, message string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: container, Image: "registry.example/agents/echo:v1",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
		}}}
	}
	cases := []struct {
		name       string
		status     corev1.PodStatus
		wantReason string
		wantMsg    string
	}{
		{"missing-secret", waiting("agent", "CreateContainerConfigError", `secret "llm" not found`), v1alpha1.ReasonSecretNotFound, `secret "llm" not found`},
		{"missing-key", waiting("agent", "CreateContainerConfigError", `couldn't find key api-key in Secret t/llm`), v1alpha1.ReasonSecretKeyNotFound, "couldn't find key api-key"},
		{"bad-pull", waiting("agent", "ImagePullBackOff", `Back-off pulling image "registry.example/agents/echo:v1"`), v1alpha1.ReasonImagePullFailed, "cannot pull image"},
		{"secret-volume", corev1.PodStatus{Phase: corev1.PodPending,
			Conditions:            []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "context-init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
		}, v1alpha1.ReasonPodNotStarting, "has not started (container context-init is PodInitializing)"},
		{"unschedulable", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient memory."}}}, v1alpha1.ReasonUnschedulable, "Insufficient memory"},
	}
	for _, tc := range cases {
		create(t, newTask(ns, tc.name))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			waitPhase(t, ns, tc.name, v1alpha1.TaskPhaseRunning)
			podFor(t, ns, tc.name, tc.status)
			task := waitPhase(t, ns, tc.name, v1alpha1.TaskPhaseFailed)
			c := condition(task, v1alpha1.TaskConditionSucceeded)
			assert.Equal(t, tc.wantReason, c.Reason)
			assert.Contains(t, c.Message, tc.wantMsg)
			_, exists := getJob(t, ns, tc.name)
			assert.False(t, exists, "the stuck Job is removed, freeing its slot")
		})
	}
}

func TestJobDeletedBehindTheControllersBack(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "orphan"))
	waitPhase(t, ns, "orphan", v1alpha1.TaskPhaseRunning)
	job, _ := getJob(t, ns, "orphan")
	require.NoError(t, k8s.Delete(context.Background(), job, client.PropagationPolicy(metav1.DeletePropagationBackground)))
	task := waitPhase(t, ns, "orphan", v1alpha1.TaskPhaseFailed)
	assert.Equal(t, v1alpha1.ReasonJobDeleted, condition(task, v1alpha1.TaskConditionSucceeded).Reason)
}

func TestForeignJobIsNotAdopted(t *testing.T) {
	startController(t)
	ns := namespace(t)
	foreign := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns, Labels: map[string]string{"app": "other"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		}}},
	}
	create(t, foreign, newAgent(ns, "default", nil), newTask(ns, "taken"))
	task := waitPhase(t, ns, "taken", v1alpha1.TaskPhaseFailed)
	c := condition(task, v1alpha1.TaskConditionSucceeded)
	assert.Equal(t, v1alpha1.ReasonJobNameConflict, c.Reason)
	assert.Contains(t, c.Message, `a Job named "taken" already exists and does not belong to this Task`)
	job, _ := getJob(t, ns, "taken")
	assert.Empty(t, job.OwnerReferences, "the foreign Job is left alone")
}

func TestInvalidContextsFailTheTask(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	clash := newTask(ns, "clash")
	clash.Spec.Contexts = []v1alpha1.ContextItem{
		{Type: v1alpha1.ContextTypeText, Text: ptr.To("a"), MountPath: "notes.md"},
		{Type: v1alpha1.ContextTypeText, Text: ptr.To("b"), MountPath: "/workspace/notes.md"},
	}
	huge := newTask(ns, "huge")
	huge.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeText, Text: ptr.To(strings.Repeat("x", jobbuilder.MaxContextBytes+1))}}
	create(t, clash, huge)

	task := waitPhase(t, ns, "clash", v1alpha1.TaskPhaseFailed)
	c := condition(task, v1alpha1.TaskConditionReady)
	assert.Equal(t, v1alpha1.ReasonInvalidContexts, c.Reason)
	assert.Contains(t, c.Message, "both write /workspace/notes.md")
	task = waitPhase(t, ns, "huge", v1alpha1.TaskPhaseFailed)
	assert.Equal(t, v1alpha1.ReasonContextTooLarge, condition(task, v1alpha1.TaskConditionReady).Reason)
	for _, n := range []string{"clash", "huge"} {
		_, exists := getJob(t, ns, n)
		assert.False(t, exists)
	}
}

func TestLongAndGeneratedNames(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", nil))
	long := newTask(ns, strings.Repeat("very-long-task-name.", 12)+"end")
	gen := newTask(ns, "")
	gen.GenerateName = "pr-opened-"
	create(t, long, gen)
	for _, name := range []string{long.Name, gen.Name} {
		task := waitPhase(t, ns, name, v1alpha1.TaskPhaseRunning)
		job, ok := getJob(t, ns, task.Status.JobName)
		require.True(t, ok)
		assert.True(t, metav1.IsControlledBy(job, task))
	}
}

func TestTaskWaitsForTheServiceAccount(t *testing.T) {
	startController(t)
	ns := namespace(t)
	agent := newAgent(ns, "default", nil)
	agent.Spec.ServiceAccountName = "reviewer-bot"
	create(t, agent, newTask(ns, "needs-sa"))

	task := waitPhase(t, ns, "needs-sa", v1alpha1.TaskPhasePending)
	c := condition(task, v1alpha1.TaskConditionReady)
	assert.Equal(t, v1alpha1.ReasonServiceAccountNotFound, c.Reason)
	assert.Contains(t, c.Message, `ServiceAccount "reviewer-bot"`)
	eventually(t, 10*time.Second, "the Agent to report the missing ServiceAccount", func() bool {
		a := &v1alpha1.Agent{}
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, a))
		ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.AgentConditionReady)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == v1alpha1.ReasonServiceAccountNotFound
	})

	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reviewer-bot", Namespace: ns}})
	waitPhase(t, ns, "needs-sa", v1alpha1.TaskPhaseRunning)
	eventually(t, 10*time.Second, "the Agent to become Ready", func() bool {
		a := &v1alpha1.Agent{}
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, a))
		ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.AgentConditionReady)
		return ready != nil && ready.Status == metav1.ConditionTrue
	})
}

// TestRestrictedNamespaces runs Tasks in a namespace that enforces the
// PodSecurity "restricted" profile: the Job's pod as built passes it, and an
// Agent that asks for more gets a Task that fails with the API server's own
// reason instead of a Job that never gets a pod.
func TestRestrictedNamespaces(t *testing.T) {
	startController(t, func(o *controller.Options) { o.PodCreateGrace = time.Second })
	ns := namespace(t)
	nsObj := &corev1.Namespace{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Name: ns}, nsObj))
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	require.NoError(t, k8s.Update(context.Background(), nsObj))

	create(t, newAgent(ns, "default", nil))
	privileged := newAgent(ns, "privileged", nil)
	privileged.Spec.PodSpec = &v1alpha1.AgentPodSpec{SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true), AllowPrivilegeEscalation: ptr.To(true)}}
	create(t, privileged)
	ok := newTask(ns, "restricted-ok")
	ok.Spec.Contexts = []v1alpha1.ContextItem{
		{Type: v1alpha1.ContextTypeGit, MountPath: "repo", Git: &v1alpha1.GitContext{Repository: "https://git.example/r.git", SecretRef: &v1alpha1.LocalSecretReference{Name: "git"}}},
		{Type: v1alpha1.ContextTypeText, Text: ptr.To("x"), MountPath: "/etc/app/x.conf"},
	}
	bad := newTask(ns, "asks-for-more")
	bad.Spec.AgentRef = "privileged"
	create(t, ok, bad)

	task := waitPhase(t, ns, "asks-for-more", v1alpha1.TaskPhaseFailed)
	c := condition(task, v1alpha1.TaskConditionSucceeded)
	assert.Equal(t, v1alpha1.ReasonPodRejected, c.Reason)
	assert.Contains(t, c.Message, `violates PodSecurity "restricted`)
	assert.Contains(t, c.Message, "privileged")

	waitPhase(t, ns, "restricted-ok", v1alpha1.TaskPhaseRunning)
	job, _ := getJob(t, ns, "restricted-ok")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns},
		Spec:       job.Spec.Template.Spec,
	}
	assert.NoError(t, k8s.Create(context.Background(), pod, client.DryRunAll), "the Job's pod passes PodSecurity restricted")
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, v1alpha1.TaskPhaseRunning, getTask(t, ns, "restricted-ok").Status.Phase, "an admissible pod is left to the Job controller")
}
