// Package jobbuilder turns a Task and its Agent into the Job that runs it.
//
// Build is a pure function: the Task, the Agent and the inputs the
// controller has already resolved (ConfigMaps, pinned init images) go in;
// the Job and the Task-owned ConfigMap that carries the context to
// context-init come out. No client, no clock, no randomness, so the same
// inputs always give the same objects.
package jobbuilder

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/images"
)

// TaskFileName is the file in the workspace that holds the prompt.
const TaskFileName = "task.md"

// InitUID is the user and group the init containers run as, and the pod's
// fsGroup: every file they prepare is group-owned by it, and every container
// of the pod belongs to it, whatever UID the agent runs as.
const InitUID int64 = 65532

// MaxInlineContextBytes is the most text context that travels inside the
// Job (a pod annotation; all of a pod's annotations share 256 KiB).
const MaxInlineContextBytes = 64 * 1024

// AnnotationContextPlan carries an inline context plan on the Job's pods.
const AnnotationContextPlan = "kubeopencode.io/context-plan"

// MaxContextBytes is the most context content one Task may carry: it travels
// to context-init in one ConfigMap, whose size the API server caps at 1 MiB.
// Some room is kept for the plan itself.
const MaxContextBytes = 1024*1024 - 16*1024

// EnvMountPath, on a git-init container, is the path where the agent
// container sees the checkout.
const EnvMountPath = "KUBEOPENCODE_MOUNT_PATH"

// Container and volume names.
const (
	AgentContainer       = "agent"
	ContextInitContainer = "context-init"
	GitInitPrefix        = "git-init-"

	volWorkspace = "workspace"
	volOutside   = "outside"
	volRepos     = "repos"
	volPlan      = "context-plan"
	volTmp       = "tmp"
)

// Images are the init images a Job uses, pinned by digest.
type Images struct {
	GitInit     string
	ContextInit string
	PullPolicy  corev1.PullPolicy
}

// Input is everything Build needs.
type Input struct {
	Task   *v1alpha1.Task
	Agent  *v1alpha1.Agent
	Images Images
	// ConfigMaps holds the ConfigMaps the contexts name, by name. A name
	// that is absent from the map is a ConfigMap that does not exist; the
	// controller calls Build only when every missing one is optional.
	ConfigMaps map[string]*corev1.ConfigMap
	// Egress is what the controller resolved for an Agent that sets
	// network.egress (EgressHosts says which names); nil otherwise.
	Egress *EgressInput
}

// Output is what Build produces.
type Output struct {
	Job *batchv1.Job
	// ConfigMap carries the context to context-init when it is too large or
	// not all text; nil when the context travels inside the Job.
	ConfigMap *corev1.ConfigMap
	// NetworkPolicy fences the Task's pod in when its Agent sets
	// network.egress; it must exist before the Job does. Nil otherwise.
	NetworkPolicy *networkingv1.NetworkPolicy
	// Egress summarises NetworkPolicy for the Task's status.
	Egress *EgressSummary
}

// Error is a problem with the Task or Agent that no retry can fix.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalid(task *v1alpha1.Task, format string, args ...any) *Error {
	return &Error{Reason: v1alpha1.ReasonInvalidContexts, Message: fmt.Sprintf("Task %s/%s: ", task.Namespace, task.Name) + fmt.Sprintf(format, args...)}
}

// builder accumulates the pieces of the pod while contexts are placed.
type builder struct {
	in      Input
	ws      string
	claims  *claims
	taskMD  strings.Builder
	plan    contract.ContextPlan
	cmData  map[string]string
	cmBin   map[string][]byte
	size    int
	mounts  []corev1.VolumeMount // agent mounts other than the workspace
	gitInit []corev1.Container
	vols    []corev1.Volume
	outside bool
	repos   bool
	// gitContexts tell the agent where each Git context's checkout is
	// (contract.EnvGitContexts).
	gitContexts []contract.GitContext
	nfile       int
	// inlinePlan is the plan JSON when it travels in the Job's pod annotation.
	inlinePlan string
}

// Build returns the Job that runs the Task and the ConfigMap it reads its
// context from, or an *Error when the Task cannot run as written.
func Build(in Input) (*Output, error) {
	task, agent := in.Task, in.Agent
	if !images.IsPinned(in.Images.GitInit) || !images.IsPinned(in.Images.ContextInit) {
		return nil, fmt.Errorf("init images must be pinned by digest, got git-init %q and context-init %q", in.Images.GitInit, in.Images.ContextInit)
	}
	ws := agent.Spec.WorkspaceDir
	if ws == "" {
		ws = v1alpha1.DefaultWorkspaceDir
	}
	b := &builder{
		in:     in,
		ws:     ws,
		claims: newClaims(ws),
		plan:   contract.ContextPlan{Version: contract.Version},
		cmData: map[string]string{},
		cmBin:  map[string][]byte{},
	}
	if task.Spec.Description != nil {
		b.taskMD.WriteString(*task.Spec.Description)
	}
	for i := range agent.Spec.Contexts {
		if err := b.addContext(&agent.Spec.Contexts[i], fmt.Sprintf("Agent %s context %d", agent.Name, i+1)); err != nil {
			return nil, err
		}
	}
	for i := range task.Spec.Contexts {
		if err := b.addContext(&task.Spec.Contexts[i], fmt.Sprintf("context %d", i+1)); err != nil {
			return nil, err
		}
	}
	credEnv, credEnvFrom, err := b.addCredentials()
	if err != nil {
		return nil, err
	}
	taskMD := b.taskMD.String()
	if !strings.HasSuffix(taskMD, "\n") {
		taskMD += "\n"
	}
	b.addFile(path.Join(contract.WorkspaceMount, TaskFileName), 0, []byte(taskMD), "task.md")
	if b.size > MaxContextBytes {
		return nil, &Error{Reason: v1alpha1.ReasonContextTooLarge, Message: fmt.Sprintf(
			"Task %s/%s: its description and contexts add up to %d bytes, more than the %d one Task can carry: put large content in a Git repository and add it as a Git context",
			task.Namespace, task.Name, b.size, MaxContextBytes)}
	}
	if err := b.inlineSmallPlan(); err != nil {
		return nil, err
	}
	if b.inlinePlan == "" {
		planJSON, err := json.Marshal(b.plan)
		if err != nil {
			return nil, err
		}
		b.cmData[contract.ContextPlanKey] = string(planJSON)
	}
	return b.assemble(credEnv, credEnvFrom)
}

// inlineSmallPlan puts a small, all-text context into the Job itself: the
// plan, contents included, goes into a pod annotation that a downward API
// volume hands to context-init. Most Tasks carry a few kilobytes of
// context, and this saves the API server a ConfigMap per Task (a third of
// the controller's writes) and takes one write off the path from a freed
// slot to the next Job. Larger or binary contexts travel in a ConfigMap.
func (b *builder) inlineSmallPlan() error {
	if len(b.cmBin) > 0 || b.size > MaxInlineContextBytes {
		return nil
	}
	inline := contract.ContextPlan{Version: b.plan.Version}
	for _, e := range b.plan.Entries {
		key := strings.TrimPrefix(e.Source, contract.ContextPlanDir+"/")
		content := b.cmData[key]
		e.Source = ""
		e.Content = &content
		inline.Entries = append(inline.Entries, e)
	}
	data, err := json.Marshal(inline)
	if err != nil {
		return err
	}
	if len(data) > MaxInlineContextBytes {
		return nil
	}
	b.plan = inline
	b.inlinePlan = string(data)
	return nil
}

// addFile stores content in the Task-owned ConfigMap and asks context-init
// to write it at dest (a path as the init container sees it).
func (b *builder) addFile(dest string, mode int32, content []byte, what string) {
	key := "f" + strconv.Itoa(b.nfile)
	b.nfile++
	if utf8.Valid(content) {
		b.cmData[key] = string(content)
	} else {
		b.cmBin[key] = content
	}
	b.size += len(content) + len(key)
	b.plan.Entries = append(b.plan.Entries, contract.FileEntry{
		Path:        dest,
		Mode:        mode,
		Source:      path.Join(contract.ContextPlanDir, key),
		Description: what,
	})
}

// target works out where a context placed at abs goes: directly into the
// workspace volume, or into a slot of the "outside" volume that the agent
// container mounts with subPath, so that the rest of the directory it lands
// in (shipped by the image) stays visible.
func (b *builder) target(abs string) string {
	if rel, ok := inWorkspace(b.ws, abs); ok {
		return path.Join(contract.WorkspaceMount, rel)
	}
	slot := "o" + strconv.Itoa(len(b.mounts))
	b.outside = true
	b.mounts = append(b.mounts, corev1.VolumeMount{Name: volOutside, MountPath: abs, SubPath: slot})
	return path.Join(contract.OutsideMount, slot)
}

func (b *builder) appendTaskMD(name, typ, body string) {
	fmt.Fprintf(&b.taskMD, "\n\n<context name=%q namespace=%q type=%q>\n%s", name, b.in.Task.Namespace, typ, body)
	if !strings.HasSuffix(body, "\n") {
		b.taskMD.WriteString("\n")
	}
	b.taskMD.WriteString("</context>")
}

func fileMode(m *int32) int32 {
	if m == nil {
		return 0
	}
	return *m
}

func (b *builder) addContext(c *v1alpha1.ContextItem, where string) error {
	task := b.in.Task
	var abs string
	if c.MountPath != "" {
		abs = resolvePath(b.ws, c.MountPath)
	}
	switch c.Type {
	case v1alpha1.ContextTypeText:
		if c.Text == nil {
			return invalid(task, "%s: type Text needs text", where)
		}
		name := orDefault(c.Name, "text")
		if abs == "" {
			b.appendTaskMD(name, "Text", *c.Text)
			return nil
		}
		if err := b.claims.add(claim{path: abs, owner: fmt.Sprintf("%s (Text %q)", where, name)}); err != nil {
			return invalid(task, "%v", err)
		}
		b.addFile(b.target(abs), fileMode(c.FileMode), []byte(*c.Text), fmt.Sprintf("%s (Text %q)", where, name))
		return nil

	case v1alpha1.ContextTypeRuntime:
		name := orDefault(c.Name, "runtime")
		text := runtimeText(task, b.ws)
		if abs == "" {
			b.appendTaskMD(name, "Runtime", text)
			return nil
		}
		if err := b.claims.add(claim{path: abs, owner: fmt.Sprintf("%s (Runtime)", where)}); err != nil {
			return invalid(task, "%v", err)
		}
		b.addFile(b.target(abs), fileMode(c.FileMode), []byte(text), where+" (Runtime)")
		return nil

	case v1alpha1.ContextTypeConfigMap:
		return b.addConfigMap(c, where, abs)

	case v1alpha1.ContextTypeGit:
		return b.addGit(c, where, abs)
	}
	return invalid(task, "%s: unknown context type %q: use Text, ConfigMap, Git or Runtime", where, c.Type)
}

func (b *builder) addConfigMap(c *v1alpha1.ContextItem, where, abs string) error {
	task := b.in.Task
	ref := c.ConfigMap
	if ref == nil {
		return invalid(task, "%s: type ConfigMap needs configMap", where)
	}
	cm := b.in.ConfigMaps[ref.Name]
	owner := fmt.Sprintf("%s (ConfigMap %q)", where, ref.Name)
	if ref.Key != "" {
		name := orDefault(c.Name, ref.Name+"/"+ref.Key)
		value, ok := configMapValue(cm, ref.Key)
		if !ok {
			return nil // optional and missing: the controller checked
		}
		if abs == "" {
			b.appendTaskMD(name, "ConfigMap", string(value))
			return nil
		}
		if err := b.claims.add(claim{path: abs, owner: owner}); err != nil {
			return invalid(task, "%v", err)
		}
		b.addFile(b.target(abs), fileMode(c.FileMode), value, fmt.Sprintf("%s key %q", owner, ref.Key))
		return nil
	}
	if cm == nil {
		return nil // optional and missing
	}
	if abs == "" {
		for _, k := range sortedKeys(cm.Data) {
			b.appendTaskMD(orDefault(c.Name, ref.Name)+"/"+k, "ConfigMap", cm.Data[k])
		}
		return nil
	}
	if err := b.claims.add(claim{path: abs, dir: true, owner: owner}); err != nil {
		return invalid(task, "%v", err)
	}
	dir := b.target(abs)
	for _, k := range sortedKeys(cm.Data) {
		b.addFile(path.Join(dir, k), fileMode(c.FileMode), []byte(cm.Data[k]), fmt.Sprintf("%s key %q", owner, k))
	}
	for _, k := range sortedKeys(cm.BinaryData) {
		b.addFile(path.Join(dir, k), fileMode(c.FileMode), cm.BinaryData[k], fmt.Sprintf("%s key %q", owner, k))
	}
	return nil
}

func configMapValue(cm *corev1.ConfigMap, key string) ([]byte, bool) {
	if cm == nil {
		return nil, false
	}
	if v, ok := cm.Data[key]; ok {
		return []byte(v), true
	}
	if v, ok := cm.BinaryData[key]; ok {
		return v, true
	}
	return nil, false
}

func (b *builder) addGit(c *v1alpha1.ContextItem, where, abs string) error {
	task := b.in.Task
	g := c.Git
	if g == nil {
		return invalid(task, "%s: type Git needs git", where)
	}
	if abs == "" {
		return invalid(task, "%s: a Git context needs mountPath", where)
	}
	n := len(b.gitInit)
	owner := fmt.Sprintf("%s (Git %s)", where, g.Repository)
	if err := b.claims.add(claim{path: abs, dir: g.Path == "", owner: owner}); err != nil {
		return invalid(task, "%v", err)
	}
	plan := contract.GitPlan{
		Version:     contract.Version,
		Repository:  g.Repository,
		Ref:         g.Ref,
		Depth:       1,
		Path:        g.Path,
		Submodules:  g.Submodules,
		Description: fmt.Sprintf("Git context %q (%s)", orDefault(c.Name, repoName(g.Repository)), g.Repository),
	}
	if g.Depth != nil {
		plan.Depth = int(*g.Depth)
	}
	mounts := []corev1.VolumeMount{}
	if rel, ok := inWorkspace(b.ws, abs); ok && g.Path == "" {
		// Cloned straight into the workspace: the agent owns the checkout
		// like any other workspace file.
		plan.Dest = path.Join(contract.WorkspaceMount, rel)
		mounts = append(mounts, corev1.VolumeMount{Name: volWorkspace, MountPath: contract.WorkspaceMount})
	} else {
		// Outside the workspace, or only part of the repository: clone into a
		// slot of the repos volume and mount the selected part with subPath.
		slot := "r" + strconv.Itoa(n)
		plan.Dest = path.Join(contract.ReposMount, slot)
		sub := slot
		if g.Path != "" {
			sub = slot + "/" + g.Path
		}
		b.repos = true
		b.mounts = append(b.mounts, corev1.VolumeMount{Name: volRepos, MountPath: abs, SubPath: sub})
		mounts = append(mounts, corev1.VolumeMount{Name: volRepos, MountPath: contract.ReposMount})
	}
	if g.SecretRef != nil {
		vol := "git-credentials-" + strconv.Itoa(n)
		plan.CredentialsDir = contract.CredentialsMount
		b.vols = append(b.vols, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: g.SecretRef.Name,
			// Optional, so a missing Secret does not leave the pod stuck in
			// ContainerCreating: git-init reports it as the Task's failure.
			Optional:    ptr.To(true),
			DefaultMode: ptr.To[int32](0o440),
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: vol, MountPath: contract.CredentialsMount, ReadOnly: true})
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	b.gitContexts = append(b.gitContexts, contract.GitContext{MountPath: abs, Repository: g.Repository, Checkout: g.Path == ""})
	b.gitInit = append(b.gitInit, corev1.Container{
		Name:            GitInitPrefix + strconv.Itoa(n),
		Image:           b.in.Images.GitInit,
		ImagePullPolicy: b.in.Images.PullPolicy,
		Env: []corev1.EnvVar{
			{Name: contract.GitPlanEnv, Value: string(planJSON)},
			// Not read by git-init: it tells the controller where the
			// agent sees this checkout, for the Task's status.
			{Name: EnvMountPath, Value: abs},
		},
		VolumeMounts:             mounts,
		SecurityContext:          initSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	})
	return nil
}

// addCredentials turns the Agent's credentials into env vars, envFrom and
// Secret volumes of the agent container.
func (b *builder) addCredentials() ([]corev1.EnvVar, []corev1.EnvFromSource, error) {
	var env []corev1.EnvVar
	var envFrom []corev1.EnvFromSource
	for i, cr := range b.in.Agent.Spec.Credentials {
		ref := cr.SecretRef
		if cr.Env != "" && ref.Key == "" {
			return nil, nil, invalid(b.in.Task, "Agent %s credential %q: env needs secretRef.key", b.in.Agent.Name, cr.Name)
		}
		if ref.Key != "" && cr.Env == "" && cr.MountPath == "" {
			return nil, nil, invalid(b.in.Task, "Agent %s credential %q: secretRef.key needs env or mountPath", b.in.Agent.Name, cr.Name)
		}
		// With env and mountPath both, the key is a variable and a file.
		if cr.Env != "" {
			env = append(env, corev1.EnvVar{Name: cr.Env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: ref.Key,
			}}})
		}
		switch {
		case cr.MountPath != "":
			owner := fmt.Sprintf("Agent %s credential %q", b.in.Agent.Name, cr.Name)
			if err := b.claims.add(claim{path: cr.MountPath, dir: ref.Key == "", owner: owner}); err != nil {
				return nil, nil, invalid(b.in.Task, "%v", err)
			}
			mode := groupReadable(cr.FileMode, 0o440)
			vol := "credential-" + strconv.Itoa(i)
			src := &corev1.SecretVolumeSource{SecretName: ref.Name, DefaultMode: ptr.To(mode)}
			m := corev1.VolumeMount{Name: vol, MountPath: cr.MountPath, ReadOnly: true}
			if ref.Key != "" {
				src.Items = []corev1.KeyToPath{{Key: ref.Key, Path: "value"}}
				m.SubPath = "value"
			}
			b.vols = append(b.vols, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{Secret: src}})
			b.mounts = append(b.mounts, m)
		case cr.Env == "":
			envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name},
			}})
		}
	}
	return env, envFrom, nil
}

// groupReadable gives the group the owner's bits: kubelet writes Secret
// files owned by root and group-owned by the pod's fsGroup, so the owner's
// bits alone would shut out a non-root agent.
func groupReadable(m *int32, def int32) int32 {
	mode := def
	if m != nil {
		mode = *m
	}
	return mode | (mode&0o700)>>3
}

func (b *builder) assemble(credEnv []corev1.EnvVar, credEnvFrom []corev1.EnvFromSource) (*Output, error) {
	task, agent := b.in.Task, b.in.Agent
	jobName := JobName(task.Name)
	cmName := ContextConfigMapName(jobName)
	labels := map[string]string{
		LabelTaskUID:   string(task.UID),
		LabelTask:      LabelValue(task.Name),
		LabelAgent:     LabelValue(agent.Name),
		LabelManagedBy: ManagedByValue,
	}
	annotations := map[string]string{AnnotationTaskName: task.Name, AnnotationAgentName: agent.Name}
	owner := metav1.NewControllerRef(task, v1alpha1.GroupVersion.WithKind("Task"))

	volumes := []corev1.Volume{
		{Name: volWorkspace, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: volPlan, VolumeSource: b.planVolume(cmName)},
	}
	ctxMounts := []corev1.VolumeMount{
		{Name: volWorkspace, MountPath: contract.WorkspaceMount},
		{Name: volPlan, MountPath: contract.ContextPlanDir, ReadOnly: true},
	}
	if b.outside {
		volumes = append(volumes, corev1.Volume{Name: volOutside, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		ctxMounts = append(ctxMounts, corev1.VolumeMount{Name: volOutside, MountPath: contract.OutsideMount})
	}
	if b.repos {
		volumes = append(volumes, corev1.Volume{Name: volRepos, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	volumes = append(volumes, b.vols...)

	egress, err := b.buildEgress(jobName, labels, owner)
	if err != nil {
		return nil, err
	}
	var initContainers []corev1.Container
	if egress != nil && egress.check != nil {
		// First, so that nothing runs in the pod before its policy is
		// shown to be enforced.
		initContainers = append(initContainers, *egress.check)
	}
	initContainers = append(initContainers, corev1.Container{
		Name:                     ContextInitContainer,
		Image:                    b.in.Images.ContextInit,
		ImagePullPolicy:          b.in.Images.PullPolicy,
		VolumeMounts:             ctxMounts,
		SecurityContext:          initSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	})
	initContainers = append(initContainers, b.gitInit...)

	// The workspace first, then everything else parent before child, so a
	// mount inside the workspace lands on top of it rather than under it.
	agentMounts := append([]corev1.VolumeMount{{Name: volWorkspace, MountPath: b.ws}}, b.mounts...)
	sortMounts(agentMounts[1:])

	env := []corev1.EnvVar{
		{Name: "TASK_NAME", Value: task.Name},
		{Name: "TASK_NAMESPACE", Value: task.Namespace},
		{Name: "AGENT_NAME", Value: agent.Name},
		{Name: "WORKSPACE_DIR", Value: b.ws},
		{Name: "TASK_FILE", Value: path.Join(b.ws, TaskFileName)},
	}
	if len(b.gitInit) > 0 {
		// git-init's checkouts belong to UID 65532; git run by an agent
		// with another UID would refuse them as "dubious ownership".
		// Config from the environment is honoured where a repository's own
		// config would not be.
		env = append(env,
			corev1.EnvVar{Name: "GIT_CONFIG_COUNT", Value: "1"},
			corev1.EnvVar{Name: "GIT_CONFIG_KEY_0", Value: "safe.directory"},
			corev1.EnvVar{Name: "GIT_CONFIG_VALUE_0", Value: "*"},
		)
		// Where the checkouts are, for the agent image's results
		// (api/contract/results.go).
		gc, err := json.Marshal(b.gitContexts)
		if err != nil {
			return nil, err
		}
		env = append(env, corev1.EnvVar{Name: contract.EnvGitContexts, Value: string(gc)})
	}
	// The Agent's own variables, then the credentials'; admission keeps
	// their names apart and away from the controller's.
	env = append(env, agent.Spec.Env...)
	env = append(env, credEnv...)
	if len(credEnv) > 0 {
		names := make([]string, len(credEnv))
		for i, e := range credEnv {
			names[i] = e.Name
		}
		env = append(env, corev1.EnvVar{Name: contract.EnvCredentialNames, Value: strings.Join(names, ",")})
	}

	agentSC := agentSecurityContext(agent)
	if agentSC.ReadOnlyRootFilesystem != nil && *agentSC.ReadOnlyRootFilesystem {
		// A read-only root filesystem leaves an agent no scratch space:
		// /tmp gets an emptyDir, as the workspace does. Mounted before
		// everything else, so a workspace or file under /tmp lands on top.
		volumes = append(volumes, corev1.Volume{Name: volTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		agentMounts = append([]corev1.VolumeMount{{Name: volTmp, MountPath: "/tmp"}}, agentMounts...)
	}

	agentContainer := corev1.Container{
		Name:                     AgentContainer,
		Image:                    agent.Spec.AgentImage,
		Command:                  agent.Spec.Command,
		Args:                     agent.Spec.Args,
		WorkingDir:               b.ws,
		Env:                      env,
		EnvFrom:                  credEnvFrom,
		VolumeMounts:             agentMounts,
		SecurityContext:          agentSC,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	podLabels := map[string]string{}
	podAnnotations := map[string]string{}
	pod := corev1.PodSpec{
		RestartPolicy:      corev1.RestartPolicyNever,
		ServiceAccountName: agent.Spec.ServiceAccountName,
		// No API token unless the Agent asks for one: code the model chose
		// should not hold a credential for the cluster by default.
		AutomountServiceAccountToken: ptr.To(agent.Spec.AutomountServiceAccountToken != nil && *agent.Spec.AutomountServiceAccountToken),
		EnableServiceLinks:           ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			FSGroup:        ptr.To(InitUID),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		InitContainers: initContainers,
		Containers:     []corev1.Container{agentContainer},
		Volumes:        volumes,
	}
	if ps := agent.Spec.PodSpec; ps != nil {
		for k, v := range ps.Labels {
			podLabels[k] = v
		}
		for k, v := range ps.Annotations {
			podAnnotations[k] = v
		}
		if s := ps.Scheduling; s != nil {
			pod.NodeSelector = s.NodeSelector
			pod.Tolerations = s.Tolerations
			pod.Affinity = s.Affinity
		}
		pod.RuntimeClassName = ps.RuntimeClassName
		if ps.Resources != nil {
			pod.Containers[0].Resources = *ps.Resources
		}
	}
	// The controller's own labels win: they tie the pod to its Task.
	for k, v := range labels {
		podLabels[k] = v
	}
	for k, v := range annotations {
		podAnnotations[k] = v
	}

	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            jobName,
			Namespace:       task.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*owner},
		},
		Spec: batchv1.JobSpec{
			Parallelism:  ptr.To[int32](1),
			Completions:  ptr.To[int32](1),
			BackoffLimit: ptr.To[int32](0),
			// A Task is one run: never a second pod while the first is
			// still terminating.
			PodReplacementPolicy: ptr.To(batchv1.Failed),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec:       pod,
			},
		},
	}
	out := &Output{Job: job}
	if egress != nil {
		job.Spec.Template.Spec.HostAliases = egress.aliases
		out.NetworkPolicy, out.Egress = egress.policy, egress.summary
	}
	if t := task.Spec.Timeout; t != nil {
		secs := int64(t.Duration.Seconds())
		if secs < 1 {
			secs = 1
		}
		job.Spec.ActiveDeadlineSeconds = ptr.To(secs)
	}

	if b.inlinePlan != "" {
		job.Spec.Template.Annotations[AnnotationContextPlan] = b.inlinePlan
		return out, nil
	}
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            cmName,
			Namespace:       task.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*owner},
		},
		// The content is a snapshot for one run: immutable, so kubelets
		// need not watch it.
		Immutable: ptr.To(true),
		Data:      b.cmData,
	}
	if len(b.cmBin) > 0 {
		cm.BinaryData = b.cmBin
	}
	out.ConfigMap = cm
	return out, nil
}

// planVolume is where context-init finds its plan: the pod's own annotation
// through the downward API, or the Task-owned ConfigMap.
func (b *builder) planVolume(cmName string) corev1.VolumeSource {
	if b.inlinePlan != "" {
		return corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			DefaultMode: ptr.To[int32](0o444),
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     contract.ContextPlanKey,
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + AnnotationContextPlan + "']"},
			}},
		}}
	}
	return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: cmName},
		DefaultMode:          ptr.To[int32](0o444),
	}}
}

func sortMounts(m []corev1.VolumeMount) {
	// Stable: parents sort before their children because a prefix sorts first.
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].MountPath < m[j-1].MountPath; j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
}

func initSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr.To(InitUID),
		RunAsGroup:               ptr.To(InitUID),
		RunAsNonRoot:             ptr.To(true),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// agentSecurityContext starts from what PodSecurity "restricted" accepts and
// lets the Agent's securityContext override any field it sets.
func agentSecurityContext(agent *v1alpha1.Agent) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if agent.Spec.PodSpec == nil || agent.Spec.PodSpec.SecurityContext == nil {
		return sc
	}
	o := agent.Spec.PodSpec.SecurityContext
	if o.Capabilities != nil {
		sc.Capabilities = o.Capabilities
	}
	if o.Privileged != nil {
		sc.Privileged = o.Privileged
	}
	if o.SELinuxOptions != nil {
		sc.SELinuxOptions = o.SELinuxOptions
	}
	if o.WindowsOptions != nil {
		sc.WindowsOptions = o.WindowsOptions
	}
	if o.RunAsUser != nil {
		sc.RunAsUser = o.RunAsUser
	}
	if o.RunAsGroup != nil {
		sc.RunAsGroup = o.RunAsGroup
	}
	if o.RunAsNonRoot != nil {
		sc.RunAsNonRoot = o.RunAsNonRoot
	}
	if o.ReadOnlyRootFilesystem != nil {
		sc.ReadOnlyRootFilesystem = o.ReadOnlyRootFilesystem
	}
	if o.AllowPrivilegeEscalation != nil {
		sc.AllowPrivilegeEscalation = o.AllowPrivilegeEscalation
	}
	if o.ProcMount != nil {
		sc.ProcMount = o.ProcMount
	}
	if o.SeccompProfile != nil {
		sc.SeccompProfile = o.SeccompProfile
	}
	if o.AppArmorProfile != nil {
		sc.AppArmorProfile = o.AppArmorProfile
	}
	return sc
}

func runtimeText(task *v1alpha1.Task, ws string) string {
	return fmt.Sprintf(`You are running as KubeOpenCode Task %q in namespace %q, inside a Kubernetes Pod.
The environment tells you where you are:
- TASK_NAME=%s
- TASK_NAMESPACE=%s
- WORKSPACE_DIR=%s (your working directory; this file is $WORKSPACE_DIR/task.md)
To read the Task that started you, including its status:
  kubectl get task "$TASK_NAME" -n "$TASK_NAMESPACE" -o yaml
That needs an API token, which the Pod has only when its Agent sets
automountServiceAccountToken: true; what you may then do in the cluster
depends on the RBAC of the Pod's ServiceAccount.
`, task.Name, task.Namespace, task.Name, task.Namespace, ws)
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func repoName(url string) string {
	url = strings.TrimSuffix(strings.TrimSuffix(url, "/"), ".git")
	if i := strings.LastIndexAny(url, "/:"); i >= 0 {
		return url[i+1:]
	}
	return url
}
