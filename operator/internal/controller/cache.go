package controller

import (
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// The cache transforms below keep of each object only what reconciliation
// reads, so that the controller's memory follows the work in flight and not
// the cluster's history: finished Tasks, their Jobs and the Jobs' pods stay
// in the cluster until retention (or a user) removes them, and the
// controller holds all of them.
//
// Each transform builds a new, smaller object instead of clearing fields of
// the one it gets: whatever a future API version adds is dropped too. Each
// is idempotent, as client-go requires (an object may pass twice).
//
// Whatever reads a field these transforms drop must read it from the API
// server (TaskReconciler.APIReader), never from the cache.

// slimMeta keeps the identity, labels and owners of an object and the
// annotations whose key starts with one of keep.
func slimMeta(m *metav1.ObjectMeta, keep ...string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
		Labels: m.Labels, OwnerReferences: m.OwnerReferences, Finalizers: m.Finalizers,
	}
	for k, v := range m.Annotations {
		for _, prefix := range keep {
			if strings.HasPrefix(k, prefix) {
				if out.Annotations == nil {
					out.Annotations = map[string]string{}
				}
				out.Annotations[k] = v
				break
			}
		}
	}
	return out
}

// slimTask keeps a Task that has not finished whole (less its managedFields):
// the controller still acts on it. Of a finished Task it keeps what the
// queue, retention and the Agent's counts read: identity, Agent, phase,
// completion time and TTL. The prompt, the contexts, the conditions and
// anything a Sensor put in labels or annotations go.
func slimTask(obj any) (any, error) {
	t, ok := obj.(*v1alpha1.Task)
	if !ok {
		return obj, nil
	}
	if !t.Status.Phase.IsTerminal() {
		t.ManagedFields = nil
		return t, nil
	}
	return &v1alpha1.Task{
		TypeMeta: t.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: t.Name, Namespace: t.Namespace, UID: t.UID, ResourceVersion: t.ResourceVersion,
			Generation: t.Generation, CreationTimestamp: t.CreationTimestamp, DeletionTimestamp: t.DeletionTimestamp,
			Finalizers: t.Finalizers,
		},
		Spec: v1alpha1.TaskSpec{AgentRef: t.Spec.AgentRef, TTLSecondsAfterFinished: t.Spec.TTLSecondsAfterFinished},
		Status: v1alpha1.TaskStatus{
			Phase: t.Status.Phase, Agent: t.Status.Agent, JobName: t.Status.JobName,
			CompletionTime: t.Status.CompletionTime, ObservedGeneration: t.Status.ObservedGeneration,
		},
	}, nil
}

// slimJob keeps of a Job its identity, labels, owner, the controller's
// annotations, the deadline (named in a timeout's message) and the status
// the controller follows. The pod template, the bulk of a Job (it carries
// the prompt and small contexts), is never read back: the controller built
// it. The one path that needs it (noPod) reads the Job from the API server.
func slimJob(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return obj, nil
	}
	return &batchv1.Job{
		TypeMeta:   j.TypeMeta,
		ObjectMeta: slimMeta(&j.ObjectMeta, jobbuilder.AnnotationTaskName, jobbuilder.AnnotationAgentName),
		Spec:       batchv1.JobSpec{ActiveDeadlineSeconds: j.Spec.ActiveDeadlineSeconds},
		Status: batchv1.JobStatus{
			Conditions: j.Status.Conditions, Active: j.Status.Active,
			Succeeded: j.Status.Succeeded, Failed: j.Status.Failed,
		},
	}, nil
}

// slimPod keeps of a Task's pod what explains how it started and ended: its
// phase and conditions, its containers' names, images and states (exit
// codes, termination messages with the commits git-init checked out), the
// mount path each git-init container was given and the Secret volumes it
// waits for. The rest of the spec, and the context plan annotation that can
// hold up to 64 KiB of contexts, go.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: slimMeta(&p.ObjectMeta, jobbuilder.AnnotationTaskName),
		Status: corev1.PodStatus{
			Phase: p.Status.Phase, Conditions: p.Status.Conditions,
			InitContainerStatuses: slimStatuses(p.Status.InitContainerStatuses),
			ContainerStatuses:     slimStatuses(p.Status.ContainerStatuses),
		},
	}
	for _, c := range p.Spec.InitContainers {
		kept := corev1.Container{Name: c.Name}
		for _, e := range c.Env {
			if e.Name == jobbuilder.EnvMountPath {
				kept.Env = []corev1.EnvVar{{Name: e.Name, Value: e.Value}}
			}
		}
		out.Spec.InitContainers = append(out.Spec.InitContainers, kept)
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil {
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{Secret: v.Secret}})
		}
	}
	return out, nil
}

func slimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if in == nil {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i] = corev1.ContainerStatus{Name: s.Name, Image: s.Image, State: s.State}
	}
	return out
}
