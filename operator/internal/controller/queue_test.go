package controller_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// tasksByPhase lists an Agent's Tasks by phase, oldest first.
func tasksByPhase(t testing.TB, ns string) map[v1alpha1.TaskPhase][]string {
	t.Helper()
	var list v1alpha1.TaskList
	require.NoError(t, k8s.List(context.Background(), &list, client.InNamespace(ns)))
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	out := map[v1alpha1.TaskPhase][]string{}
	for _, task := range list.Items {
		out[task.Status.Phase] = append(out[task.Status.Phase], task.Name)
	}
	return out
}

func activeJobs(t testing.TB, ns string) int {
	t.Helper()
	var jobs batchv1.JobList
	require.NoError(t, k8s.List(context.Background(), &jobs, client.InNamespace(ns)))
	n := 0
	for _, j := range jobs.Items {
		done := false
		for _, c := range j.Status.Conditions {
			if c.Status == "True" && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
				done = true
			}
		}
		if !done && j.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

// createInOrder creates n Tasks in order. Creation timestamps have a
// resolution of one second and Tasks created in the same second queue by
// name, so the names carry the order too.
func createInOrder(t testing.TB, ns string, n int) []string {
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("task-%02d", i)
		create(t, newTask(ns, name))
		names = append(names, name)
	}
	return names
}

// setLimit changes the default Agent's maxConcurrentTasks as a user would,
// with a patch that does not race the controller's status writes.
func setLimit(t testing.TB, ns string, limit *int32) {
	t.Helper()
	agent := &v1alpha1.Agent{}
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, agent))
	patch := client.MergeFrom(agent.DeepCopy())
	agent.Spec.MaxConcurrentTasks = limit
	require.NoError(t, k8s.Patch(context.Background(), agent, patch))
}

func TestMaxConcurrentTasksIsFIFOAndHandsOffAtOnce(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](2)))
	names := createInOrder(t, ns, 6)

	eventually(t, 20*time.Second, "two running and four queued", func() bool {
		p := tasksByPhase(t, ns)
		return len(p[v1alpha1.TaskPhaseRunning]) == 2 && len(p[v1alpha1.TaskPhaseQueued]) == 4
	})
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 2, activeJobs(t, ns), "never more Jobs than the limit")
	p := tasksByPhase(t, ns)
	assert.Equal(t, names[:2], p[v1alpha1.TaskPhaseRunning], "the oldest Tasks run first")
	queued := getTask(t, ns, names[2])
	c := condition(queued, v1alpha1.TaskConditionQueued)
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonWaitingForSlot, c.Reason)
	assert.Contains(t, c.Message, "runs at most 2 Tasks at once")
	eventually(t, 10*time.Second, "Agent status to show 2 running and 4 queued", func() bool {
		a := &v1alpha1.Agent{}
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default"}, a))
		return a.Status.Running == 2 && a.Status.Queued == 4
	})

	// A finishing Task hands its slot to the next in line, at once.
	start := time.Now()
	finishJob(t, ns, names[0], true, "")
	waitPhase(t, ns, names[2], v1alpha1.TaskPhaseRunning)
	assert.Less(t, time.Since(start), 2*time.Second, "hand-off is event-driven")
	assert.Equal(t, v1alpha1.TaskPhaseQueued, getTask(t, ns, names[3]).Status.Phase)
	assert.Equal(t, 2, activeJobs(t, ns))

	// A failure frees a slot too.
	finishJob(t, ns, names[1], false, batchv1.JobReasonBackoffLimitExceeded)
	waitPhase(t, ns, names[3], v1alpha1.TaskPhaseRunning)
	assert.Equal(t, 2, activeJobs(t, ns))

	// Raising the limit takes effect at once.
	setLimit(t, ns, ptr.To[int32](3))
	waitPhase(t, ns, names[4], v1alpha1.TaskPhaseRunning)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, v1alpha1.TaskPhaseQueued, getTask(t, ns, names[5]).Status.Phase)
	assert.Equal(t, 3, activeJobs(t, ns))

	// Removing it lets everything run.
	setLimit(t, ns, nil)
	waitPhase(t, ns, names[5], v1alpha1.TaskPhaseRunning)
}

func TestLoweringTheLimitStopsAdmissions(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](3)))
	names := createInOrder(t, ns, 5)
	eventually(t, 20*time.Second, "three running", func() bool { return len(tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]) == 3 })

	setLimit(t, ns, ptr.To[int32](1))

	finishJob(t, ns, names[0], true, "")
	finishJob(t, ns, names[1], true, "")
	waitPhase(t, ns, names[1], v1alpha1.TaskPhaseCompleted)
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, v1alpha1.TaskPhaseQueued, getTask(t, ns, names[3]).Status.Phase, "one still runs, so with a limit of 1 nothing new starts")
	finishJob(t, ns, names[2], true, "")
	waitPhase(t, ns, names[3], v1alpha1.TaskPhaseRunning)
	assert.Equal(t, v1alpha1.TaskPhaseQueued, getTask(t, ns, names[4]).Status.Phase)
}

// queueOfOne starts the controller and n Tasks through an Agent with
// maxConcurrentTasks 1, and waits for the first to run and the last to queue.
func queueOfOne(t *testing.T, n int) (ns string, names []string) {
	t.Helper()
	startController(t)
	ns = namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](1)))
	names = createInOrder(t, ns, n)
	waitPhase(t, ns, names[0], v1alpha1.TaskPhaseRunning)
	waitPhase(t, ns, names[n-1], v1alpha1.TaskPhaseQueued)
	return ns, names
}

func TestStop(t *testing.T) {
	ns, names := queueOfOne(t, 3)

	stop := func(name string) {
		task := getTask(t, ns, name)
		patch := client.MergeFrom(task.DeepCopy())
		metav1.SetMetaDataAnnotation(&task.ObjectMeta, v1alpha1.StopAnnotation, "true")
		require.NoError(t, k8s.Patch(context.Background(), task, patch))
	}

	// A queued Task that is stopped never starts.
	stop(names[2])
	task := waitPhase(t, ns, names[2], v1alpha1.TaskPhaseFailed)
	c := condition(task, v1alpha1.TaskConditionStopped)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.Equal(t, v1alpha1.ReasonUserStopped, c.Reason)
	assert.Empty(t, task.Status.JobName)

	// A running Task that is stopped loses its Job and frees its slot.
	stop(names[0])
	task = waitPhase(t, ns, names[0], v1alpha1.TaskPhaseFailed)
	assert.Equal(t, v1alpha1.ReasonUserStopped, condition(task, v1alpha1.TaskConditionStopped).Reason)
	eventually(t, 10*time.Second, "the stopped Task's Job to go", func() bool {
		_, exists := getJob(t, ns, names[0])
		return !exists
	})
	waitPhase(t, ns, names[1], v1alpha1.TaskPhaseRunning)
	time.Sleep(300 * time.Millisecond)
	_, exists := getJob(t, ns, names[2])
	assert.False(t, exists, "the stopped queued Task never got a Job")
}

// TestRestartKeepsOneJobPerTask restarts the controller while Tasks queue and
// run: no Task gets a second Job and the limit holds across the restart.
func TestRestartKeepsOneJobPerTask(t *testing.T) {
	ns := namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](2)))
	names := createInOrder(t, ns, 5)

	for round := 0; round < 3; round++ {
		func() {
			stop := startController(t)
			defer stop()
			eventually(t, 20*time.Second, "two running", func() bool {
				return len(tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]) == 2
			})
			assert.Equal(t, 2, activeJobs(t, ns))
			running := tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]
			finishJob(t, ns, running[0], true, "")
			waitPhase(t, ns, running[0], v1alpha1.TaskPhaseCompleted)
		}()
	}
	startController(t)
	eventually(t, 20*time.Second, "two running after the last restart", func() bool {
		return len(tasksByPhase(t, ns)[v1alpha1.TaskPhaseRunning]) == 2
	})
	time.Sleep(300 * time.Millisecond)
	var jobs batchv1.JobList
	require.NoError(t, k8s.List(context.Background(), &jobs, client.InNamespace(ns)))
	perTask := map[string]int{}
	for _, j := range jobs.Items {
		perTask[j.Annotations["kubeopencode.io/task-name"]]++
	}
	for _, n := range names {
		assert.LessOrEqual(t, perTask[n], 1, "Task %s has one Job at most", n)
	}
	assert.Equal(t, 2, activeJobs(t, ns))
}

// A Task's slot goes to the next Task as soon as its Job finishes, before
// its own end is recorded; but the next Task says Running only once it is,
// so no more Tasks than the limit ever say Running. An admission policy holds
// the first Task's end back to show both halves.
func TestFinishedJobHandsOnItsSlotBeforeItsTaskEnds(t *testing.T) {
	ns, names := queueOfOne(t, 2)

	holdEnd := holdTaskEnd(t, ns, names[0])
	finishJob(t, ns, names[0], true, "")
	eventually(t, 10*time.Second, "the next Task's Job to be created once the first Job finished", func() bool {
		_, ok := getJob(t, ns, names[1])
		return ok
	})
	for range 10 {
		assert.Equal(t, v1alpha1.TaskPhaseRunning, getTask(t, ns, names[0]).Status.Phase, "the first Task's end is held back")
		assert.Equal(t, v1alpha1.TaskPhaseQueued, getTask(t, ns, names[1]).Status.Phase, "the next Task may not say Running while the first still does")
		time.Sleep(100 * time.Millisecond)
	}

	holdEnd()
	waitPhase(t, ns, names[0], v1alpha1.TaskPhaseCompleted)
	waitPhase(t, ns, names[1], v1alpha1.TaskPhaseRunning)
}

// holdTaskEnd makes the API server refuse to record the Task's end, with a
// ValidatingAdmissionPolicy, until the returned function is called.
func holdTaskEnd(t *testing.T, ns, name string) (release func()) {
	t.Helper()
	ctx := context.Background()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "hold-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{v1alpha1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"tasks/status"}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.name != %q || !has(object.status.phase) || !(object.status.phase in ['Completed', 'Failed'])", name),
				Message:    "held back by the test",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hold-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
			}},
		},
	}
	require.NoError(t, k8s.Create(ctx, policy))
	require.NoError(t, k8s.Create(ctx, binding))
	release = func() {
		_ = k8s.Delete(ctx, binding)
		_ = k8s.Delete(ctx, policy)
	}
	t.Cleanup(release)
	// The API server takes a moment to load a new policy: wait until it
	// refuses a dry run of the write it is to hold back.
	eventually(t, 20*time.Second, "the admission policy to take effect", func() bool {
		task := getTask(t, ns, name)
		patch := client.MergeFrom(task.DeepCopy())
		task.Status.Phase = v1alpha1.TaskPhaseCompleted
		return k8s.Status().Patch(ctx, task, patch, client.DryRunAll) != nil
	})
	return release
}

// A Task that waits for something it needs (here a ConfigMap) is not in the
// queue: younger Tasks take the free slots meanwhile, and it queues in its
// turn once it can run.
func TestPendingTaskDoesNotHoldUpTheQueue(t *testing.T) {
	startController(t)
	ns := namespace(t)
	create(t, newAgent(ns, "default", ptr.To[int32](1)))
	create(t, newTask(ns, "a-first"))
	waitPhase(t, ns, "a-first", v1alpha1.TaskPhaseRunning)
	blocked := newTask(ns, "b-needs-guide")
	blocked.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeConfigMap, MountPath: "guide.md", ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide", Key: "guide.md"}}}
	create(t, blocked)
	waitPhase(t, ns, "b-needs-guide", v1alpha1.TaskPhasePending)
	create(t, newTask(ns, "c-third"))
	waitPhase(t, ns, "c-third", v1alpha1.TaskPhaseQueued)

	finishJob(t, ns, "a-first", true, "")
	waitPhase(t, ns, "c-third", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, v1alpha1.TaskPhasePending, getTask(t, ns, "b-needs-guide").Status.Phase)

	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guide"}, Data: map[string]string{"guide.md": "Read me."}})
	waitPhase(t, ns, "b-needs-guide", v1alpha1.TaskPhaseQueued)
	finishJob(t, ns, "c-third", true, "")
	waitPhase(t, ns, "b-needs-guide", v1alpha1.TaskPhaseRunning)
}
