package v1alpha1

// TaskRetention says how long an Agent's finished Tasks are kept. A finished
// Task is one in phase Completed or Failed; Tasks that have not finished are
// never removed by retention. Deleting a Task deletes its Job, the Job's pods
// and its context ConfigMap with it (the garbage collector follows their
// owner references). Without taskRetention finished Tasks are kept until
// someone deletes them.
//
// +kubebuilder:validation:XValidation:rule="has(self.ttlSecondsAfterFinished) || has(self.successfulTasksHistoryLimit) || has(self.failedTasksHistoryLimit)",message="taskRetention is empty: set ttlSecondsAfterFinished, successfulTasksHistoryLimit or failedTasksHistoryLimit, or remove taskRetention to keep finished Tasks forever"
type TaskRetention struct {
	// TTLSecondsAfterFinished is how long, in seconds, a finished Task of
	// this Agent is kept after its status.completionTime before it is
	// deleted, for Tasks that do not set spec.ttlSecondsAfterFinished
	// themselves. 0 deletes a Task as soon as it finishes. Unset: no time
	// limit.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="ttlSecondsAfterFinished must be 0 or more seconds: 0 deletes finished Tasks at once; remove the field to keep them"
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// SuccessfulTasksHistoryLimit is how many of this Agent's Completed
	// Tasks are kept in the namespace; older ones are deleted first, by
	// status.completionTime. Unset: no limit.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="successfulTasksHistoryLimit must be 0 or more: 0 keeps no Completed Task; remove the field for no limit"
	SuccessfulTasksHistoryLimit *int32 `json:"successfulTasksHistoryLimit,omitempty"`

	// FailedTasksHistoryLimit is how many of this Agent's Failed Tasks are
	// kept in the namespace; older ones are deleted first, by
	// status.completionTime. Counted apart from Completed Tasks, so that a
	// run of successes does not remove the failures worth looking at.
	// Unset: no limit.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="failedTasksHistoryLimit must be 0 or more: 0 keeps no Failed Task; remove the field for no limit"
	FailedTasksHistoryLimit *int32 `json:"failedTasksHistoryLimit,omitempty"`
}
