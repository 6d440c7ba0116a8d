package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// AgentReconciler keeps each Agent's status: how many of its Tasks run and
// how many wait in the queue.
type AgentReconciler struct {
	Client client.Client
	// APIReader reads ServiceAccounts, which are not cached.
	APIReader       client.Reader
	serviceAccounts *serviceAccounts
}

// Reconcile recounts one Agent's Tasks.
func (r *AgentReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, req.NamespacedName, agent); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var tasks v1alpha1.TaskList
	if err := r.Client.List(ctx, &tasks, client.InNamespace(agent.Namespace), client.MatchingFields{indexTaskAgent: agent.Namespace + "/" + agent.Name}, readOnly); err != nil {
		return reconcile.Result{}, err
	}
	var running, queued int32
	for i := range tasks.Items {
		switch tasks.Items[i].Status.Phase {
		case v1alpha1.TaskPhaseRunning:
			running++
		case v1alpha1.TaskPhaseQueued:
			queued++
		}
	}
	// Locked: the Task controller writes the EgressEnforced condition, and
	// a patch from a cache that has not seen it must not drop it.
	patch := client.MergeFromWithOptions(agent.DeepCopy(), client.MergeFromWithOptimisticLock{})
	changed := agent.Status.Running != running || agent.Status.Queued != queued || agent.Status.ObservedGeneration != agent.Generation
	agent.Status.Running, agent.Status.Queued = running, queued
	agent.Status.ObservedGeneration = agent.Generation
	ready := metav1.Condition{Type: v1alpha1.AgentConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolved,
		Message: "The Agent's ServiceAccount exists; its Tasks can run.", ObservedGeneration: agent.Generation}
	ok, err := r.serviceAccounts.exists(ctx, agent.Namespace, agent.Spec.ServiceAccountName)
	if err != nil {
		return reconcile.Result{}, err
	}
	var requeue reconcile.Result
	if !ok {
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonServiceAccountNotFound
		ready.Message = fmt.Sprintf("ServiceAccount %q does not exist in namespace %s: create it; until then this Agent's Tasks wait in Pending.", agent.Spec.ServiceAccountName, agent.Namespace)
		requeue.RequeueAfter = recheckMissing
	}
	if c := meta.FindStatusCondition(agent.Status.Conditions, ready.Type); c == nil || c.ObservedGeneration != agent.Generation || c.Status != ready.Status || c.Message != ready.Message {
		meta.SetStatusCondition(&agent.Status.Conditions, ready)
		changed = true
	}
	if eg := agentEgressCondition(agent); eg == nil {
		changed = meta.RemoveStatusCondition(&agent.Status.Conditions, v1alpha1.AgentConditionEgressEnforced) || changed
	} else if meta.FindStatusCondition(agent.Status.Conditions, eg.Type) == nil {
		meta.SetStatusCondition(&agent.Status.Conditions, *eg)
		changed = true
	}
	if !changed {
		return requeue, nil
	}
	err = r.Client.Status().Patch(ctx, agent, patch)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, nil
	}
	if apierrors.IsConflict(err) {
		return reconcile.Result{Requeue: true}, nil
	}
	return requeue, err
}

// SetupWithManager registers the Agent controller. IndexTasks must have been called.
func (r *AgentReconciler) SetupWithManager(mgr manager.Manager) error {
	if r.serviceAccounts == nil {
		r.serviceAccounts = newServiceAccounts(r.APIReader)
	}
	return builder.ControllerManagedBy(mgr).
		Named("agent").
		// Its own status writes need no recount: only the spec and the
		// Tasks change the counts.
		For(&v1alpha1.Agent{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Task{}, handler.Funcs{
			CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				recount(e.Object, q)
			},
			UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				old, cur := e.ObjectOld.(*v1alpha1.Task), e.ObjectNew.(*v1alpha1.Task)
				if old.Status.Phase != cur.Status.Phase {
					recount(cur, q)
				}
			},
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				recount(e.Object, q)
			},
		}).
		Complete(r)
}

// agentRecountDelay is how long an Agent's counts may trail its Tasks. The
// work queue keeps one pending recount per Agent, so a burst of Tasks costs
// the API server one status write per Agent per delay rather than one per
// Task.
const agentRecountDelay = 500 * time.Millisecond

func recount(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	t, ok := o.(*v1alpha1.Task)
	if !ok {
		return
	}
	q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.AgentName()}}, agentRecountDelay)
}
