// Package controller holds the reconcilers: TaskReconciler turns each Task
// into exactly one Job and follows it to the end; AgentReconciler keeps each
// Agent's running and queued counts.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/images"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// Timing knobs of the Task controller.
const (
	// recheckMissing is how often a Task waiting for a ConfigMap or for the
	// images looks again (ConfigMaps are not watched, so that the cache
	// never holds the cluster's ConfigMaps).
	recheckMissing = 5 * time.Second
	// DefaultStuckPodTimeout is how long a pod may stay unable to start
	// (image pull errors, missing Secrets, unschedulable) before its Task fails.
	DefaultStuckPodTimeout = 3 * time.Minute
	// DefaultPodCreateGrace is how long a Job may have no pod before the
	// controller asks the API server why.
	DefaultPodCreateGrace = 20 * time.Second
	// DefaultStartupTimeout is how long a scheduled pod may stay in
	// ContainerCreating (a volume that cannot be mounted, or a slow pull of
	// a large agent image) before its Task fails.
	DefaultStartupTimeout = 10 * time.Minute
)

// TaskReconciler turns each Task into exactly one Job and follows the Job to
// the end, recording every outcome on the Task.
type TaskReconciler struct {
	// Client reads from the cache (Tasks, Agents, KubeOpenCodeConfig, and
	// the controller's own Jobs and Pods) and writes to the API server.
	Client client.Client
	// APIReader reads from the API server: ConfigMaps the contexts name
	// (never cached), and Jobs when the cache may lag.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Resolver  *images.Resolver
	// StuckPodTimeout: see DefaultStuckPodTimeout.
	StuckPodTimeout time.Duration
	// PodCreateGrace: see DefaultPodCreateGrace.
	PodCreateGrace time.Duration
	// StartupTimeout: see DefaultStartupTimeout.
	StartupTimeout time.Duration
	// Logs opens the agent container's log, from which the Task's
	// transcript and results are read (see transcript.go); nil leaves Tasks
	// without either.
	Logs LogOpener
	// TranscriptFlush: see DefaultTranscriptFlush.
	TranscriptFlush time.Duration
	// ResultsWait: see DefaultResultsWait.
	ResultsWait time.Duration
	// HostResolver looks up the host names of an Agent's network.egress
	// (nil: the controller pod's resolver).
	HostResolver HostResolver

	admission       *admission
	kicks           chan event.GenericEvent
	serviceAccounts *serviceAccounts
	transcripts     *transcripts
	egress          *egressLookup
	firstSeen       sync.Map // types.UID -> time.Time, for the admission latency metric
	// started remembers the Jobs this process created (types.UID ->
	// startedJob) until the Task's status records them. The cache can lag
	// behind that status write; without this record a reconcile working
	// from the stale copy would create the Job again after it was deleted.
	// A restarted controller needs no record: its cache starts from a
	// complete list that holds every status written before.
	started sync.Map
}

// lockedPatch patches only if the Task has not changed since it was read:
// a reconcile working from a cache that has not yet seen the controller's
// own last write must not overwrite it (say, turn a Failed Task whose Job
// was just removed into JobDeleted).
func lockedPatch(task *v1alpha1.Task) client.Patch {
	return client.MergeFromWithOptions(task.DeepCopy(), client.MergeFromWithOptimisticLock{})
}

// Reconcile moves one Task forward. A conflict means the cache was behind:
// the Task is simply looked at again.
func (r *TaskReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := r.reconcile(ctx, req)
	if apierrors.IsConflict(err) {
		return reconcile.Result{Requeue: true}, nil
	}
	if errors.Is(err, errRunningSlotBusy) {
		// markEnded wakes the Task when the Running Task ahead of it ends;
		// looking again later only covers one deleted behind our back.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	return res, err
}

// errRunningSlotBusy: the Task's Job exists, but a Task whose Job has
// finished still says Running and the Agent's limit is reached until its
// end is recorded.
var errRunningSlotBusy = errors.New("waiting for a running Task's end to be recorded")

func (r *TaskReconciler) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	task := &v1alpha1.Task{}
	if err := r.Client.Get(ctx, req.NamespacedName, task); err != nil {
		if apierrors.IsNotFound(err) {
			// Reservations of vanished Tasks are dropped the next time their
			// Agent's queue is read.
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if task.Status.Phase.IsTerminal() || task.DeletionTimestamp != nil {
		r.forget(task)
		return reconcile.Result{}, nil
	}
	if _, ok := r.firstSeen.Load(task.UID); !ok {
		r.firstSeen.Store(task.UID, time.Now())
	}
	if task.Status.JobName == "" {
		if s, ok := r.started.Load(task.UID); ok {
			// The Job exists; the cache has not seen the status that says so.
			sj := s.(startedJob)
			if task.Annotations[v1alpha1.StopAnnotation] == "true" {
				task.Status.JobName = sj.job
				return reconcile.Result{}, r.stop(ctx, task)
			}
			if sj.recorded {
				// Writing from this stale copy could only conflict; the
				// watch brings the Task back once the cache has the write.
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, r.recordStart(ctx, task, sj)
		}
	}
	if task.Annotations[v1alpha1.StopAnnotation] == "true" {
		return reconcile.Result{}, r.stop(ctx, task)
	}
	if task.Status.JobName != "" {
		return r.follow(ctx, task)
	}
	return r.start(ctx, task)
}

type startedJob struct {
	job, agent string
	images     v1alpha1.TaskImages
	// egress and egressCond, for an Agent that sets network.egress.
	egress     *v1alpha1.TaskEgressStatus
	egressCond *metav1.Condition
	// recorded: the Task's status says Running already.
	recorded bool
}

// ended is called once the Task's terminal status is written: its slot goes
// to the next Task at once, without waiting for the cache to show the
// write (the API server already holds it, so the limit still holds).
func (r *TaskReconciler) ended(ctx context.Context, task *v1alpha1.Task) {
	r.forget(task)
	wake := r.admission.markEnded(task)
	// A Task whose Job finished (or left the cache, which keeps no Job that
	// succeeded) handed its slot on when the Job did: the Job's watch woke
	// the queue then. Otherwise the slot frees now.
	if done, err := jobFinishedInCache(ctx, r.Client, task.Namespace, task.Status.JobName, task.UID); err != nil || !(done || r.admission.hasLeft(task.UID)) {
		wake = append(wake, r.admission.nextInQueue(ctx, r.Client, task.Namespace, task.AgentName(), int(agentLimit(ctx, r.Client, task.Namespace, task.AgentName())))...)
	}
	r.wake(ctx, wake)
}

// wake reconciles the Tasks named.
func (r *TaskReconciler) wake(ctx context.Context, tasks []types.NamespacedName) {
	for _, nn := range tasks {
		t := &v1alpha1.Task{}
		t.Namespace, t.Name = nn.Namespace, nn.Name
		// The channel's reader moves kicks straight to the work queue, so
		// this waits only if a great many arrive at once.
		select {
		case r.kicks <- event.GenericEvent{Object: t}:
		case <-ctx.Done():
			return
		}
	}
}

// agentLimit is the Agent's maxConcurrentTasks as the cache shows it, 0 for
// none (or no Agent).
func agentLimit(ctx context.Context, c client.Reader, namespace, name string) int32 {
	agent := &v1alpha1.Agent{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, agent, readOnly); err != nil {
		return 0
	}
	if agent.Spec.MaxConcurrentTasks == nil || *agent.Spec.MaxConcurrentTasks <= 0 {
		return 0
	}
	return *agent.Spec.MaxConcurrentTasks
}

// forget drops what this process remembers about a Task that ended or went away.
func (r *TaskReconciler) forget(task *v1alpha1.Task) {
	r.admission.release(task)
	r.firstSeen.Delete(task.UID)
	r.started.Delete(task.UID)
}

// start resolves what the Task needs, waits for a slot and creates the Job.
func (r *TaskReconciler) start(ctx context.Context, task *v1alpha1.Task) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: task.Namespace, Name: task.AgentName()}, agent); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		// The Agent's watch brings the Task back the moment it appears.
		return reconcile.Result{}, r.wait(ctx, task, v1alpha1.ReasonAgentNotFound, fmt.Sprintf(
			"Agent %q does not exist in namespace %s: create it, or set spec.agentRef to an existing Agent. The Task starts as soon as the Agent exists.",
			task.AgentName(), task.Namespace))
	}

	if ok, err := r.serviceAccounts.exists(ctx, task.Namespace, agent.Spec.ServiceAccountName); err != nil {
		return reconcile.Result{}, err
	} else if !ok {
		return reconcile.Result{RequeueAfter: recheckMissing}, r.wait(ctx, task, v1alpha1.ReasonServiceAccountNotFound, fmt.Sprintf(
			"ServiceAccount %q (spec.serviceAccountName of Agent %s) does not exist in namespace %s: create it. The Task starts once it exists.",
			agent.Spec.ServiceAccountName, agent.Name, task.Namespace))
	}

	cms, wait, err := r.configMaps(ctx, task, agent)
	if err != nil {
		return reconcile.Result{}, err
	}
	if wait != nil {
		return reconcile.Result{RequeueAfter: recheckMissing}, r.wait(ctx, task, wait.reason, wait.message)
	}

	cfg := &v1alpha1.KubeOpenCodeConfig{}
	var sys *v1alpha1.SystemImage
	if err := r.Client.Get(ctx, types.NamespacedName{Name: v1alpha1.ConfigName}, cfg); err == nil {
		sys = cfg.Spec.SystemImage
	} else if !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	imgs, err := r.Resolver.Select(ctx, sys)
	if err != nil {
		return reconcile.Result{RequeueAfter: recheckMissing}, r.wait(ctx, task, v1alpha1.ReasonImageResolutionFailed, err.Error())
	}
	pull := corev1.PullIfNotPresent
	if sys != nil && sys.ImagePullPolicy != "" {
		pull = sys.ImagePullPolicy
	}

	// Host names are looked up once the Task is admitted, so that queued
	// Tasks cost no lookups; one that waits for a name to resolve looks it
	// up here instead, and holds no slot while it waits.
	unresolved := false
	if c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionReady); c != nil && c.Reason == v1alpha1.ReasonEgressUnresolved {
		unresolved = true
	}
	egressIn, wait, err := r.egressInput(ctx, task, agent, unresolved)
	var berr *jobbuilder.Error
	if errors.As(err, &berr) {
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionReady, berr.Reason, berr.Message, nil)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if wait != nil {
		return reconcile.Result{RequeueAfter: recheckMissing}, r.wait(ctx, task, wait.reason, wait.message)
	}

	in := jobbuilder.Input{
		Task: task, Agent: agent, ConfigMaps: cms, Egress: egressIn,
		Images: jobbuilder.Images{GitInit: imgs.GitInit, ContextInit: imgs.ContextInit, PullPolicy: pull},
	}
	out, err := jobbuilder.Build(in)
	if errors.As(err, &berr) {
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionReady, berr.Reason, berr.Message, nil)
	}
	if err != nil {
		return reconcile.Result{}, err
	}

	limit := int32(0)
	if agent.Spec.MaxConcurrentTasks != nil {
		limit = *agent.Spec.MaxConcurrentTasks
	}
	ok, position, err := r.admission.admit(ctx, r.Client, task, limit)
	if err != nil {
		return reconcile.Result{}, err
	}
	if !ok {
		return reconcile.Result{}, r.queue(ctx, task, agent, position)
	}

	if egressIn != nil && !unresolved {
		// Admitted: now the host names are looked up, and the Task's
		// objects built from their addresses (the ones above only checked
		// the Task).
		if in.Egress, wait, err = r.egressInput(ctx, task, agent, true); err != nil || wait != nil {
			r.admission.release(task)
			if err != nil {
				return reconcile.Result{}, err
			}
			// Pending, the Task holds no place in the queue: the slot it
			// was given goes to the next Task.
			if err := r.wait(ctx, task, wait.reason, wait.message); err != nil {
				return reconcile.Result{}, err
			}
			r.wake(ctx, r.admission.nextInQueue(ctx, r.Client, task.Namespace, task.AgentName(), int(limit)))
			return reconcile.Result{RequeueAfter: recheckMissing}, nil
		}
		if out, err = jobbuilder.Build(in); err != nil {
			r.admission.release(task)
			if errors.As(err, &berr) {
				return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionReady, berr.Reason, berr.Message, nil)
			}
			return reconcile.Result{}, err
		}
	}

	// The policy first: the pod must never exist without it.
	if out.NetworkPolicy != nil {
		if out, err = r.createPolicy(ctx, task, in, out); err != nil {
			r.admission.release(task)
			return r.createFailed(ctx, task, err)
		}
	}
	if out.ConfigMap != nil {
		if err := r.createOwned(ctx, task, out.ConfigMap); err != nil {
			r.admission.release(task)
			return r.createFailed(ctx, task, err)
		}
	}
	if err := r.createOwned(ctx, task, out.Job); err != nil {
		r.admission.release(task)
		return r.createFailed(ctx, task, err)
	}
	r.admission.jobCreated(task, out.Job.Name)
	if seen, ok := r.firstSeen.Load(task.UID); ok {
		admissionLatency.Observe(time.Since(seen.(time.Time)).Seconds())
	}

	sj := startedJob{job: out.Job.Name, agent: agent.Name, images: v1alpha1.TaskImages{GitInit: imgs.GitInit, ContextInit: imgs.ContextInit}}
	sj.egress, sj.egressCond = egressStarting(out)
	r.started.Store(task.UID, sj)
	if err := r.recordStart(ctx, task, sj); err != nil {
		return reconcile.Result{}, err
	}
	logger.V(1).Info("Started Task", "job", out.Job.Name, "agent", agent.Name)
	return reconcile.Result{}, nil
}

// recordStart writes that the Task runs and which Job runs it, once the
// Agent's limit allows one more Running Task (see admission.mayRun).
func (r *TaskReconciler) recordStart(ctx context.Context, task *v1alpha1.Task, sj startedJob) error {
	ok, err := r.admission.mayRun(ctx, r.Client, task, agentLimit(ctx, r.Client, task.Namespace, sj.agent))
	if err != nil {
		return err
	}
	if !ok {
		return errRunningSlotBusy
	}
	patch := lockedPatch(task)
	SetRunning(task, sj.job, sj.agent, sj.images)
	if sj.egress != nil {
		task.Status.Egress = sj.egress.DeepCopy()
		meta.SetStatusCondition(&task.Status.Conditions, *sj.egressCond)
	}
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	sj.recorded = true
	r.started.Store(task.UID, sj)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: task.Namespace, Name: sj.job}}
	r.Recorder.Eventf(task, job, corev1.EventTypeNormal, "Started", "CreateJob", "Created Job %s with Agent %s", sj.job, sj.agent)
	return nil
}

// SetRunning sets the status that records a Task started by Job job with
// Agent agent and the given init images.
func SetRunning(task *v1alpha1.Task, job, agent string, images v1alpha1.TaskImages) {
	now := metav1.Now()
	task.Status.Phase = v1alpha1.TaskPhaseRunning
	task.Status.Agent = agent
	task.Status.JobName = job
	task.Status.StartTime = &now
	task.Status.ObservedGeneration = task.Generation
	task.Status.Images = &images
	setCondition(task, v1alpha1.TaskConditionReady, metav1.ConditionTrue, v1alpha1.ReasonResolved, "The Agent, the contexts and the init images are resolved.")
	if meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionQueued) != nil {
		setCondition(task, v1alpha1.TaskConditionQueued, metav1.ConditionFalse, v1alpha1.ReasonAdmitted, "A slot under the Agent's maxConcurrentTasks is free.")
	}
}

// createFailed turns a failed create into the Task's outcome when no retry
// can help (an object with the Job's name that the Task does not own, or a
// Job the API server rejects), and into a retry otherwise.
func (r *TaskReconciler) createFailed(ctx context.Context, task *v1alpha1.Task, err error) (reconcile.Result, error) {
	var conflict *ownerConflict
	if errors.As(err, &conflict) {
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionReady, v1alpha1.ReasonJobNameConflict, conflict.Error(), nil)
	}
	if apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) {
		reason := v1alpha1.ReasonInvalidContexts
		if apierrors.IsRequestEntityTooLargeError(err) {
			reason = v1alpha1.ReasonContextTooLarge
		}
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionReady, reason, fmt.Sprintf("Task %s/%s: the API server rejected its Job: %v", task.Namespace, task.Name, err), nil)
	}
	return reconcile.Result{}, err
}

type ownerConflict struct{ kind, name string }

func (e *ownerConflict) Error() string {
	return fmt.Sprintf("a %s named %q already exists and does not belong to this Task: delete or rename it, or create the Task under another name", e.kind, e.name)
}

// createOwned creates obj, accepting an existing one only if this Task owns
// it: a retry after a crash or conflict never makes a second Job, and an
// unrelated object of the same name is never adopted.
func (r *TaskReconciler) createOwned(ctx context.Context, task *v1alpha1.Task, obj client.Object) error {
	err := r.Client.Create(ctx, obj)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return err
	}
	if metav1.IsControlledBy(existing, task) {
		return nil
	}
	kind := "Job"
	switch obj.(type) {
	case *corev1.ConfigMap:
		kind = "ConfigMap"
	case *networkingv1.NetworkPolicy:
		kind = "NetworkPolicy"
	}
	return &ownerConflict{kind: kind, name: obj.GetName()}
}

// follow watches a started Task's Job until it ends.
func (r *TaskReconciler) follow(ctx context.Context, task *v1alpha1.Task) (reconcile.Result, error) {
	job := &batchv1.Job{}
	key := types.NamespacedName{Namespace: task.Namespace, Name: task.Status.JobName}
	cached := true
	if err := r.Client.Get(ctx, key, job); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		// The cache keeps no Job that succeeded, and may not have caught
		// up with a Job created a moment ago.
		cached = false
		if err := r.APIReader.Get(ctx, key, job); err != nil {
			if !apierrors.IsNotFound(err) {
				return reconcile.Result{}, err
			}
			return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionSucceeded, v1alpha1.ReasonJobDeleted,
				fmt.Sprintf("Job %s was deleted before it finished; the Task cannot continue. Create a new Task to run again.", key.Name), nil)
		}
	}
	if !metav1.IsControlledBy(job, task) {
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionSucceeded, v1alpha1.ReasonJobNameConflict,
			(&ownerConflict{kind: "Job", name: job.Name}).Error(), nil)
	}
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(task.Namespace), client.MatchingLabels{jobbuilder.LabelTaskUID: string(task.UID)}); err != nil {
		return reconcile.Result{}, err
	}
	o := jobOutcome(job, pods.Items)
	if o.terminal {
		// Nor does it keep pods that ended: the outcome reads them from
		// the API server.
		if err := r.APIReader.List(ctx, pods, client.InNamespace(task.Namespace), client.MatchingLabels{jobbuilder.LabelTaskUID: string(task.UID)}); err != nil {
			return reconcile.Result{}, err
		}
		if wait := r.awaitLog(task, job, newestPod(pods.Items)); wait > 0 {
			return reconcile.Result{RequeueAfter: wait}, nil
		}
		return reconcile.Result{}, r.finish(ctx, task, jobOutcome(job, pods.Items))
	}
	pod := newestPod(pods.Items)
	if task.Status.Egress != nil {
		patch := lockedPatch(task)
		if applyEgressVerdict(task, pod) {
			if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
				return reconcile.Result{}, err
			}
			if err := r.noteAgentEgress(ctx, task); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	if r.transcripts != nil {
		if agentStarted(pod) {
			r.transcripts.ensure(task, pod)
		}
	}
	if !cached {
		// A Job the cache does not show sends no more events here (it
		// succeeded, and its conditions are still being written): look again.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	if t := podTrouble(pod); t != nil {
		return r.troubled(ctx, task, job, t)
	}
	if len(pods.Items) == 0 && job.Status.Active == 0 {
		if res, err, done := r.noPod(ctx, task, job); done {
			return res, err
		}
	}
	// The pod is fine again: clear a trouble reported earlier.
	if c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionSucceeded); c != nil && c.Status == metav1.ConditionUnknown {
		patch := lockedPatch(task)
		meta.RemoveStatusCondition(&task.Status.Conditions, v1alpha1.TaskConditionSucceeded)
		return reconcile.Result{}, r.Client.Status().Patch(ctx, task, patch)
	}
	return reconcile.Result{}, nil
}

// noPod explains a Job that has had no pod for PodCreateGrace: the Job
// controller could not create it. The reason (PodSecurity admission, a
// quota, a webhook) is only in the Job controller's events, so the controller
// asks the API server directly with a dry-run create of the same pod.
func (r *TaskReconciler) noPod(ctx context.Context, task *v1alpha1.Task, job *batchv1.Job) (reconcile.Result, error, bool) {
	grace := r.PodCreateGrace
	if grace == 0 {
		grace = DefaultPodCreateGrace
	}
	age := time.Since(job.CreationTimestamp.Time)
	if age < grace {
		return reconcile.Result{RequeueAfter: grace - age + 100*time.Millisecond}, nil, true
	}
	// The cache keeps no pod template (see slimJob): read the whole Job.
	full := &batchv1.Job{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(job), full); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err), true
	}
	job = full
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: job.Name + "-", Namespace: job.Namespace,
			Labels: job.Spec.Template.Labels, Annotations: job.Spec.Template.Annotations,
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	err := r.Client.Create(ctx, pod, client.DryRunAll)
	if err == nil || !(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) {
		// Creatable (the Job controller is just slow) or a transient error:
		// look again later.
		return reconcile.Result{RequeueAfter: grace}, nil, true
	}
	if derr := r.deleteJob(ctx, job); derr != nil {
		return reconcile.Result{}, derr, true
	}
	return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionSucceeded, v1alpha1.ReasonPodRejected,
		fmt.Sprintf("The API server refuses the Task's pod: %v. Change the Agent (for example podSpec.securityContext) or the namespace's policy.", err), nil), true
}

// troubled reports a pod that cannot start, and fails the Task when the
// trouble has lasted StuckPodTimeout (or at once when waiting cannot help).
func (r *TaskReconciler) troubled(ctx context.Context, task *v1alpha1.Task, job *batchv1.Job, t *trouble) (reconcile.Result, error) {
	timeout := r.StuckPodTimeout
	if timeout == 0 {
		timeout = DefaultStuckPodTimeout
	}
	if t.slow {
		timeout = r.StartupTimeout
		if timeout == 0 {
			timeout = DefaultStartupTimeout
		}
	}
	c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionSucceeded)
	since := time.Now()
	if c != nil && c.Status == metav1.ConditionUnknown && c.Reason == t.reason {
		since = c.LastTransitionTime.Time
	}
	if t.immediate || time.Since(since) >= timeout {
		if err := r.deleteJob(ctx, job); err != nil {
			return reconcile.Result{}, err
		}
		msg := t.message
		if !t.immediate {
			msg = fmt.Sprintf("%s (for %s; the Task was stopped)", t.message, timeout)
		}
		return reconcile.Result{}, r.fail(ctx, task, v1alpha1.TaskConditionSucceeded, t.reason, msg, nil)
	}
	if c == nil || c.Reason != t.reason || c.Message != t.message {
		patch := lockedPatch(task)
		meta.SetStatusCondition(&task.Status.Conditions, metav1.Condition{
			Type: v1alpha1.TaskConditionSucceeded, Status: metav1.ConditionUnknown, Reason: t.reason,
			Message: fmt.Sprintf("%s (the Task fails if this lasts %s)", t.message, timeout), ObservedGeneration: task.Generation,
			LastTransitionTime: metav1.NewTime(since),
		})
		if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
			return reconcile.Result{}, err
		}
		r.Recorder.Eventf(task, job, corev1.EventTypeWarning, t.reason, "WatchPod", "%s", t.message)
	}
	return reconcile.Result{RequeueAfter: timeout - time.Since(since) + time.Second}, nil
}

func (r *TaskReconciler) deleteJob(ctx context.Context, job *batchv1.Job) error {
	err := r.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// stop ends a Task on the user's request, whatever phase it is in.
func (r *TaskReconciler) stop(ctx context.Context, task *v1alpha1.Task) error {
	if task.Status.JobName != "" {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: task.Namespace, Name: task.Status.JobName}}
		if err := r.deleteJob(ctx, job); err != nil {
			return err
		}
	}
	patch := lockedPatch(task)
	r.attachTranscript(task)
	setCondition(task, v1alpha1.TaskConditionStopped, metav1.ConditionTrue, v1alpha1.ReasonUserStopped,
		fmt.Sprintf("Stopped by the %s annotation.", v1alpha1.StopAnnotation))
	r.terminate(task, v1alpha1.TaskPhaseFailed, v1alpha1.TaskConditionSucceeded, v1alpha1.ReasonStopped, "The Task was stopped before it finished.")
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	r.ended(ctx, task)
	r.Recorder.Eventf(task, nil, corev1.EventTypeNormal, v1alpha1.ReasonUserStopped, "Stop", "Task stopped")
	return nil
}

// finish records a Job's end on the Task.
func (r *TaskReconciler) finish(ctx context.Context, task *v1alpha1.Task, o outcome) error {
	patch := lockedPatch(task)
	task.Status.ExitCode = o.exitCode
	task.Status.Repositories = o.repos
	applyEgressVerdict(task, o.pod)
	r.attachTranscript(task)
	phase := v1alpha1.TaskPhaseFailed
	if o.succeeded {
		phase = v1alpha1.TaskPhaseCompleted
	}
	r.terminate(task, phase, v1alpha1.TaskConditionSucceeded, o.reason, o.message)
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	r.ended(ctx, task)
	if err := r.noteAgentEgress(ctx, task); err != nil {
		log.FromContext(ctx).Error(err, "Recording the egress check on the Agent")
	}
	typ := corev1.EventTypeNormal
	if !o.succeeded {
		typ = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(task, nil, typ, o.reason, "Finish", "%s", o.message)
	return nil
}

// awaitLog says how long to wait before a Task whose Job ended is recorded
// as ended: until its agent's log has been read to its end (the results
// are its last line), at most ResultsWait after the Job ended. 0: record
// it now.
func (r *TaskReconciler) awaitLog(task *v1alpha1.Task, job *batchv1.Job, pod *corev1.Pod) time.Duration {
	if r.transcripts == nil {
		return 0
	}
	rec := r.transcripts.get(task.UID)
	if rec == nil {
		if !agentStarted(pod) {
			return 0 // the agent never ran: there is no log
		}
		rec = r.transcripts.ensure(task, pod)
	}
	if rec.isDone() || !rec.waitable() {
		// A log that cannot be opened does not hold the Task's end: if it
		// opens later, the recording writes the results itself.
		return 0
	}
	limit := r.ResultsWait
	if limit == 0 {
		limit = DefaultResultsWait
	}
	ended := job.CreationTimestamp.Time
	for _, c := range job.Status.Conditions {
		if c.Status == corev1.ConditionTrue && c.LastTransitionTime.After(ended) {
			ended = c.LastTransitionTime.Time
		}
	}
	if left := limit - time.Since(ended); left > 0 {
		// The recording wakes the Task when the log ends; this only
		// bounds the wait.
		return min(left, time.Second)
	}
	return 0
}

// attachTranscript puts the Task's transcript, and its results when the
// agent's log has been read to its end, on the status about to be written.
// A recording still reading (a stopped Task's agent is still ending)
// writes them itself once the log ends.
func (r *TaskReconciler) attachTranscript(task *v1alpha1.Task) {
	if r.transcripts == nil {
		return
	}
	rec := r.transcripts.get(task.UID)
	if rec == nil {
		return
	}
	task.Status.Transcript = rec.transcriptStatus()
	if r.transcripts.markStopped(task.UID) {
		return
	}
	task.Status.Results = rec.taskResults(task.Status.Repositories)
	r.transcripts.forget(task.UID)
}

// fail ends the Task with reason, setting condType False.
func (r *TaskReconciler) fail(ctx context.Context, task *v1alpha1.Task, condType, reason, message string, exitCode *int32) error {
	patch := lockedPatch(task)
	if exitCode != nil {
		task.Status.ExitCode = exitCode
	}
	r.attachTranscript(task)
	if condType != v1alpha1.TaskConditionSucceeded {
		setCondition(task, condType, metav1.ConditionFalse, reason, message)
	}
	r.terminate(task, v1alpha1.TaskPhaseFailed, v1alpha1.TaskConditionSucceeded, reason, message)
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	r.ended(ctx, task)
	r.Recorder.Eventf(task, nil, corev1.EventTypeWarning, reason, "Fail", "%s", message)
	return nil
}

func (r *TaskReconciler) terminate(task *v1alpha1.Task, phase v1alpha1.TaskPhase, condType, reason, message string) {
	now := metav1.Now()
	task.Status.Phase = phase
	task.Status.CompletionTime = &now
	task.Status.ObservedGeneration = task.Generation
	status := metav1.ConditionFalse
	if phase == v1alpha1.TaskPhaseCompleted {
		status = metav1.ConditionTrue
	}
	setCondition(task, condType, status, reason, message)
	if c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionQueued); c != nil && c.Status == metav1.ConditionTrue {
		setCondition(task, v1alpha1.TaskConditionQueued, metav1.ConditionFalse, reason, "The Task left the queue: "+message)
	}
}

// wait keeps the Task in Pending with the Ready condition saying why.
func (r *TaskReconciler) wait(ctx context.Context, task *v1alpha1.Task, reason, message string) error {
	c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionReady)
	if task.Status.Phase == v1alpha1.TaskPhasePending && c != nil && c.Reason == reason && c.Message == message {
		return nil
	}
	patch := lockedPatch(task)
	task.Status.Phase = v1alpha1.TaskPhasePending
	task.Status.Agent = task.AgentName()
	task.Status.ObservedGeneration = task.Generation
	setCondition(task, v1alpha1.TaskConditionReady, metav1.ConditionFalse, reason, message)
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	r.Recorder.Eventf(task, nil, corev1.EventTypeWarning, reason, "Wait", "%s", message)
	return nil
}

// queue keeps the Task in Queued until a slot frees.
func (r *TaskReconciler) queue(ctx context.Context, task *v1alpha1.Task, agent *v1alpha1.Agent, position int) error {
	msg := fmt.Sprintf("Agent %s runs at most %d Tasks at once; this Task starts when a slot frees, in creation order.", agent.Name, *agent.Spec.MaxConcurrentTasks)
	if task.Status.Phase == v1alpha1.TaskPhaseQueued {
		return nil
	}
	patch := lockedPatch(task)
	task.Status.Phase = v1alpha1.TaskPhaseQueued
	task.Status.Agent = agent.Name
	task.Status.ObservedGeneration = task.Generation
	setCondition(task, v1alpha1.TaskConditionReady, metav1.ConditionTrue, v1alpha1.ReasonResolved, "The Agent, the contexts and the init images are resolved.")
	setCondition(task, v1alpha1.TaskConditionQueued, metav1.ConditionTrue, v1alpha1.ReasonWaitingForSlot, msg)
	if err := r.Client.Status().Patch(ctx, task, patch); err != nil {
		return err
	}
	r.Recorder.Eventf(task, nil, corev1.EventTypeNormal, v1alpha1.ReasonWaitingForSlot, "Queue", "%s", msg)
	return nil
}

func setCondition(task *v1alpha1.Task, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&task.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: task.Generation,
	})
}

type waitReason struct{ reason, message string }

// configMaps reads the ConfigMaps the contexts name, straight from the API
// server (the controller does not cache ConfigMaps). A missing ConfigMap or
// key that is not optional makes the Task wait.
func (r *TaskReconciler) configMaps(ctx context.Context, task *v1alpha1.Task, agent *v1alpha1.Agent) (map[string]*corev1.ConfigMap, *waitReason, error) {
	out := map[string]*corev1.ConfigMap{}
	missing := map[string]bool{}
	all := append(append([]v1alpha1.ContextItem{}, agent.Spec.Contexts...), task.Spec.Contexts...)
	for _, c := range all {
		if c.Type != v1alpha1.ContextTypeConfigMap || c.ConfigMap == nil {
			continue
		}
		ref := c.ConfigMap
		optional := ref.Optional != nil && *ref.Optional
		cm, seen := out[ref.Name]
		if !seen && !missing[ref.Name] {
			cm = &corev1.ConfigMap{}
			if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: task.Namespace, Name: ref.Name}, cm); err != nil {
				if !apierrors.IsNotFound(err) {
					return nil, nil, err
				}
				missing[ref.Name] = true
				cm = nil
			} else {
				out[ref.Name] = cm
			}
		}
		if cm == nil {
			if optional {
				continue
			}
			return nil, &waitReason{v1alpha1.ReasonConfigMapNotFound, fmt.Sprintf(
				"ConfigMap %q does not exist in namespace %s: create it, or mark the context optional. The Task starts once it exists.", ref.Name, task.Namespace)}, nil
		}
		if ref.Key == "" || optional {
			continue
		}
		if _, ok := cm.Data[ref.Key]; ok {
			continue
		}
		if _, ok := cm.BinaryData[ref.Key]; ok {
			continue
		}
		return nil, &waitReason{v1alpha1.ReasonConfigMapKeyNotFound, fmt.Sprintf(
			"ConfigMap %q has no key %q: add the key, or mark the context optional. The Task starts once it exists.", ref.Name, ref.Key)}, nil
	}
	return out, nil, nil
}
