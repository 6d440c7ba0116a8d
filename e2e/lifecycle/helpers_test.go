package lifecycle_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// Labels and annotations the controller puts on a Task's Job and pods: the
// contract users select them by.
const (
	labelTaskUID      = "kubeopencode.io/task-uid"
	annotationTask    = "kubeopencode.io/task-name"
	serviceAccount    = "agent"
	defaultWaitPeriod = 250 * time.Millisecond
)

var nsCounter atomic.Int32

// namespace creates a namespace of the test's own, with the ServiceAccount
// the Agents run as, and deletes it when the test ends.
func namespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s-%d", prefix, nsCounter.Add(1))
	require.NoError(t, env.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	require.NoError(t, env.k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: name}}))
	t.Cleanup(func() {
		// Deleting is enough: the cluster goes away with the package.
		_ = env.k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
	return name
}

// newAgent returns an Agent whose pods carry podAnnotations, which is how a
// test tells kwok how a pod ends. limit 0 means no limit.
func newAgent(ns, name string, limit int32, podAnnotations map[string]string) *v1alpha1.Agent {
	a := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.AgentSpec{
			AgentImage:         agentImage,
			Command:            []string{"sh", "-c", `agent run "$(cat "$TASK_FILE")"`},
			ServiceAccountName: serviceAccount,
		},
	}
	if limit > 0 {
		a.Spec.MaxConcurrentTasks = ptr.To(limit)
	}
	if len(podAnnotations) > 0 {
		a.Spec.PodSpec = &v1alpha1.AgentPodSpec{Annotations: podAnnotations}
	}
	return a
}

func newTask(ns, name, agent string) *v1alpha1.Task {
	return &v1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.TaskSpec{
			AgentRef:    agent,
			Description: ptr.To("Fix the failing test in pkg/" + name + "."),
		},
	}
}

func create(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		require.NoError(t, env.k8s.Create(context.Background(), o), "creating %T %s", o, o.GetName())
	}
}

func getTask(t testing.TB, ns, name string) *v1alpha1.Task {
	t.Helper()
	task := &v1alpha1.Task{}
	require.NoError(t, env.k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, task))
	return task
}

// waitTask polls the Task until cond holds, failing with the Task's status
// when it does not within timeout.
func waitTask(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(*v1alpha1.Task) bool) *v1alpha1.Task {
	t.Helper()
	var last *v1alpha1.Task
	err := wait.PollUntilContextTimeout(context.Background(), defaultWaitPeriod, timeout, true, func(ctx context.Context) (bool, error) {
		task := &v1alpha1.Task{}
		if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, task); err != nil {
			return false, nil
		}
		last = task
		return cond(task), nil
	})
	if err != nil {
		t.Fatalf("Task %s/%s: %s not reached within %s; last status:\n%s", ns, name, what, timeout, dump(last))
	}
	return last
}

func waitPhase(t testing.TB, ns, name string, phase v1alpha1.TaskPhase, timeout time.Duration) *v1alpha1.Task {
	t.Helper()
	return waitTask(t, ns, name, timeout, "phase "+string(phase), func(task *v1alpha1.Task) bool {
		return task.Status.Phase == phase
	})
}

// waitGone polls until get reports the object missing.
func waitGone(t testing.TB, timeout time.Duration, what string, exists func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), defaultWaitPeriod, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := exists(ctx)
		return err == nil && !ok, nil
	})
	require.NoError(t, err, "%s still exists after %s", what, timeout)
}

// podsOf lists the pods of a Task by the label the controller sets.
func podsOf(ctx context.Context, task *v1alpha1.Task) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := env.k8s.List(ctx, &pods, client.InNamespace(task.Namespace), client.MatchingLabels{labelTaskUID: string(task.UID)})
	return pods.Items, err
}

// waitPodRunning waits until the Task has a Running pod on a fake node.
func waitPodRunning(t testing.TB, task *v1alpha1.Task, timeout time.Duration) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), defaultWaitPeriod, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := podsOf(ctx, task)
		if err != nil {
			return false, nil
		}
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				pod = p
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "Task %s/%s has no Running pod after %s", task.Namespace, task.Name, timeout)
	return pod
}

func condition(task *v1alpha1.Task, typ string) *metav1.Condition {
	return meta.FindStatusCondition(task.Status.Conditions, typ)
}

func dump(o any) string {
	if o == nil {
		return "<none>"
	}
	out, err := yaml.Marshal(o)
	if err != nil {
		return fmt.Sprint(o)
	}
	return string(out)
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return true
		}
	}
	return false
}

// observer watches the Jobs and Tasks of one namespace for the whole test
// and checks, after every event and in the API server's order, what must
// hold at every moment: no more than limit active Jobs (neither finished
// nor being deleted), no more than limit Running Tasks, every Job owned by
// exactly one Task, no Task with a second Job.
type observer struct {
	limit int

	mu         sync.Mutex
	activeJobs map[types.UID]string             // Job UID -> Task name, while active
	jobsOfTask map[types.UID]map[types.UID]bool // Task UID -> Job UIDs ever seen
	jobOrder   []string                         // Task names in the order their Jobs appeared
	hadJob     map[string]bool                  // Task name -> has had a Job
	running    map[string]bool                  // Task names Running now
	phases     map[string]v1alpha1.TaskPhase    // last phase seen per Task
	maxActive  int
	maxRunning int
	violations []string
	onJobAdded func(task string, o *observer) // called under mu
	// When the watch saw each Task's Job appear and finish.
	jobAddedAt, jobDoneAt map[string]time.Time
	watchErrors           []error
}

// observe starts watching ns; call it before creating the Tasks. Watching
// stops when the test ends.
func observe(t testing.TB, ns string, limit int) *observer {
	t.Helper()
	o := &observer{
		limit:      limit,
		activeJobs: map[types.UID]string{},
		jobsOfTask: map[types.UID]map[types.UID]bool{},
		hadJob:     map[string]bool{},
		running:    map[string]bool{},
		phases:     map[string]v1alpha1.TaskPhase{},
		jobAddedAt: map[string]time.Time{},
		jobDoneAt:  map[string]time.Time{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	var jobs batchv1.JobList
	require.NoError(t, env.k8s.List(ctx, &jobs, client.InNamespace(ns)))
	var tasks v1alpha1.TaskList
	require.NoError(t, env.k8s.List(ctx, &tasks, client.InNamespace(ns)))
	require.Empty(t, jobs.Items, "observe before the controller creates Jobs")
	require.Empty(t, tasks.Items, "observe before creating Tasks")

	// RetryWatcher resumes from the last resource version after the API
	// server closes a watch, so no event is missed in a long test.
	jobWatch, err := watchtools.NewRetryWatcherWithContext(ctx, jobs.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return env.cs.BatchV1().Jobs(ns).Watch(ctx, opts)
		},
	})
	require.NoError(t, err)
	taskWatch, err := watchtools.NewRetryWatcherWithContext(ctx, tasks.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return env.k8s.Watch(ctx, &v1alpha1.TaskList{}, client.InNamespace(ns), &client.ListOptions{Raw: &opts})
		},
	})
	require.NoError(t, err)
	consume := func(w *watchtools.RetryWatcher, handle func(watch.Event)) {
		defer wg.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if ev.Type == watch.Error {
					o.mu.Lock()
					o.watchErrors = append(o.watchErrors, fmt.Errorf("watch error: %v", dump(ev.Object)))
					o.mu.Unlock()
					continue
				}
				handle(ev)
			}
		}
	}
	wg.Add(2)
	go consume(jobWatch, o.jobEvent)
	go consume(taskWatch, o.taskEvent)
	return o
}

func (o *observer) jobEvent(ev watch.Event) {
	job, ok := ev.Object.(*batchv1.Job)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	task := job.Annotations[annotationTask]
	taskUID := types.UID(job.Labels[labelTaskUID])
	if ev.Type == watch.Added {
		var owners []metav1.OwnerReference
		for _, ref := range job.OwnerReferences {
			if ref.Controller != nil && *ref.Controller {
				owners = append(owners, ref)
			}
		}
		if len(owners) != 1 || owners[0].Kind != "Task" || owners[0].UID != taskUID || owners[0].Name != task {
			o.violate("Job %s is not controlled by exactly its Task %s (uid %s): owners %v", job.Name, task, taskUID, job.OwnerReferences)
		}
		if o.jobsOfTask[taskUID] == nil {
			o.jobsOfTask[taskUID] = map[types.UID]bool{}
		}
		o.jobsOfTask[taskUID][job.UID] = true
		if len(o.jobsOfTask[taskUID]) > 1 {
			o.violate("Task %s got a second Job %s (uid %s)", task, job.Name, job.UID)
		}
		o.jobOrder = append(o.jobOrder, task)
		o.jobAddedAt[task] = time.Now()
		o.hadJob[task] = true
		if o.onJobAdded != nil {
			o.onJobAdded(task, o)
		}
	}
	if _, seen := o.jobDoneAt[task]; !seen && jobFinished(job) {
		o.jobDoneAt[task] = time.Now()
	}
	if ev.Type != watch.Deleted && job.DeletionTimestamp == nil && !jobFinished(job) {
		o.activeJobs[job.UID] = task
	} else {
		delete(o.activeJobs, job.UID)
	}
	if len(o.activeJobs) > o.maxActive {
		o.maxActive = len(o.activeJobs)
	}
	if o.limit > 0 && len(o.activeJobs) > o.limit {
		o.violate("%d active Jobs at once, above the limit of %d: %v", len(o.activeJobs), o.limit, sortedValues(o.activeJobs))
	}
}

func (o *observer) taskEvent(ev watch.Event) {
	task, ok := ev.Object.(*v1alpha1.Task)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.phases[task.Name] = task.Status.Phase
	if ev.Type != watch.Deleted && task.Status.Phase == v1alpha1.TaskPhaseRunning {
		o.running[task.Name] = true
	} else {
		delete(o.running, task.Name)
	}
	if len(o.running) > o.maxRunning {
		o.maxRunning = len(o.running)
	}
	if o.limit > 0 && len(o.running) > o.limit {
		o.violate("%d Tasks Running at once, above the limit of %d: %v", len(o.running), o.limit, sortedKeys(o.running))
	}
}

// violate records a broken invariant; mu is held.
func (o *observer) violate(format string, args ...any) {
	// A broken invariant tends to repeat on every following event; the
	// first few say all there is.
	if len(o.violations) < 20 {
		o.violations = append(o.violations, fmt.Sprintf(format, args...))
	}
}

// check fails the test on every recorded violation or watch error.
func (o *observer) check(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range o.violations {
		t.Error(v)
	}
	for _, err := range o.watchErrors {
		t.Error(err)
	}
}

// countPhase returns how many Tasks the watch last saw in phase.
func (o *observer) countPhase(phase v1alpha1.TaskPhase) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.phases {
		if p == phase {
			n++
		}
	}
	return n
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedValues(m map[types.UID]string) string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// jobLifetime returns the mean time from a Job's creation to its end, as
// the watch saw them: the cluster's share of a Task (Job controller,
// scheduler, kwok and the pod's run).
func (o *observer) jobLifetime() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sum time.Duration
	var n int
	for task, added := range o.jobAddedAt {
		if done, ok := o.jobDoneAt[task]; ok {
			sum += done.Sub(added)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}
