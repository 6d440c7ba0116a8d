package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// TTLAfterFinishedReconciler deletes each finished Task once its time to
// live has passed: the Task's spec.ttlSecondsAfterFinished, or else its
// Agent's spec.taskRetention.ttlSecondsAfterFinished, counted from
// status.completionTime. Tasks that have not finished are never touched.
type TTLAfterFinishedReconciler struct {
	Client  client.Client
	deleter *taskDeleter
	// now is the clock (tests may stop it).
	now func() time.Time
}

// Reconcile deletes one finished Task whose time has come, or looks again
// when it will have.
func (r *TTLAfterFinishedReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	task := &v1alpha1.Task{}
	if err := r.Client.Get(ctx, req.NamespacedName, task); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !task.Status.Phase.IsTerminal() || task.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	ttl, from, err := r.ttl(ctx, task)
	if err != nil || ttl == nil {
		return reconcile.Result{}, err
	}
	expires := finishedAt(task).Add(time.Duration(*ttl) * time.Second)
	if left := expires.Sub(r.now()); left > 0 {
		return reconcile.Result{RequeueAfter: left}, nil
	}
	return reconcile.Result{}, r.deleter.delete(ctx, task, "ttl", fmt.Sprintf("finished at %s, %s ttlSecondsAfterFinished %d", finishedAt(task).UTC().Format(time.RFC3339), from, *ttl))
}

// ttl is the Task's own time to live, or its Agent's; nil for none.
func (r *TTLAfterFinishedReconciler) ttl(ctx context.Context, task *v1alpha1.Task) (*int32, string, error) {
	if task.Spec.TTLSecondsAfterFinished != nil {
		return task.Spec.TTLSecondsAfterFinished, "the Task's", nil
	}
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: task.Namespace, Name: task.AgentName()}, agent, readOnly); err != nil {
		if apierrors.IsNotFound(err) {
			// The Agent's watch brings the Task back if it appears.
			return nil, "", nil
		}
		return nil, "", err
	}
	if agent.Spec.TaskRetention == nil {
		return nil, "", nil
	}
	return agent.Spec.TaskRetention.TTLSecondsAfterFinished, "Agent " + agent.Name + "'s", nil
}

// SetupWithManager registers the controller. IndexTasks must have been called.
func (r *TTLAfterFinishedReconciler) SetupWithManager(mgr ctrl.Manager, deleter *taskDeleter) error {
	r.deleter = deleter
	if r.now == nil {
		r.now = time.Now
	}
	c := mgr.GetCache()
	return ctrl.NewControllerManagedBy(mgr).
		Named("task-ttl").
		// Only finished Tasks with a time to live, their own or their
		// Agent's: a restart lists every finished Task, and those kept
		// forever need no place in the queue.
		For(&v1alpha1.Task{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool {
				t := e.Object.(*v1alpha1.Task)
				return t.Status.Phase.IsTerminal() && hasTTL(c, t)
			},
			UpdateFunc: func(e event.UpdateEvent) bool {
				t := e.ObjectNew.(*v1alpha1.Task)
				return !e.ObjectOld.(*v1alpha1.Task).Status.Phase.IsTerminal() && t.Status.Phase.IsTerminal() && hasTTL(c, t)
			},
			DeleteFunc: func(event.DeleteEvent) bool { return false },
		})).
		// An Agent whose time to live changes (or that appears) sets its
		// finished Tasks' clocks anew.
		Watches(&v1alpha1.Agent{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				if ttlOf(e.Object.(*v1alpha1.Agent)) >= 0 {
					enqueueFinished(ctx, c, e.Object, q)
				}
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				if ttlOf(e.ObjectOld.(*v1alpha1.Agent)) != ttlOf(e.ObjectNew.(*v1alpha1.Agent)) {
					enqueueFinished(ctx, c, e.ObjectNew, q)
				}
			},
		}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// hasTTL tells whether the Task has a time to live, its own or its
// Agent's as the cache shows it. An Agent that gets one later enqueues its
// Tasks (see the Agent watch); one the cache cannot read counts as having one.
func hasTTL(c client.Reader, t *v1alpha1.Task) bool {
	if t.Spec.TTLSecondsAfterFinished != nil {
		return true
	}
	agent := &v1alpha1.Agent{}
	err := c.Get(context.Background(), types.NamespacedName{Namespace: t.Namespace, Name: t.AgentName()}, agent, readOnly)
	if apierrors.IsNotFound(err) {
		return false
	}
	return err != nil || ttlOf(agent) >= 0
}

// ttlOf is an Agent's default time to live, -1 for none.
func ttlOf(a *v1alpha1.Agent) int64 {
	if a.Spec.TaskRetention == nil || a.Spec.TaskRetention.TTLSecondsAfterFinished == nil {
		return -1
	}
	return int64(*a.Spec.TaskRetention.TTLSecondsAfterFinished)
}

func enqueueFinished(ctx context.Context, c client.Reader, agent client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	var tasks v1alpha1.TaskList
	if err := c.List(ctx, &tasks, client.InNamespace(agent.GetNamespace()), client.MatchingFields{indexFinishedTaskAgent: agent.GetNamespace() + "/" + agent.GetName()}, readOnly); err != nil {
		return
	}
	for i := range tasks.Items {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tasks.Items[i].Namespace, Name: tasks.Items[i].Name}})
	}
}
