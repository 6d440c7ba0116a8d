package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// outcome is what a Job and its pod say about a Task.
type outcome struct {
	terminal  bool
	succeeded bool
	reason    string
	message   string
	exitCode  *int32
	repos     []v1alpha1.RepositoryStatus
	// pod is the Job's newest pod, nil if it has none.
	pod *corev1.Pod
}

// jobOutcome reads a finished Job from its conditions (not its counters),
// and explains a failure from the pod's container states.
func jobOutcome(job *batchv1.Job, pods []corev1.Pod) outcome {
	var o outcome
	pod := newestPod(pods)
	o.pod = pod
	o.repos = repositories(pod)
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			o.terminal, o.succeeded = true, true
			o.reason, o.message = v1alpha1.ReasonCompleted, "The agent exited with code 0."
			zero := int32(0)
			o.exitCode = &zero
			return o
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			o.terminal = true
			if c.Reason == batchv1.JobReasonDeadlineExceeded {
				o.reason = v1alpha1.ReasonDeadlineExceeded
				o.message = "The Task ran out of its spec.timeout and was stopped."
				if job.Spec.ActiveDeadlineSeconds != nil {
					o.message = fmt.Sprintf("The Task ran longer than its timeout of %s and was stopped.", time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second)
				}
				return o
			}
			if r, m, code, ok := podFailure(pod); ok {
				o.reason, o.message, o.exitCode = r, m, code
				return o
			}
			o.reason = v1alpha1.ReasonJobFailed
			o.message = fmt.Sprintf("Job %s failed: %s %s", job.Name, c.Reason, c.Message)
			return o
		}
	}
	return o
}

func newestPod(pods []corev1.Pod) *corev1.Pod {
	var p *corev1.Pod
	for i := range pods {
		if p == nil || pods[i].CreationTimestamp.After(p.CreationTimestamp.Time) {
			p = &pods[i]
		}
	}
	return p
}

// podFailure explains why the pod failed: an init container's reason from
// its termination message, or the agent's exit code, OOM kill or message.
func podFailure(pod *corev1.Pod) (reason, message string, exitCode *int32, ok bool) {
	if pod == nil {
		return "", "", nil, false
	}
	for _, s := range pod.Status.InitContainerStatuses {
		t := s.State.Terminated
		if t == nil || t.ExitCode == 0 {
			continue
		}
		msg := initMessage(t.Message)
		if s.Name == jobbuilder.EgressCheckContainer {
			if _, _, m, ok := egressVerdict(pod); ok {
				return v1alpha1.ReasonEgressNotEnforced, "The agent was not started: " + m, nil, true
			}
		}
		if strings.HasPrefix(msg, "plan version") {
			return v1alpha1.ReasonContractMismatch, fmt.Sprintf("Init container %s: %s", s.Name, msg), nil, true
		}
		if t.Reason == "OOMKilled" {
			return v1alpha1.ReasonOOMKilled, fmt.Sprintf("Init container %s ran out of memory.", s.Name), nil, true
		}
		if msg == "" {
			msg = fmt.Sprintf("exited with code %d (%s)", t.ExitCode, t.Reason)
		}
		return v1alpha1.ReasonInitFailed, fmt.Sprintf("Init container %s failed: %s", s.Name, msg), nil, true
	}
	for _, s := range pod.Status.ContainerStatuses {
		t := s.State.Terminated
		if s.Name != jobbuilder.AgentContainer || t == nil || t.ExitCode == 0 {
			continue
		}
		code := t.ExitCode
		if t.Reason == "OOMKilled" {
			return v1alpha1.ReasonOOMKilled, fmt.Sprintf("The agent was killed for using more memory than its limit (exit code %d). Raise the Agent's podSpec.resources.limits.memory.", code), &code, true
		}
		msg := fmt.Sprintf("The agent exited with code %d", code)
		if t.Reason != "" && t.Reason != "Error" {
			msg += " (" + t.Reason + ")"
		}
		if m := strings.TrimSpace(t.Message); m != "" {
			msg += ": " + lastLines(m, 5, 1024)
		} else {
			msg += "."
		}
		return v1alpha1.ReasonAgentFailed, msg, &code, true
	}
	return "", "", nil, false
}

// initMessage returns the error of an init binary's contract.Result, or the
// raw message when it is not one.
func initMessage(raw string) string {
	var r contract.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(raw)), &r); err == nil && r.Error != "" {
		return r.Error
	}
	return strings.TrimSpace(raw)
}

// repositories reads the commits git-init reported in its termination messages.
func repositories(pod *corev1.Pod) []v1alpha1.RepositoryStatus {
	if pod == nil {
		return nil
	}
	var out []v1alpha1.RepositoryStatus
	for _, s := range pod.Status.InitContainerStatuses {
		t := s.State.Terminated
		if !strings.HasPrefix(s.Name, jobbuilder.GitInitPrefix) || t == nil || t.ExitCode != 0 {
			continue
		}
		var r contract.Result
		if json.Unmarshal([]byte(strings.TrimSpace(t.Message)), &r) == nil && r.Commit != "" {
			out = append(out, v1alpha1.RepositoryStatus{Repository: r.Repository, Commit: r.Commit, MountPath: gitMountPath(pod, s.Name), SubmodulesLeftOut: r.SubmodulesLeftOut})
		}
	}
	return out
}

// gitMountPath is where the agent container sees a git-init container's checkout.
func gitMountPath(pod *corev1.Pod, container string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name != container {
			continue
		}
		for _, e := range c.Env {
			if e.Name == jobbuilder.EnvMountPath {
				return e.Value
			}
		}
	}
	return ""
}

func lastLines(s string, n, max int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, " | ")
	if len(out) > max {
		out = "..." + out[len(out)-max:]
	}
	return out
}

// trouble is a pod state that will not fix itself soon.
type trouble struct {
	reason  string
	message string
	// immediate troubles fail the Task at once; the others after a grace period.
	immediate bool
	// slow troubles may also be a large image still being pulled, so they
	// get the longer startup timeout.
	slow bool
}

// podTrouble spots pods that cannot start: images that cannot be pulled,
// missing Secrets or ConfigMaps, pods no node can take.
func podTrouble(pod *corev1.Pod) *trouble {
	if pod == nil || pod.DeletionTimestamp != nil {
		return nil
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &trouble{reason: v1alpha1.ReasonUnschedulable, message: "No node can run the Task's pod: " + c.Message}
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, s := range statuses {
		w := s.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "InvalidImageName":
			return &trouble{reason: v1alpha1.ReasonImagePullFailed, message: fmt.Sprintf("Container %s: image %q is not a valid reference: %s", s.Name, s.Image, w.Message), immediate: true}
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull":
			return &trouble{reason: v1alpha1.ReasonImagePullFailed, message: fmt.Sprintf("Container %s cannot pull image %q: %s", s.Name, s.Image, w.Message)}
		case "CreateContainerConfigError":
			reason := v1alpha1.ReasonSecretNotFound
			msg := strings.ToLower(w.Message)
			if strings.Contains(msg, "configmap") {
				reason = v1alpha1.ReasonConfigMapNotFound
			} else if strings.Contains(msg, "key") {
				reason = v1alpha1.ReasonSecretKeyNotFound
			}
			return &trouble{reason: reason, message: fmt.Sprintf("Container %s cannot start: %s", s.Name, w.Message)}
		case "CreateContainerError", "RunContainerError":
			return &trouble{reason: v1alpha1.ReasonJobFailed, message: fmt.Sprintf("Container %s cannot start: %s", s.Name, w.Message)}
		}
	}
	// A pod that stays in ContainerCreating usually has a volume kubelet
	// cannot mount, most often a credential's Secret that does not exist.
	// Kubelet reports that only in events, so name the candidates.
	if pod.Status.Phase == corev1.PodPending && scheduled(pod) {
		for _, s := range statuses {
			if w := s.State.Waiting; w != nil && (w.Reason == "ContainerCreating" || w.Reason == "PodInitializing") {
				msg := fmt.Sprintf("The pod has not started (container %s is %s)", s.Name, w.Reason)
				if secrets := secretVolumes(pod); len(secrets) > 0 {
					msg += fmt.Sprintf(": check that the Secrets %s exist, or whether the image is still being pulled", strings.Join(secrets, ", "))
				}
				return &trouble{reason: v1alpha1.ReasonPodNotStarting, message: msg, slow: true}
			}
		}
	}
	return nil
}

func scheduled(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func secretVolumes(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && (v.Secret.Optional == nil || !*v.Secret.Optional) {
			out = append(out, fmt.Sprintf("%q", v.Secret.SecretName))
		}
	}
	return out
}
