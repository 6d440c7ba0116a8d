package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultAgentName is the Agent a Task uses when spec.agentRef is empty.
const DefaultAgentName = "default"

// StopAnnotation, set to "true" on a Task, stops it in any phase that is not
// terminal: a queued Task never starts, a running Task's Job is deleted.
const StopAnnotation = "kubeopencode.io/stop"

// TaskPhase is a simple, high-level summary of where a Task is in its life.
// +kubebuilder:validation:Enum=Pending;Queued;Running;Completed;Failed
type TaskPhase string

const (
	// TaskPhasePending: the Task waits for something it needs (its Agent, a
	// ConfigMap, a Secret, the init images); a condition says what.
	TaskPhasePending TaskPhase = "Pending"
	// TaskPhaseQueued: the Agent's maxConcurrentTasks is reached; the Task
	// starts when a slot frees, in creation order.
	TaskPhaseQueued TaskPhase = "Queued"
	// TaskPhaseRunning: the Task's Job exists and has not finished.
	TaskPhaseRunning TaskPhase = "Running"
	// TaskPhaseCompleted: the agent exited 0.
	TaskPhaseCompleted TaskPhase = "Completed"
	// TaskPhaseFailed: the Task cannot or did not succeed; the Succeeded
	// condition says why.
	TaskPhaseFailed TaskPhase = "Failed"
)

// IsTerminal reports whether the phase is final.
func (p TaskPhase) IsTerminal() bool {
	return p == TaskPhaseCompleted || p == TaskPhaseFailed
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=tk,categories=kubeopencode
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agent`
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.status.jobName`
// +kubebuilder:printcolumn:name="Tokens",type=integer,JSONPath=`.status.results.usage.totalTokens`
// +kubebuilder:printcolumn:name="Cost",type=string,JSONPath=`.status.results.usage.costUSD`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Task is one run of an AI coding agent: a prompt (description) and the
// context it works on. The controller turns each Task into exactly one Job.
// A Task's spec cannot change once created; create a new Task to run again.
type Task struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is what to run.
	// +required
	Spec TaskSpec `json:"spec"`

	// Status is what happened.
	// +optional
	Status TaskStatus `json:"status,omitempty"`
}

// TaskSpec is what a Task runs. It is immutable.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Task spec is immutable (a Task is one run): create a new Task instead of editing this one"
// +kubebuilder:validation:XValidation:rule="has(self.description) || (has(self.contexts) && size(self.contexts) > 0)",message="a Task needs spec.description or at least one context: say what the agent should do"
type TaskSpec struct {
	// Description is the prompt. It becomes the top of ${WORKSPACE_DIR}/task.md.
	// +optional
	// +kubebuilder:validation:MaxLength=1048576
	Description *string `json:"description,omitempty"`

	// Contexts are added after the Agent's contexts.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Contexts []ContextItem `json:"contexts,omitempty"`

	// AgentRef names the Agent, in the Task's namespace, that runs this Task.
	// Default "default". The Task waits in Pending until the Agent exists.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	AgentRef string `json:"agentRef,omitempty"`

	// Timeout is the budget for the run, counted from the start of execution
	// (time in the queue does not count), for example "30m" or "2h". When it
	// runs out the Job is stopped and the Task fails with reason
	// DeadlineExceeded. No timeout when empty.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="timeout must be at least 1s, e.g. \"30m\""
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// TTLSecondsAfterFinished is how long, in seconds, the Task is kept after
	// it finishes (status.completionTime, phase Completed or Failed); then
	// it is deleted together with its Job, the Job's pods and its context
	// ConfigMap. 0 deletes it as soon as it finishes. Unset: the Agent's
	// spec.taskRetention.ttlSecondsAfterFinished applies, and without one
	// the Task is kept until deleted. Tasks created by a Sensor for every
	// webhook should set it (for example 604800, a week).
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="ttlSecondsAfterFinished must be 0 or more seconds: 0 deletes the Task as soon as it finishes; remove the field to keep it"
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// AgentName is the Agent the Task uses: spec.agentRef or "default".
func (t *Task) AgentName() string {
	if t.Spec.AgentRef == "" {
		return DefaultAgentName
	}
	return t.Spec.AgentRef
}

// TaskStatus is what happened to a Task.
type TaskStatus struct {
	// Phase is a one-word summary: Pending, Queued, Running, Completed or Failed.
	// +optional
	Phase TaskPhase `json:"phase,omitempty"`

	// Agent is the name of the Agent the Task runs with.
	// +optional
	Agent string `json:"agent,omitempty"`

	// JobName is the name of the Task's Job.
	// +optional
	JobName string `json:"jobName,omitempty"`

	// StartTime is when the Job was created (the end of any queueing).
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// CompletionTime is when the Task reached Completed or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Images are the init images, pinned by digest, that the Job ran with.
	// +optional
	Images *TaskImages `json:"images,omitempty"`

	// Repositories are the commits git-init checked out, one per Git context.
	// +optional
	// +listType=atomic
	Repositories []RepositoryStatus `json:"repositories,omitempty"`

	// ExitCode is the agent container's exit code, once it has exited.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// Results is what the agent reported when it ended: its final answer,
	// what it did in each Git context, a pull request, its model usage. It
	// is data the agent container printed (see api/contract/results.go), set
	// together with the terminal phase; the phase itself comes from the
	// agent's exit code, never from the results.
	// +optional
	Results *TaskResults `json:"results,omitempty"`

	// Transcript names the Task-owned ConfigMap that keeps the agent's
	// output (its text, tool calls and their output, its final answer) for
	// the Task's lifetime, after its pod is gone: the ConfigMap is named
	// after the Task's Job, <task>-transcript for most Tasks. Read it with
	//   kubectl get configmap "$(kubectl get task NAME -o jsonpath='{.status.transcript.configMap}')" -o jsonpath='{.data.transcript}'
	// +optional
	Transcript *TranscriptStatus `json:"transcript,omitempty"`

	// Egress describes the egress isolation of the Task's pod, when its
	// Agent sets network.egress: the NetworkPolicy, what it allows (host
	// names with the addresses they resolved to) and what the pod found
	// refused before anything else in it ran.
	// +optional
	Egress *TaskEgressStatus `json:"egress,omitempty"`

	// Conditions: Ready (inputs resolved), Queued, Succeeded, Stopped,
	// EgressEnforced.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TaskImages are image references pinned by digest (repository@sha256:...).
type TaskImages struct {
	// GitInit is the git-init image.
	// +optional
	GitInit string `json:"gitInit,omitempty"`
	// ContextInit is the context-init image.
	// +optional
	ContextInit string `json:"contextInit,omitempty"`
}

// RepositoryStatus records what a Git context checked out.
type RepositoryStatus struct {
	// MountPath is the Git context's mountPath.
	MountPath string `json:"mountPath"`
	// Repository is the URL that was cloned.
	Repository string `json:"repository"`
	// Commit is the SHA that was checked out.
	Commit string `json:"commit"`
	// SubmodulesLeftOut lists the paths of submodules that were not
	// checked out (their directories are empty) because the Git context's
	// submodules is false; at most 20, then "... and N more".
	// +optional
	// +listType=atomic
	SubmodulesLeftOut []string `json:"submodulesLeftOut,omitempty"`
}

// TaskEgressStatus is the egress isolation of a Task's pod.
type TaskEgressStatus struct {
	// NetworkPolicy is the name of the Task-owned NetworkPolicy that
	// selects the Task's pod.
	NetworkPolicy string `json:"networkPolicy"`

	// Allowed lists the destinations the policy allows besides DNS, one per
	// entry: "10.20.0.0/16 TCP 443" for a cidr, "api.openai.com
	// (203.0.113.7, 203.0.113.8) TCP 443" for a host name, with the
	// addresses it resolved to when the Task started.
	// +optional
	// +listType=atomic
	Allowed []string `json:"allowed,omitempty"`

	// Refused lists the addresses the pod tried and could not reach before
	// anything else in it ran, each with what it is: "10.96.0.1:443
	// (Kubernetes API)", "169.254.169.254:80 (cloud metadata)". Empty until
	// the check has run.
	// +optional
	// +listType=atomic
	Refused []string `json:"refused,omitempty"`
}

// TaskResults is what the agent reported.
type TaskResults struct {
	// Summary is the agent's final answer, at most 4 KiB: a longer one is
	// cut at a character boundary and ends in a marker saying how much.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Summary string `json:"summary,omitempty"`

	// PullRequestURL is the pull (or merge) request the agent opened or
	// named: for agent-opencode, the last such URL in the model's text or
	// its tools' output (docs/results.md gives the rule).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	PullRequestURL string `json:"pullRequestURL,omitempty"`

	// Repositories say what the agent left in each Git context's checkout.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Repositories []RepositoryResult `json:"repositories,omitempty"`

	// Usage is the model usage summed over the run.
	// +optional
	Usage *TaskUsage `json:"usage,omitempty"`

	// Message says why results are missing or incomplete, for example an
	// agent image that reports none or a results line that could not be
	// read. Empty when the agent reported its results.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// RepositoryResult is what the agent left in one Git context's checkout.
type RepositoryResult struct {
	// MountPath is the Git context's mountPath.
	// +kubebuilder:validation:MaxLength=4096
	MountPath string `json:"mountPath"`
	// Commit is the commit HEAD pointed to when the agent ended.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Commit string `json:"commit,omitempty"`
	// BaseCommit is the commit git-init checked out: the diff counts are
	// against it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	BaseCommit string `json:"baseCommit,omitempty"`
	// Dirty says the checkout held changes that were not committed
	// (untracked files included, ignored files not).
	// +optional
	Dirty bool `json:"dirty,omitempty"`
	// FilesChanged, Insertions and Deletions compare what the agent left
	// (commits and uncommitted changes alike) with BaseCommit.
	// +optional
	FilesChanged int64 `json:"filesChanged,omitempty"`
	// +optional
	Insertions int64 `json:"insertions,omitempty"`
	// +optional
	Deletions int64 `json:"deletions,omitempty"`
	// PushedBranches are the branches of the checkout's origin that pointed
	// at a commit the agent made when it ended, with their commit as the
	// remote reported it.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	PushedBranches []PushedBranch `json:"pushedBranches,omitempty"`
	// Error says why some of these facts are missing.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
}

// PushedBranch is a branch on the remote and its commit there.
type PushedBranch struct {
	// +kubebuilder:validation:MaxLength=255
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=64
	Commit string `json:"commit"`
}

// TaskUsage is the model usage of a run.
type TaskUsage struct {
	// +optional
	InputTokens int64 `json:"inputTokens,omitempty"`
	// +optional
	OutputTokens int64 `json:"outputTokens,omitempty"`
	// +optional
	ReasoningTokens int64 `json:"reasoningTokens,omitempty"`
	// +optional
	CacheReadTokens int64 `json:"cacheReadTokens,omitempty"`
	// +optional
	CacheWriteTokens int64 `json:"cacheWriteTokens,omitempty"`
	// TotalTokens is the sum of the five counts above.
	// +optional
	TotalTokens int64 `json:"totalTokens,omitempty"`
	// Steps is the number of model steps.
	// +optional
	Steps int64 `json:"steps,omitempty"`
	// CostUSD is the cost in US dollars as the agent computed it, a
	// decimal with six digits after the point, for example "0.004200".
	// +optional
	// +kubebuilder:validation:MaxLength=32
	CostUSD string `json:"costUSD,omitempty"`
}

// TranscriptStatus describes the Task's transcript.
type TranscriptStatus struct {
	// ConfigMap is the name of the Task-owned ConfigMap, in the Task's
	// namespace, whose key "transcript" holds the transcript.
	ConfigMap string `json:"configMap"`
	// Bytes is the size of the agent's output so far.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// Truncated says the output was larger than the 1 MiB kept: the
	// transcript keeps its beginning and its end, with a line saying how
	// much was left out between them.
	// +optional
	Truncated bool `json:"truncated,omitempty"`
}

// +kubebuilder:object:root=true

// TaskList is a list of Tasks.
type TaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Task `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Task{}, &TaskList{})
}
