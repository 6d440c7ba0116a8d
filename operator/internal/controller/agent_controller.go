package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// AgentReconciler keeps each Agent's status: how many of its Tasks run and
// how many wait in the queue.
type AgentReconciler struct {
	Client client.Client
}

// Reconcile recounts one Agent's Tasks.
func (r *AgentReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, req.NamespacedName, agent); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var tasks v1alpha1.TaskList
	if err := r.Client.List(ctx, &tasks, client.InNamespace(agent.Namespace), client.MatchingFields{indexTaskAgent: agent.Namespace + "/" + agent.Name}); err != nil {
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
	patch := client.MergeFrom(agent.DeepCopy())
	changed := agent.Status.Running != running || agent.Status.Queued != queued || agent.Status.ObservedGeneration != agent.Generation
	agent.Status.Running, agent.Status.Queued = running, queued
	agent.Status.ObservedGeneration = agent.Generation
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "The Agent accepts Tasks.", ObservedGeneration: agent.Generation}
	if c := meta.FindStatusCondition(agent.Status.Conditions, ready.Type); c == nil || c.ObservedGeneration != agent.Generation {
		meta.SetStatusCondition(&agent.Status.Conditions, ready)
		changed = true
	}
	if !changed {
		return reconcile.Result{}, nil
	}
	err := r.Client.Status().Patch(ctx, agent, patch)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, err
}

// SetupWithManager registers the Agent controller. IndexTasks must have been called.
func (r *AgentReconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.ControllerManagedBy(mgr).
		Named("agent").
		For(&v1alpha1.Agent{}).
		Watches(&v1alpha1.Task{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			t := o.(*v1alpha1.Task)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.AgentName()}}}
		})).
		Complete(r)
}
