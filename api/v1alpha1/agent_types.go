package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultWorkspaceDir is where the workspace is mounted when an Agent does not say.
const DefaultWorkspaceDir = "/workspace"

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ag,categories=kubeopencode
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.agentImage`
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.running`
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.queued`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Agent says how Tasks run: the agent image and command, the credentials it
// receives, the pod settings and how many Tasks may run at once. Tasks in the
// same namespace name it in spec.agentRef.
type Agent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is how Tasks run.
	// +required
	Spec AgentSpec `json:"spec"`

	// Status counts the Agent's Tasks.
	// +optional
	Status AgentStatus `json:"status,omitempty"`
}

// AgentSpec is how Tasks run.
// +kubebuilder:validation:XValidation:rule="!has(self.env) || !has(self.credentials) || self.env.all(e, !self.credentials.exists(c, has(c.env) && c.env == e.name))",message="a variable in env is also a credential's env: set it in one place",fieldPath=".env",reason="FieldValueInvalid"
type AgentSpec struct {
	// AgentImage is the container image of the agent, for example an image
	// with OpenCode or Claude Code and the tools the agent needs. Pin it by
	// digest for reproducible runs.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.matches('\\\\s')",message="agentImage must not contain spaces"
	AgentImage string `json:"agentImage"`

	// WorkspaceDir is the absolute directory where the workspace (task.md,
	// relative mountPaths, Git checkouts) is mounted, exported to the agent as
	// WORKSPACE_DIR. Default /workspace.
	// +optional
	// +kubebuilder:default=/workspace
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && self != '/'",message="workspaceDir must be an absolute directory other than '/', e.g. /workspace"
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('/') && !self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//')",message="workspaceDir must be clean: no trailing '/', no '.' or '..' segments, no '//'"
	WorkspaceDir string `json:"workspaceDir,omitempty"`

	// Command is the agent container's entrypoint, for example
	// ["sh", "-c", "opencode run \"$(cat $WORKSPACE_DIR/task.md)\""].
	// +required
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	Command []string `json:"command"`

	// Args are the arguments to Command.
	// +optional
	// +listType=atomic
	Args []string `json:"args,omitempty"`

	// Contexts are given to every Task of this Agent, before the Task's own.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Contexts []ContextItem `json:"contexts,omitempty"`

	// Env sets environment variables of the agent container, as a Pod's
	// container env does: a plain value, or a value from a ConfigMap key
	// (valueFrom.configMapKeyRef), a Secret key (valueFrom.secretKeyRef) or
	// a pod field. Use it for configuration that is not secret, for example
	// the model (OPENCODE_MODEL) or OpenCode's configuration
	// (OPENCODE_CONFIG_CONTENT); give API keys as credentials. A value may
	// refer to another variable as $(NAME). The controller's own variables
	// (TASK_NAME, TASK_NAMESPACE, AGENT_NAME, WORKSPACE_DIR, TASK_FILE,
	// KUBEOPENCODE_GIT_CONTEXTS, KUBEOPENCODE_CREDENTIAL_ENV) and the
	// credentials' variables cannot be set here.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['TASK_NAME', 'TASK_NAMESPACE', 'AGENT_NAME', 'WORKSPACE_DIR', 'TASK_FILE', 'KUBEOPENCODE_GIT_CONTEXTS', 'KUBEOPENCODE_CREDENTIAL_ENV']))",message="env must not set TASK_NAME, TASK_NAMESPACE, AGENT_NAME, WORKSPACE_DIR, TASK_FILE, KUBEOPENCODE_GIT_CONTEXTS or KUBEOPENCODE_CREDENTIAL_ENV: the controller sets them for every Task"
	Env []corev1.EnvVar `json:"env,omitempty"`

	// Credentials are Secrets given to the agent container as environment
	// variables or files.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Credentials []Credential `json:"credentials,omitempty"`

	// PodSpec holds settings of the Task pods: labels, annotations,
	// scheduling, runtime class, resources and security context.
	// +optional
	PodSpec *AgentPodSpec `json:"podSpec,omitempty"`

	// ServiceAccountName is the ServiceAccount, in the Agent's namespace, the
	// Task pods run as. It decides what the agent may do in the cluster.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName"`

	// MaxConcurrentTasks is how many of this Agent's Tasks may run at once;
	// the others wait in Queued and start in creation order. 0 or absent
	// means no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxConcurrentTasks *int32 `json:"maxConcurrentTasks,omitempty"`

	// AutomountServiceAccountToken mounts the ServiceAccount's API token
	// into the Task pods. Default false: an agent holds no credential for
	// the Kubernetes API. Set true for an agent that uses kubectl (say,
	// the Runtime context's "kubectl get task"), and give its
	// ServiceAccount only the RBAC it needs (README.md shows a Role).
	// +optional
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`

	// TaskRetention removes this Agent's finished Tasks, with their Jobs,
	// pods and ConfigMaps, after a time or beyond a count. Unset: finished
	// Tasks are kept until deleted.
	// +optional
	TaskRetention *TaskRetention `json:"taskRetention,omitempty"`
}

// Credential gives one Secret, or one key of it, to the agent container.
//
// secretRef.key + env: one environment variable.
// secretRef.key + mountPath: one file.
// secretRef.key + env + mountPath: both, the same value as a variable and
// a file (for example a GitHub token for GH_TOKEN and for a tool's config).
// no key + mountPath: a directory with one file per key.
// no key, no env, no mountPath: every key as an environment variable.
//
// +kubebuilder:validation:XValidation:rule="!has(self.env) || has(self.secretRef.key)",message="env needs secretRef.key: name the key whose value becomes the variable, or remove env to expose every key",fieldPath=".secretRef.key",reason="FieldValueRequired"
// +kubebuilder:validation:XValidation:rule="!has(self.secretRef.key) || has(self.env) || has(self.mountPath)",message="secretRef.key is set but neither env nor mountPath says where it goes: set one of them",fieldPath=".secretRef.key",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="!has(self.fileMode) || has(self.mountPath)",message="fileMode applies only with mountPath: set mountPath or remove fileMode",fieldPath=".fileMode",reason="FieldValueInvalid"
type Credential struct {
	// Name identifies the credential within the Agent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// SecretRef selects the Secret, in the Agent's namespace, and optionally one key.
	// +required
	SecretRef SecretKeyReference `json:"secretRef"`

	// Env is the environment variable that receives secretRef.key's value
	// (also with mountPath, which then receives the same value as a file).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Env string `json:"env,omitempty"`

	// MountPath is the absolute path of the file (with secretRef.key) or of
	// the directory (without) where the Secret is mounted.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && self != '/'",message="credential mountPath must be an absolute path other than '/'"
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('/') && !self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//')",message="credential mountPath must be clean: no trailing '/', no '.' or '..' segments, no '//'"
	MountPath string `json:"mountPath,omitempty"`

	// FileMode is the permission of the mounted file(s), for example 0400.
	// Default 0440: readable by the agent's user and the pod's group.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=511
	FileMode *int32 `json:"fileMode,omitempty"`
}

// SecretKeyReference selects a Secret and optionally one of its keys.
type SecretKeyReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key of the Secret. When empty, the whole Secret is used.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// AgentPodSpec holds settings of the Task pods.
type AgentPodSpec struct {
	// Labels added to the Task pods.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations added to the Task pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Scheduling constrains the nodes the Task pods run on.
	// +optional
	Scheduling *PodScheduling `json:"scheduling,omitempty"`

	// RuntimeClassName selects a RuntimeClass, for example gVisor or Kata,
	// for stronger isolation of the agent.
	// +optional
	RuntimeClassName *string `json:"runtimeClassName,omitempty"`

	// Resources of the agent container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// SecurityContext of the agent container. By default the agent runs
	// non-root with no privilege escalation, all capabilities dropped and
	// the RuntimeDefault seccomp profile, which the PodSecurity "restricted"
	// profile accepts; set fields here only to ask for more or to choose a UID.
	// +optional
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
}

// PodScheduling constrains the nodes Task pods run on.
type PodScheduling struct {
	// NodeSelector must match a node's labels for the pod to run there.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the pods run on tainted nodes.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity: node and pod affinity rules.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
}

// AgentStatus counts the Agent's Tasks.
type AgentStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Running is the number of the Agent's Tasks that are Running.
	// +optional
	Running int32 `json:"running"`

	// Queued is the number of the Agent's Tasks waiting for a slot.
	// +optional
	Queued int32 `json:"queued"`

	// Conditions of the Agent.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true

// AgentList is a list of Agents.
type AgentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Agent `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Agent{}, &AgentList{})
}
