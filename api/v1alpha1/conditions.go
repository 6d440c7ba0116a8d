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
	// TaskConditionEgressEnforced, on a Task whose Agent sets
	// network.egress, says whether its pod found the addresses the policy
	// refuses out of its reach before anything else in it ran: True
	// (reason Enforced), False (reason EgressNotEnforced: the Task fails),
	// or Unknown (reason NotVerifiable: the allow-list admits every address
	// the check could try).
	TaskConditionEgressEnforced = "EgressEnforced"
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
	// ReasonEgressUnresolved: a host name of the egress allow-list (or of a
	// Git context) does not resolve, or the API server's addresses cannot
	// be read, so the Task's NetworkPolicy cannot be written yet.
	ReasonEgressUnresolved = "EgressUnresolved"
	// ReasonInvalidEgress: the Agent's network.egress cannot be written as
	// a policy for this Task (say, a cidr that is exactly the API server's
	// address); the Task fails.
	ReasonInvalidEgress = "InvalidEgress"
)

// Condition types of an Agent.
const (
	// AgentConditionReady is True when the Agent's Tasks can run: its
	// ServiceAccount exists.
	AgentConditionReady = "Ready"
	// AgentConditionEgressEnforced, on an Agent that sets network.egress,
	// repeats the EgressEnforced condition of its Task that checked last:
	// False warns that the cluster's network plugin does not enforce
	// NetworkPolicy (its Tasks fail with EgressNotEnforced).
	AgentConditionEgressEnforced = "EgressEnforced"
)

// Reasons of the EgressEnforced condition.
const (
	ReasonEgressEnforced      = "Enforced"
	ReasonEgressNotEnforced   = "EgressNotEnforced"
	ReasonEgressNotVerifiable = "NotVerifiable"
	// ReasonEgressNotChecked: no Task of the Agent has checked yet.
	ReasonEgressNotChecked = "NotChecked"
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
