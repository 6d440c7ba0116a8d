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

	// Network limits where the Task pods may connect. Unset: anywhere the
	// cluster's network lets a pod connect, which on most clusters includes
	// the Kubernetes API, every namespace, the cloud metadata endpoint and
	// the internet (docs/network.md).
	// +optional
	Network *AgentNetwork `json:"network,omitempty"`

	// AutomountServiceAccountToken mounts the ServiceAccount's API token
	// into the Task pods. Default false: an agent cannot call the Kubernetes
	// API. Set true for an agent that uses kubectl, and give its
	// ServiceAccount only the RBAC it needs (README.md shows a Role); with
	// network.egress, also set network.egress.kubernetesAPI.
	// +optional
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`

	// TaskRetention removes this Agent's finished Tasks, with their Jobs,
	// pods and ConfigMaps, after a time or beyond a count. Unset: finished
	// Tasks are kept until deleted.
	// +optional
	TaskRetention *TaskRetention `json:"taskRetention,omitempty"`
}

// AgentNetwork limits the Task pods' network.
type AgentNetwork struct {
	// Egress, when set, refuses every connection out of a Task's pod except
	// to the destinations it allows, the cluster's DNS resolver and the
	// Task's Git repositories. The controller enforces it with a
	// NetworkPolicy per Task, which only a network plugin that implements
	// NetworkPolicy carries out: each pod checks, before the agent starts,
	// that the Kubernetes API is out of its reach, and the Task fails with
	// reason EgressNotEnforced if it is not.
	// +optional
	Egress *Egress `json:"egress,omitempty"`
}

// EgressDNS says which DNS resolver a Task pod may query.
// +kubebuilder:validation:Enum=ClusterResolver;None
type EgressDNS string

const (
	// EgressDNSClusterResolver allows DNS (UDP and TCP port 53) to the
	// cluster's resolver: the pods labelled k8s-app=kube-dns in kube-system.
	EgressDNSClusterResolver EgressDNS = "ClusterResolver"
	// EgressDNSNone allows no DNS. Host names in allow still work: the
	// controller resolves them and writes them into the pod's /etc/hosts.
	EgressDNSNone EgressDNS = "None"
)

// Egress is a default-deny egress policy with an allow-list.
type Egress struct {
	// DNS: ClusterResolver (default) or None.
	// +optional
	// +kubebuilder:default=ClusterResolver
	DNS EgressDNS `json:"dns,omitempty"`

	// KubernetesAPI lets the pods reach the API server (its Service address
	// and its endpoints). Default false: the API server is refused even
	// where a cidr in allow covers it.
	// +optional
	KubernetesAPI bool `json:"kubernetesAPI,omitempty"`

	// Allow lists the destinations the pods may connect to, each an IP
	// range (cidr) or a host name (host) with its ports. The cloud metadata
	// addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) and the
	// API server are cut out of every cidr that contains them; a cidr that
	// is exactly one of them allows it.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Allow []EgressRule `json:"allow,omitempty"`
}

// EgressRule allows connections to an IP range or a host name, on ports.
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) != has(self.host)",message="each egress allow entry needs exactly one of cidr (an IP range such as 203.0.113.0/24) and host (a name such as api.openai.com)",reason="FieldValueInvalid"
type EgressRule struct {
	// CIDR is an IP range in CIDR notation, for example 10.20.0.0/16 or
	// 203.0.113.7/32 (one address).
	// +optional
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be an IP range in CIDR notation, for example 10.20.0.0/16, 203.0.113.7/32 or 2001:db8::/32; write a host name in host instead"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="cidr must name a network: its address has bits set past the prefix length; write the network address, for example 10.20.0.0/16 rather than 10.20.3.4/16, or /32 for one address"
	CIDR string `json:"cidr,omitempty"`

	// Host is a DNS name, for example api.openai.com. The controller
	// resolves it when the Task starts, allows exactly those addresses, and
	// pins them in the pod's /etc/hosts, so the agent connects to the
	// addresses it was allowed. A name that does not resolve keeps the Task
	// Pending; nothing is allowed in its place.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!isIP(self) && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="host must be a lower-case DNS name such as api.openai.com: no scheme, port, path or wildcard; write an IP address as a cidr (203.0.113.7/32)"
	Host string `json:"host,omitempty"`

	// Ports the pods may connect to at this destination.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []int32 `json:"ports"`

	// Protocol of the ports: TCP (default) or UDP.
	// +optional
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol corev1.Protocol `json:"protocol,omitempty"`
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
