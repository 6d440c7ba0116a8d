package v1alpha1

// Condition types of a Task.
const (
	// TaskConditionReady is True once everything the Task needs exists and
	// is valid: the Agent, ConfigMaps, Secrets and the init images. While it
	// is False the Task waits in Pending, or fails when waiting cannot help.
	TaskConditionReady = "Ready"
	// TaskConditionQueued is True while the Task waits for a slot under the
	// Agent's maxConcurrentTasks.
	TaskConditionQueued = "Queued"
	// TaskConditionSucceeded is set when the Task ends: True when the agent
	// exited 0, False with the reason it did not.
	TaskConditionSucceeded = "Succeeded"
	// TaskConditionStopped is True when the Task was stopped by the user.
	TaskConditionStopped = "Stopped"
)

// Reasons of the Ready condition.
const (
	ReasonResolved               = "Resolved"
	ReasonAgentNotFound          = "AgentNotFound"
	ReasonConfigMapNotFound      = "ConfigMapNotFound"
	ReasonConfigMapKeyNotFound   = "ConfigMapKeyNotFound"
	ReasonSecretNotFound         = "SecretNotFound"
	ReasonSecretKeyNotFound      = "SecretKeyNotFound"
	ReasonImageResolutionFailed  = "ImageResolutionFailed"
	ReasonInvalidContexts        = "InvalidContexts"
	ReasonContextTooLarge        = "ContextTooLarge"
	ReasonJobNameConflict        = "JobNameConflict"
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
)

// Condition types of an Agent.
const (
	// AgentConditionReady is True when the Agent's Tasks can run: its
	// ServiceAccount exists.
	AgentConditionReady = "Ready"
)

// Reasons of the Queued condition.
const (
	ReasonWaitingForSlot = "WaitingForSlot"
	ReasonAdmitted       = "Admitted"
)

// Reasons of the Succeeded condition.
const (
	ReasonCompleted        = "Completed"
	ReasonAgentFailed      = "AgentFailed"
	ReasonInitFailed       = "InitFailed"
	ReasonOOMKilled        = "OOMKilled"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonImagePullFailed  = "ImagePullFailed"
	ReasonUnschedulable    = "Unschedulable"
	ReasonJobDeleted       = "JobDeleted"
	ReasonJobFailed        = "JobFailed"
	ReasonContractMismatch = "ContractMismatch"
	ReasonStopped          = "Stopped"
	ReasonPodRejected      = "PodRejected"
	ReasonPodNotStarting   = "PodNotStarting"
)

// Reasons of the Stopped condition.
const (
	ReasonUserStopped = "UserStopped"
)
