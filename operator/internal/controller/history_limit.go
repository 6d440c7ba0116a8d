package controller

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// HistoryLimitReconciler keeps at most an Agent's
// spec.taskRetention.successfulTasksHistoryLimit Completed Tasks and
// failedTasksHistoryLimit Failed Tasks, as the CronJob controller keeps its
// Jobs: the two are counted apart and the oldest go first. Tasks that have
// not finished never count and are never touched.
type HistoryLimitReconciler struct {
	Client  client.Client
	deleter *taskDeleter
}

// historyDelay is how long an Agent's history may exceed its limits after a
// Task finishes: one count per Agent per delay, whatever the number of Tasks
// that finish meanwhile.
const historyDelay = time.Second

// Reconcile deletes the oldest finished Tasks beyond one Agent's limits.
func (r *HistoryLimitReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, req.NamespacedName, agent); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	keep := agent.Spec.TaskRetention
	if keep == nil || (keep.SuccessfulTasksHistoryLimit == nil && keep.FailedTasksHistoryLimit == nil) {
		return reconcile.Result{}, nil
	}
	tasks, err := finishedTasks(ctx, r.Client, agent.Namespace, agent.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	var completed, failed []*v1alpha1.Task
	for _, t := range tasks {
		if t.Status.Phase == v1alpha1.TaskPhaseCompleted {
			completed = append(completed, t)
		} else {
			failed = append(failed, t)
		}
	}
	for _, set := range []struct {
		tasks []*v1alpha1.Task
		limit *int32
		field string
	}{
		{completed, keep.SuccessfulTasksHistoryLimit, "successfulTasksHistoryLimit"},
		{failed, keep.FailedTasksHistoryLimit, "failedTasksHistoryLimit"},
	} {
		if set.limit == nil || len(set.tasks) <= int(*set.limit) {
			continue
		}
		for _, t := range set.tasks[*set.limit:] {
			// The list is read-only: hand the deleter a copy of what it needs.
			victim := &v1alpha1.Task{}
			victim.Namespace, victim.Name, victim.UID, victim.Status.Phase = t.Namespace, t.Name, t.UID, t.Status.Phase
			if err := r.deleter.delete(ctx, victim, "history-limit", fmt.Sprintf("Agent %s keeps %s %d", agent.Name, set.field, *set.limit)); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	return reconcile.Result{}, nil
}

// SetupWithManager registers the controller. IndexTasks must have been called.
func (r *HistoryLimitReconciler) SetupWithManager(mgr ctrl.Manager, deleter *taskDeleter) error {
	r.deleter = deleter
	return ctrl.NewControllerManagedBy(mgr).
		Named("task-history").
		For(&v1alpha1.Agent{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A Task that finishes (or is found finished on start) may push its
		// Agent over a limit.
		Watches(&v1alpha1.Task{}, handler.Funcs{
			CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				if t := e.Object.(*v1alpha1.Task); t.Status.Phase.IsTerminal() {
					q.AddAfter(agentRequest(t), historyDelay)
				}
			},
			UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				if t := e.ObjectNew.(*v1alpha1.Task); t.Status.Phase.IsTerminal() && !e.ObjectOld.(*v1alpha1.Task).Status.Phase.IsTerminal() {
					q.AddAfter(agentRequest(t), historyDelay)
				}
			},
		}).
		Complete(r)
}

func agentRequest(t *v1alpha1.Task) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.AgentName()}}
}
