// Package contract is the versioned agreement between the KubeOpenCode
// controller and its init images (git-init and context-init).
//
// The controller writes a plan, the init binaries carry it out. Both sides
// import this package, so a change to the plan is a change to Version: an init
// image that receives a plan of another version refuses it with a clear
// message instead of guessing.
package contract

import (
	"encoding/json"
	"fmt"
)

// Version identifies the shape of the plans in this package. Bump it whenever
// a field changes meaning or a required field is added.
const Version = "kubeopencode.io/workspace/v1"

// Paths and variables shared by the controller and the init containers.
const (
	// ContextPlanFile is where context-init reads its plan. The controller
	// mounts the Task-owned ConfigMap that holds the plan at ContextPlanDir.
	ContextPlanDir  = "/kubeopencode/plan"
	ContextPlanKey  = "context-plan.json"
	ContextPlanFile = ContextPlanDir + "/" + ContextPlanKey

	// GitPlanEnv is the environment variable that carries a git-init plan as JSON.
	GitPlanEnv = "KUBEOPENCODE_GIT_PLAN"

	// WorkspaceMount is where init containers see the workspace volume.
	WorkspaceMount = "/kubeopencode/workspace"
	// OutsideMount is where init containers see the volume that holds
	// contexts placed outside the workspace (the agent container mounts
	// single entries of it with subPath).
	OutsideMount = "/kubeopencode/outside"
	// ReposMount is where init containers see the volume that holds Git
	// checkouts which the agent container mounts with subPath.
	ReposMount = "/kubeopencode/repos"
	// SourcesMount is the parent of the ConfigMap volumes that context-init copies from.
	SourcesMount = "/kubeopencode/sources"
	// CredentialsMount is where git-init sees the Git context's Secret.
	CredentialsMount = "/kubeopencode/git-credentials"

	// TerminationMessagePath is where both init binaries write their Result.
	TerminationMessagePath = "/dev/termination-log"

	// Keys git-init reads from the Secret named by a Git context's secretRef.
	SecretKeyUsername   = "username"
	SecretKeyPassword   = "password"
	SecretKeySSHKey     = "ssh-privatekey"
	SecretKeyKnownHosts = "known_hosts"
	// SecretKeyInsecureIgnoreHostKey, set to "true", opts out of SSH host key
	// verification. git-init prints a warning when it is used.
	SecretKeyInsecureIgnoreHostKey = "insecure-ignore-host-key"
)

// ContextPlan tells context-init which files and directories to write.
type ContextPlan struct {
	Version string      `json:"version"`
	Entries []FileEntry `json:"entries"`
}

// FileEntry is one file or directory that context-init writes.
// Exactly one of Content and Source is set.
type FileEntry struct {
	// Path is the absolute destination as the init container sees it
	// (under WorkspaceMount or OutsideMount).
	Path string `json:"path"`
	// Mode is the permission of a written file (0 means 0644). Directories
	// created on the way are 0775. context-init copies the owner's bits to
	// the group bits so the agent container, which shares the pod's
	// fsGroup, can read and write what was prepared whatever its UID.
	Mode int32 `json:"mode,omitempty"`
	// Content is written verbatim.
	Content *string `json:"content,omitempty"`
	// Source is an absolute path (under SourcesMount) of a file or of a
	// ConfigMap-volume directory to copy. A directory is copied key by key,
	// skipping the "..data" machinery of ConfigMap volumes.
	Source string `json:"source,omitempty"`
	// Optional makes a missing Source a no-op instead of an error.
	Optional bool `json:"optional,omitempty"`
	// Description names the context in error messages, for example
	// `ConfigMap "review-guide" key "guide.md"`.
	Description string `json:"description,omitempty"`
}

// GitPlan tells one git-init container what to clone.
type GitPlan struct {
	Version string `json:"version"`
	// Repository is an https://, http://, ssh:// or scp-like (git@host:path) URL.
	Repository string `json:"repository"`
	// Ref is a branch, a tag or a full commit SHA; empty means the remote HEAD.
	Ref string `json:"ref,omitempty"`
	// Depth is the history depth; 0 means full history.
	Depth int `json:"depth"`
	// Dest is the absolute directory to clone into (under WorkspaceMount or ReposMount).
	Dest string `json:"dest"`
	// Path, when set, must exist in the checkout: it is the file or
	// directory the agent container sees.
	Path string `json:"path,omitempty"`
	// Submodules makes git-init check out the commit's submodules,
	// recursively, with the same depth; credentials go only to the
	// repository's own host. Otherwise submodule directories stay empty
	// and Result.SubmodulesLeftOut lists them.
	Submodules bool `json:"submodules,omitempty"`
	// CredentialsDir, when set, is the directory holding the Secret's keys
	// (SecretKeyUsername, SecretKeyPassword, SecretKeySSHKey, ...).
	CredentialsDir string `json:"credentialsDir,omitempty"`
	// Description names the context in messages, e.g. `Git context "repo" (https://...)`.
	Description string `json:"description,omitempty"`
}

// Result is the one line of JSON each init binary writes to its termination
// message: the controller reads it back into the Task's status.
type Result struct {
	// Error is a one-line reason; empty on success.
	Error string `json:"error,omitempty"`
	// Commit is the commit SHA git-init checked out.
	Commit string `json:"commit,omitempty"`
	// Repository is the repository git-init cloned (no credentials).
	Repository string `json:"repository,omitempty"`
	// SubmodulesLeftOut lists the paths of the submodules git-init did not
	// check out (at most 20, then "... and N more").
	SubmodulesLeftOut []string `json:"submodulesLeftOut,omitempty"`
	// Refused lists what the egress check found out of the pod's reach,
	// each "ADDRESS:PORT (WHAT)", e.g. "10.96.0.1:443 (Kubernetes API)".
	Refused []string `json:"refused,omitempty"`
	// Reachable lists the addresses the egress check could connect to,
	// which the pod's NetworkPolicy refuses: set only when it failed.
	Reachable []string `json:"reachable,omitempty"`
}

// VersionError reports a plan written for another contract version.
type VersionError struct {
	Got, Want string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("plan version %q is not supported (this image understands %q): run init images built from the same release as the controller", e.Got, e.Want)
}

// CheckVersion returns a *VersionError unless v is Version.
func CheckVersion(v string) error {
	if v != Version {
		return &VersionError{Got: v, Want: Version}
	}
	return nil
}

// DecodeContextPlan parses and version-checks a context plan.
func DecodeContextPlan(data []byte) (*ContextPlan, error) {
	var p ContextPlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("context plan is not valid JSON: %w", err)
	}
	if err := CheckVersion(p.Version); err != nil {
		return nil, err
	}
	return &p, nil
}

// DecodeGitPlan parses and version-checks a git plan.
func DecodeGitPlan(data []byte) (*GitPlan, error) {
	var p GitPlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("git plan is not valid JSON: %w", err)
	}
	if err := CheckVersion(p.Version); err != nil {
		return nil, err
	}
	return &p, nil
}

// EgressCheckEnv is the environment variable that carries an
// EgressCheckPlan as JSON to context-init run with --egress-check.
const EgressCheckEnv = "KUBEOPENCODE_EGRESS_CHECK"

// EgressCheckPlan asks context-init, run as the pod's first init container,
// to prove that the pod's NetworkPolicy is enforced: every target must be
// out of reach (a TCP connection to it fails) before anything else in the
// pod runs. A policy that the network plugin programs a moment after the
// pod starts is waited for, up to WaitSeconds.
type EgressCheckPlan struct {
	Version string        `json:"version"`
	Targets []EgressProbe `json:"targets"`
	// WaitSeconds bounds how long a reachable target may stay reachable.
	WaitSeconds int `json:"waitSeconds"`
}

// EgressProbe is one address the pod must not reach.
type EgressProbe struct {
	// Address is IP:PORT (an IPv6 IP in brackets).
	Address string `json:"address"`
	// What names it for people: "Kubernetes API", "cloud metadata".
	What string `json:"what"`
}

// String is "ADDRESS (WHAT)".
func (p EgressProbe) String() string { return p.Address + " (" + p.What + ")" }

// DecodeEgressCheckPlan parses and version-checks an egress check plan.
func DecodeEgressCheckPlan(data []byte) (*EgressCheckPlan, error) {
	var p EgressCheckPlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("egress check plan is not valid JSON: %w", err)
	}
	if err := CheckVersion(p.Version); err != nil {
		return nil, err
	}
	if len(p.Targets) == 0 {
		return nil, fmt.Errorf("egress check plan has no targets")
	}
	return &p, nil
}
