package controller

import (
	"context"
	"net"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// +kubebuilder:rbac:groups=kubeopencode.io,resources=tasks;agents,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubeopencode.io,resources=tasks/status;agents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=kubeopencode.io,resources=kubeopencodeconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// Pods are created only as server-side dry runs, to learn why a Job gets no pod.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// IndexTasks registers the field indexes the controllers use to find an
// Agent's open Tasks, finished Tasks and active Jobs.
func IndexTasks(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.Task{}, indexTaskAgent, func(o client.Object) []string {
		t := o.(*v1alpha1.Task)
		if t.Status.Phase.IsTerminal() {
			return nil
		}
		return []string{taskAgentKey(t)}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.Task{}, indexFinishedTaskAgent, func(o client.Object) []string {
		t := o.(*v1alpha1.Task)
		if !t.Status.Phase.IsTerminal() {
			return nil
		}
		return []string{taskAgentKey(t)}
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &batchv1.Job{}, indexJobAgent, func(o client.Object) []string {
		j := o.(*batchv1.Job)
		agent, ok := j.Labels[jobbuilder.LabelAgent]
		if !ok || j.DeletionTimestamp != nil || jobFinished(j) {
			return nil
		}
		return []string{j.Namespace + "/" + agent}
	})
}

// SetupWithManager registers the Task controller. IndexTasks must have been called.
func (r *TaskReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	r.admission = newAdmission()
	r.kicks = make(chan event.GenericEvent, 1024)
	if r.Logs != nil {
		ctx, cancel := context.WithCancel(context.Background())
		if err := mgr.Add(manager.RunnableFunc(func(c context.Context) error {
			<-c.Done()
			cancel()
			return nil
		})); err != nil {
			cancel()
			return err
		}
		r.transcripts = newTranscripts(ctx, r.Logs, r.Client, r.APIReader, r.TranscriptFlush, func(nn types.NamespacedName) {
			t := &v1alpha1.Task{}
			t.Namespace, t.Name = nn.Namespace, nn.Name
			select {
			case r.kicks <- event.GenericEvent{Object: t}:
			case <-ctx.Done():
			}
		})
	}
	if r.serviceAccounts == nil {
		r.serviceAccounts = newServiceAccounts(r.APIReader)
	}
	var resolver HostResolver = net.DefaultResolver
	if r.HostResolver != nil {
		resolver = r.HostResolver
	}
	r.egress = &egressLookup{resolver: resolver, reader: r.APIReader}
	registerMetrics(mgr.GetCache())
	c := mgr.GetCache()
	return ctrl.NewControllerManagedBy(mgr).
		Named("task").
		// Finished Tasks need nothing more from this controller; a restart
		// lists them all, and leaving them out keeps new Tasks from queueing
		// behind the history.
		For(&v1alpha1.Task{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return !e.Object.(*v1alpha1.Task).Status.Phase.IsTerminal() },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return !e.ObjectOld.(*v1alpha1.Task).Status.Phase.IsTerminal() || !e.ObjectNew.(*v1alpha1.Task).Status.Phase.IsTerminal()
			},
		})).
		// A Task that goes away hands its slot to the next in line (one that
		// ends does so in ended, once its end is written).
		Watches(&v1alpha1.Task{}, handler.Funcs{
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				t, ok := e.Object.(*v1alpha1.Task)
				if !ok {
					return
				}
				r.forget(t)
				if r.transcripts != nil {
					r.transcripts.forget(t.UID)
				}
				r.kick(ctx, q, t.Namespace, t.AgentName())
			},
		}).
		Watches(&batchv1.Job{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				// A Job that had finished when the cache listed it concerns
				// a Task that is enqueued on its own if it still runs.
				if !jobFinished(e.Object.(*batchv1.Job)) {
					enqueueOwner(e.Object, q)
				}
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				enqueueOwner(e.ObjectNew, q)
				// A finished Job frees its slot at once, while its Task's
				// end is being recorded (see admission.mayRun).
				job := e.ObjectNew.(*batchv1.Job)
				if jobFinished(job) && !jobFinished(e.ObjectOld.(*batchv1.Job)) {
					r.kick(ctx, q, e.ObjectNew.GetNamespace(), e.ObjectNew.GetAnnotations()[jobbuilder.AnnotationAgentName])
				}
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				// Deleted, or succeeded (the cache keeps no Job that did):
				// it holds its Task's slot no more.
				if uid := e.Object.GetLabels()[jobbuilder.LabelTaskUID]; uid != "" {
					r.admission.jobLeft(types.UID(uid))
				}
				enqueueOwner(e.Object, q)
				r.kick(ctx, q, e.Object.GetNamespace(), e.Object.GetAnnotations()[jobbuilder.AnnotationAgentName])
			},
		}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			name := o.GetAnnotations()[jobbuilder.AnnotationTaskName]
			if name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}), builder.WithPredicates(predicate.Funcs{
			// Likewise a pod that had ended when the cache listed it.
			CreateFunc: func(e event.CreateEvent) bool { return !podEnded(e.Object.(*corev1.Pod)) },
		})).
		// An Agent that appears or changes (a raised limit, say) wakes its Tasks.
		Watches(&v1alpha1.Agent{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return openTasks(ctx, c, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexTaskAgent: o.GetNamespace() + "/" + o.GetName()})
		})).
		// New system images may unblock Tasks waiting for them.
		Watches(&v1alpha1.KubeOpenCodeConfig{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return openTasks(ctx, c)
		})).
		// A Task that ends wakes the next in line directly (see ended).
		WatchesRawSource(source.Channel(r.kicks, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

func enqueueOwner(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	name := o.GetAnnotations()[jobbuilder.AnnotationTaskName]
	if name == "" {
		return
	}
	q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
}

// kick enqueues the oldest waiting Tasks of an Agent, as many as it may run.
func (r *TaskReconciler) kick(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], namespace, agentName string) {
	if agentName == "" {
		return
	}
	for _, nn := range r.admission.nextInQueue(ctx, r.Client, namespace, agentName, int(agentLimit(ctx, r.Client, namespace, agentName))) {
		q.Add(reconcile.Request{NamespacedName: nn})
	}
}

func openTasks(ctx context.Context, c client.Reader, opts ...client.ListOption) []reconcile.Request {
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, append(opts, readOnly)...); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range tasks.Items {
		t := &tasks.Items[i]
		if !t.Status.Phase.IsTerminal() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
		}
	}
	return out
}

func podEnded(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
