package v1alpha1

// ContextType says where a context's content comes from.
// +kubebuilder:validation:Enum=Text;ConfigMap;Git;Runtime
type ContextType string

const (
	// ContextTypeText is inline text from the Task or Agent itself.
	ContextTypeText ContextType = "Text"
	// ContextTypeConfigMap is one key, or all keys, of a ConfigMap in the Task's namespace.
	ContextTypeConfigMap ContextType = "ConfigMap"
	// ContextTypeGit is a Git repository cloned by git-init before the agent starts.
	ContextTypeGit ContextType = "Git"
	// ContextTypeRuntime is a description of the environment the agent runs in.
	ContextTypeRuntime ContextType = "Runtime"
)

// ContextItem is one piece of context given to the agent: text, a ConfigMap,
// a Git repository or a description of the runtime environment. Without a
// mountPath it is appended to ${WORKSPACE_DIR}/task.md; with one it becomes a
// file or directory at that path.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'Text' ? has(self.text) : !has(self.text)",message="text must be set for a Text context and only for it: set type: Text or remove text",fieldPath=".text",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="self.type == 'ConfigMap' ? has(self.configMap) : !has(self.configMap)",message="configMap must be set for a ConfigMap context and only for it: set type: ConfigMap or remove configMap",fieldPath=".configMap",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="self.type == 'Git' ? has(self.git) : !has(self.git)",message="git must be set for a Git context and only for it: set type: Git or remove git",fieldPath=".git",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="self.type == 'Runtime' || !has(self.runtime)",message="runtime may be set only for a Runtime context: set type: Runtime or remove runtime",fieldPath=".runtime",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="self.type != 'Git' || has(self.mountPath)",message="a Git context needs mountPath: the directory (absolute, or relative to the Agent's workspaceDir) to clone into",fieldPath=".mountPath",reason="FieldValueRequired"
// +kubebuilder:validation:XValidation:rule="!has(self.fileMode) || has(self.mountPath)",message="fileMode applies only to a context with mountPath: set mountPath or remove fileMode",fieldPath=".fileMode",reason="FieldValueInvalid"
type ContextItem struct {
	// Name labels the context in task.md (<context name="...">) and in
	// messages. When empty, a name is derived from the source, such as the
	// ConfigMap's name or the repository's.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// Type of the context: Text, ConfigMap, Git or Runtime. Exactly the
	// member of the same name (text, configMap, git) must be set.
	// +required
	Type ContextType `json:"type"`

	// MountPath is where the context is placed in the agent container: an
	// absolute path, or a path relative to the Agent's workspaceDir. When
	// empty, the content is appended to ${WORKSPACE_DIR}/task.md. Required
	// for Git contexts. A file placed outside the workspace does not hide the
	// rest of the directory it lands in.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('/') || self == '/'",message="mountPath must not end with '/': write the path of the file or directory itself"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//')",message="mountPath must be clean: no '.' or '..' segments and no '//'"
	// +kubebuilder:validation:XValidation:rule="self != '/'",message="mountPath must not be '/'"
	MountPath string `json:"mountPath,omitempty"`

	// FileMode is the permission of the file written at mountPath, for
	// example 0644 or 0600. The pod's group gets the owner's bits so that the
	// agent container can use the file whatever UID it runs as. Default 0644.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=511
	FileMode *int32 `json:"fileMode,omitempty"`

	// Text is the inline content of a Text context.
	// +optional
	Text *string `json:"text,omitempty"`

	// ConfigMap selects a ConfigMap, or one key of it, in the Task's namespace.
	// +optional
	ConfigMap *ConfigMapContext `json:"configMap,omitempty"`

	// Git selects a repository to clone before the agent starts.
	// +optional
	Git *GitContext `json:"git,omitempty"`

	// Runtime describes the environment (TASK_NAME, TASK_NAMESPACE,
	// WORKSPACE_DIR, how to read the Task with kubectl). It has no settings.
	// +optional
	Runtime *RuntimeContext `json:"runtime,omitempty"`
}

// ConfigMapContext selects a ConfigMap, or one key of it.
//
// With key: the key's value. Without key and with mountPath: a directory
// holding one file per key. Without key and without mountPath: every key
// appended to task.md.
type ConfigMapContext struct {
	// Name of the ConfigMap in the Task's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key selects one key of the ConfigMap. When empty, all keys are used.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`

	// Optional lets the Task run without this context when the ConfigMap or
	// key does not exist. When false (the default) the Task waits for it, with
	// a condition naming what is missing.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// GitContext is a Git repository cloned by git-init before the agent starts.
type GitContext struct {
	// Repository URL: https://host/path, http://host/path (a warning is
	// printed), ssh://[user@]host[:port]/path or user@host:path. Credentials
	// belong in secretRef, never in the URL.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh)://[^/\\\\s]+(/[^\\\\s]*)?$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\\\s]+$')",message="repository must be an https://, http://, ssh:// or user@host:path URL without spaces"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^https?://[^/]*@')",message="repository must not carry credentials: put them in a Secret and name it in git.secretRef"
	Repository string `json:"repository"`

	// Ref is a branch, a tag, a full 40-character commit SHA, or a full ref
	// name the server advertises (for example refs/pull/42/head). When empty,
	// the repository's default branch (HEAD) is cloned.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9._/+@-]+$') && !self.startsWith('-') && !self.startsWith('/') && !self.endsWith('/') && !self.endsWith('.') && !self.endsWith('.lock') && !self.contains('..') && !self.contains('//') && !self.contains('@{')",message="ref must be a branch name, a tag name or a full commit SHA (git check-ref-format rules: no spaces, '..', '//', '@{' or leading '-')"
	Ref string `json:"ref,omitempty"`

	// Depth of history to fetch: 1 (the default) for the tip only, 0 for the
	// full history.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	Depth *int32 `json:"depth,omitempty"`

	// Path selects a subdirectory or a single file of the repository to
	// place at mountPath, instead of the whole checkout.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.endsWith('/') && !self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//')",message="path must be a clean path relative to the repository root: no leading or trailing '/', no '.' or '..' segments"
	Path string `json:"path,omitempty"`

	// SecretRef names a Secret in the Task's namespace with the credentials:
	// username and password (or token) for HTTPS; ssh-privatekey and
	// known_hosts for SSH.
	// +optional
	SecretRef *LocalSecretReference `json:"secretRef,omitempty"`

	// Submodules checks out the repository's submodules, recursively, at
	// the commits the checked-out tree records and with the same depth.
	// Relative submodule URLs (../lib.git) resolve against repository; the
	// credentials of secretRef are sent only to repository's own host.
	// When false (the default) submodule directories are left empty and
	// status.repositories[].submodulesLeftOut lists them.
	// +optional
	Submodules bool `json:"submodules,omitempty"`
}

// RuntimeContext has no settings: its content is generated by the controller.
type RuntimeContext struct{}

// LocalSecretReference names a Secret in the same namespace.
type LocalSecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}
