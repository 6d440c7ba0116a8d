package jobbuilder

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Labels and annotations the controller puts on the objects it creates.
const (
	// LabelTaskUID carries the owning Task's UID. Its presence is also the
	// selector of the controller's Job and Pod caches.
	LabelTaskUID = "kubeopencode.io/task-uid"
	// LabelTask carries the Task's name, shortened to fit a label value.
	LabelTask = "kubeopencode.io/task"
	// LabelAgent carries the Agent's name, shortened to fit a label value.
	LabelAgent = "kubeopencode.io/agent"
	// LabelManagedBy marks objects created by the controller.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "kubeopencode"
	// AnnotationTaskName carries the Task's full name on the Job and its Pods.
	AnnotationTaskName = "kubeopencode.io/task-name"
	// AnnotationAgentName carries the Agent's full name on the Job.
	AnnotationAgentName = "kubeopencode.io/agent-name"
)

// maxJobNameLength leaves room for the "-xxxxx" suffix the Job controller
// appends to pod names, so that every pod name stays a valid DNS label.
const maxJobNameLength = 52

// JobName derives the Job's name from the Task's. Names that fit are kept as
// they are (so `kubectl get job <task>` works); longer ones, and names with
// dots, which are legal in Task names but not in pod hostnames, are shortened
// and given a hash of the full name so that two Tasks never share a Job name.
func JobName(taskName string) string {
	if len(taskName) <= maxJobNameLength && !strings.Contains(taskName, ".") {
		return taskName
	}
	return shorten(strings.ReplaceAll(taskName, ".", "-"), taskName, maxJobNameLength)
}

// ContextConfigMapName is the name of the Task-owned ConfigMap that carries
// the context plan and content to context-init.
func ContextConfigMapName(jobName string) string {
	return jobName + "-context"
}

// LabelValue fits a name into a label value (63 characters at most).
func LabelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	return shorten(name, name, 63)
}

// shorten cuts s to fit max characters, ending in a hash of full.
func shorten(s, full string, max int) string {
	sum := sha256.Sum256([]byte(full))
	suffix := hex.EncodeToString(sum[:])[:10]
	keep := max - len(suffix) - 1
	if len(s) > keep {
		s = s[:keep]
	}
	s = strings.TrimRight(s, "-.")
	return s + "-" + suffix
}
