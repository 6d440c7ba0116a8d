package jobbuilder

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func build(t *testing.T, in Input) *Output {
	t.Helper()
	out, err := Build(in)
	require.NoError(t, err)
	return out
}

// plan returns the plan context-init will read, from the Job's pod
// annotation or from the Task-owned ConfigMap.
func plan(t *testing.T, out *Output) contract.ContextPlan {
	t.Helper()
	raw := out.Job.Spec.Template.Annotations[AnnotationContextPlan]
	if out.ConfigMap != nil {
		require.Empty(t, raw, "the plan travels one way only")
		raw = out.ConfigMap.Data[contract.ContextPlanKey]
	}
	p, err := contract.DecodeContextPlan([]byte(raw))
	require.NoError(t, err)
	return *p
}

// written returns what context-init will write at dest (a path as the init
// container sees it), and the mode.
func written(t *testing.T, out *Output, dest string) (string, int32, bool) {
	t.Helper()
	for _, e := range plan(t, out).Entries {
		if e.Path != dest {
			continue
		}
		if e.Content != nil {
			return *e.Content, e.Mode, true
		}
		key := strings.TrimPrefix(e.Source, contract.ContextPlanDir+"/")
		if v, ok := out.ConfigMap.Data[key]; ok {
			return v, e.Mode, true
		}
		return string(out.ConfigMap.BinaryData[key]), e.Mode, true
	}
	return "", 0, false
}

func taskMD(t *testing.T, out *Output) string {
	t.Helper()
	s, _, ok := written(t, out, contract.WorkspaceMount+"/task.md")
	require.True(t, ok, "task.md is always written")
	return s
}

func agentContainer(out *Output) corev1.Container { return out.Job.Spec.Template.Spec.Containers[0] }

func mountAt(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func TestTaskMDOrderAndWrapping(t *testing.T) {
	agent := makeAgent().context(text("Follow the team's style guide.", "")).obj()
	task := makeTask("fix").
		context(configMapCtx("review-guide", "guide.md", "")).
		context(configMapCtx("facts", "", "")).
		context(v1alpha1.ContextItem{Type: v1alpha1.ContextTypeRuntime}).
		obj()
	out := build(t, input(task, agent,
		configMap("review-guide", map[string]string{"guide.md": "Review carefully."}),
		configMap("facts", map[string]string{"b.txt": "bee", "a.txt": "ay"})))

	md := taskMD(t, out)
	assert.True(t, strings.HasPrefix(md, "Fix the failing test in pkg/foo.\n"), "the description opens task.md:\n%s", md)
	order := []string{
		`<context name="text" namespace="team-a" type="Text">` + "\nFollow the team's style guide.\n</context>",
		`<context name="review-guide/guide.md" namespace="team-a" type="ConfigMap">` + "\nReview carefully.\n</context>",
		`<context name="facts/a.txt" namespace="team-a" type="ConfigMap">` + "\nay\n</context>",
		`<context name="facts/b.txt" namespace="team-a" type="ConfigMap">` + "\nbee\n</context>",
		`<context name="runtime" namespace="team-a" type="Runtime">`,
	}
	last := -1
	for _, want := range order {
		i := strings.Index(md, want)
		require.GreaterOrEqual(t, i, 0, "task.md lacks %q:\n%s", want, md)
		assert.Greater(t, i, last, "%q is out of order", want)
		last = i
	}
	assert.Contains(t, md, "TASK_NAME=fix")
	assert.Contains(t, md, "TASK_NAMESPACE=team-a")
	assert.Contains(t, md, "WORKSPACE_DIR=/workspace")
	assert.Contains(t, md, `kubectl get task "$TASK_NAME" -n "$TASK_NAMESPACE"`)
}

func TestFilePlacement(t *testing.T) {
	cases := []struct {
		name      string
		workspace string
		mountPath string
		// where context-init writes, and the agent mount (if any) that shows it
		initPath  string
		mountedAt string
		subPath   string
	}{
		{"relative", "/workspace", "notes/review.md", "/kubeopencode/workspace/notes/review.md", "", ""},
		{"absolute inside workspace", "/workspace", "/workspace/a/b/c/d.txt", "/kubeopencode/workspace/a/b/c/d.txt", "", ""},
		{"dots, underscores and spaces", "/workspace", "my dir/.config/some_file.v2.yaml", "/kubeopencode/workspace/my dir/.config/some_file.v2.yaml", "", ""},
		{"custom workspace", "/home/agent/src", "AGENTS.md", "/kubeopencode/workspace/AGENTS.md", "", ""},
		{"outside the workspace keeps the rest of the directory", "/workspace", "/etc/app/x.conf", "/kubeopencode/outside/o0", "/etc/app/x.conf", "o0"},
		{"beside a custom workspace", "/home/agent/src", "/home/agent/.gitconfig", "/kubeopencode/outside/o0", "/home/agent/.gitconfig", "o0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := text("content", tc.mountPath)
			c.FileMode = ptr.To[int32](0o600)
			out := build(t, input(makeTask("t").context(c).obj(), makeAgent().workspace(tc.workspace).obj()))
			got, mode, ok := written(t, out, tc.initPath)
			require.True(t, ok, "plan: %+v", plan(t, out).Entries)
			assert.Equal(t, "content", got)
			assert.Equal(t, int32(0o600), mode)
			ag := agentContainer(out)
			assert.Equal(t, tc.workspace, ag.VolumeMounts[0].MountPath, "the workspace is the first mount")
			assert.Equal(t, tc.workspace, ag.WorkingDir)
			if tc.mountedAt == "" {
				assert.Len(t, ag.VolumeMounts, 1, "a file inside the workspace needs no mount of its own")
				return
			}
			m := mountAt(ag, tc.mountedAt)
			require.NotNil(t, m, "the file outside the workspace is mounted on its own, not its directory")
			assert.Equal(t, tc.subPath, m.SubPath)
			assert.Equal(t, "outside", m.Name)
		})
	}
}

func TestConfigMapContexts(t *testing.T) {
	cm := configMap("settings", map[string]string{"a.yaml": "a: 1", "b.yaml": "b: 2"})
	cm.BinaryData = map[string][]byte{"logo.png": {0x89, 'P', 'N', 'G', 0xff}}

	out := build(t, input(makeTask("t").context(configMapCtx("settings", "a.yaml", "config/a.yaml")).obj(), makeAgent().obj(), cm))
	got, _, ok := written(t, out, "/kubeopencode/workspace/config/a.yaml")
	require.True(t, ok)
	assert.Equal(t, "a: 1", got)

	out = build(t, input(makeTask("t").context(configMapCtx("settings", "", "/etc/settings")).obj(), makeAgent().obj(), cm))
	for key, want := range map[string]string{"a.yaml": "a: 1", "b.yaml": "b: 2", "logo.png": string(cm.BinaryData["logo.png"])} {
		got, _, ok := written(t, out, "/kubeopencode/outside/o0/"+key)
		require.True(t, ok, "key %s becomes a file of the directory", key)
		assert.Equal(t, want, got)
	}
	assert.Equal(t, "o0", mountAt(agentContainer(out), "/etc/settings").SubPath)

	optional := configMapCtx("absent", "x", "x.txt")
	optional.ConfigMap.Optional = ptr.To(true)
	out = build(t, input(makeTask("t").context(optional).obj(), makeAgent().obj()))
	_, _, ok = written(t, out, "/kubeopencode/workspace/x.txt")
	assert.False(t, ok, "a missing optional ConfigMap is left out")
}

func TestGitPlacement(t *testing.T) {
	gitPlan := func(t *testing.T, c corev1.Container) contract.GitPlan {
		t.Helper()
		require.Len(t, c.Env, 2)
		assert.Equal(t, EnvMountPath, c.Env[1].Name)
		p, err := contract.DecodeGitPlan([]byte(c.Env[0].Value))
		require.NoError(t, err)
		return *p
	}

	out := build(t, input(makeTask("t").context(gitCtx("https://git.example/org/repo.git", "repo", "")).obj(), makeAgent().obj()))
	inits := out.Job.Spec.Template.Spec.InitContainers
	require.Len(t, inits, 2)
	assert.Equal(t, "context-init", inits[0].Name)
	assert.Equal(t, "git-init-0", inits[1].Name)
	assert.Equal(t, testGitInit, inits[1].Image)
	p := gitPlan(t, inits[1])
	assert.Equal(t, "/kubeopencode/workspace/repo", p.Dest, "a whole checkout inside the workspace is cloned in place")
	assert.Equal(t, 1, p.Depth)
	assert.False(t, p.Submodules, "submodules are checked out only when asked for")
	assert.Len(t, agentContainer(out).VolumeMounts, 1)

	c := gitCtx("git@git.example:org/repo.git", "docs", "docs/api")
	c.Git.Ref = "v1.2.0"
	c.Git.Depth = ptr.To[int32](0)
	c.Git.SecretRef = &v1alpha1.LocalSecretReference{Name: "git-ssh"}
	c.Git.Submodules = true
	out = build(t, input(makeTask("t").context(c).obj(), makeAgent().obj()))
	inits = out.Job.Spec.Template.Spec.InitContainers
	p = gitPlan(t, inits[1])
	assert.Equal(t, "/kubeopencode/repos/r0", p.Dest)
	assert.Equal(t, "docs/api", p.Path)
	assert.Equal(t, "v1.2.0", p.Ref)
	assert.Equal(t, 0, p.Depth, "depth 0 means the full history")
	assert.True(t, p.Submodules)
	assert.Equal(t, contract.CredentialsMount, p.CredentialsDir)
	m := mountAt(agentContainer(out), "/workspace/docs")
	require.NotNil(t, m)
	assert.Equal(t, "r0/docs/api", m.SubPath, "only the selected part is mounted")
	var secretVol *corev1.Volume
	for i, v := range out.Job.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "git-ssh" {
			secretVol = &out.Job.Spec.Template.Spec.Volumes[i]
		}
	}
	require.NotNil(t, secretVol, "git-init gets the Secret as a volume")
	assert.True(t, *secretVol.Secret.Optional, "a missing Secret is reported by git-init, not a pod stuck mounting it")
	assert.Nil(t, mountAt(agentContainer(out), contract.CredentialsMount), "the agent never sees the Git credentials")
}

func TestConflictsFailClearly(t *testing.T) {
	cases := []struct {
		name  string
		task  *v1alpha1.Task
		agent *v1alpha1.Agent
		want  string
	}{
		{"same path twice", makeTask("t").context(text("a", "x.md")).context(text("b", "/workspace/x.md")).obj(), makeAgent().obj(), "both write /workspace/x.md"},
		{"agent and task on one path", makeTask("t").context(text("b", "AGENTS.md")).obj(), makeAgent().context(text("a", "AGENTS.md")).obj(), "both write /workspace/AGENTS.md"},
		{"inside a ConfigMap directory", makeTask("t").context(configMapCtx("cm", "", "conf")).context(text("b", "conf/extra.yaml")).obj(), makeAgent().obj(), "is inside /workspace/conf"},
		{"inside a Git checkout", makeTask("t").context(gitCtx("https://git.example/r.git", "src", "")).context(text("b", "src/NOTES.md")).obj(), makeAgent().obj(), "is inside /workspace/src"},
		{"a checkout over a file", makeTask("t").context(text("b", "src/NOTES.md")).context(gitCtx("https://git.example/r.git", "src", "")).obj(), makeAgent().obj(), "would hide /workspace/src/NOTES.md"},
		{"overwrites task.md", makeTask("t").context(text("b", "task.md")).obj(), makeAgent().obj(), "would overwrite task.md"},
		{"hides the workspace", makeTask("t").context(gitCtx("https://git.example/r.git", "/workspace", "")).obj(), makeAgent().obj(), "would hide the workspace"},
		{"hides a custom workspace from above", makeTask("t").context(gitCtx("https://git.example/r.git", "/home/agent", "")).obj(), makeAgent().workspace("/home/agent/src").obj(), "would hide the workspace"},
		{"credential over a context", makeTask("t").context(text("b", "/etc/token")).obj(), makeAgent().credential(v1alpha1.Credential{Name: "tok", SecretRef: v1alpha1.SecretKeyReference{Name: "s", Key: "k"}, MountPath: "/etc/token"}).obj(), "both write /etc/token"},
	}
	cms := configMap("cm", map[string]string{"a": "b"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(input(tc.task, tc.agent, cms))
			var berr *Error
			require.ErrorAs(t, err, &berr)
			assert.Equal(t, v1alpha1.ReasonInvalidContexts, berr.Reason)
			assert.Contains(t, berr.Message, tc.want)
			assert.True(t, strings.HasPrefix(berr.Message, "Task team-a/t: "), "the message names the Task: %s", berr.Message)
		})
	}
}

func TestCredentials(t *testing.T) {
	agent := makeAgent().
		credential(v1alpha1.Credential{Name: "api-key", SecretRef: v1alpha1.SecretKeyReference{Name: "llm", Key: "key"}, Env: "ANTHROPIC_API_KEY"}).
		credential(v1alpha1.Credential{Name: "ssh", SecretRef: v1alpha1.SecretKeyReference{Name: "ssh", Key: "id_ed25519"}, MountPath: "/home/agent/.ssh/id_ed25519", FileMode: ptr.To[int32](0o400)}).
		credential(v1alpha1.Credential{Name: "all-env", SecretRef: v1alpha1.SecretKeyReference{Name: "env-bundle"}}).
		credential(v1alpha1.Credential{Name: "gcloud", SecretRef: v1alpha1.SecretKeyReference{Name: "gcloud"}, MountPath: "/home/agent/.config/gcloud"}).
		obj()
	out := build(t, input(makeTask("t").obj(), agent))
	ag := agentContainer(out)
	pod := out.Job.Spec.Template.Spec

	var env *corev1.EnvVar
	for i := range ag.Env {
		if ag.Env[i].Name == "ANTHROPIC_API_KEY" {
			env = &ag.Env[i]
		}
	}
	require.NotNil(t, env)
	assert.Equal(t, "llm", env.ValueFrom.SecretKeyRef.Name)
	assert.Equal(t, "key", env.ValueFrom.SecretKeyRef.Key)
	assert.Empty(t, env.Value, "the value is never copied into the Job")

	require.Len(t, ag.EnvFrom, 1)
	assert.Equal(t, "env-bundle", ag.EnvFrom[0].SecretRef.Name)

	file := mountAt(ag, "/home/agent/.ssh/id_ed25519")
	require.NotNil(t, file)
	assert.Equal(t, "value", file.SubPath)
	assert.True(t, file.ReadOnly)
	dir := mountAt(ag, "/home/agent/.config/gcloud")
	require.NotNil(t, dir)
	assert.Empty(t, dir.SubPath)

	modes := map[string]int32{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			modes[v.Secret.SecretName] = *v.Secret.DefaultMode
		}
	}
	assert.Equal(t, int32(0o440), modes["ssh"], "0400 keeps its meaning for the owner and lets the pod's group read it")
	assert.Equal(t, int32(0o440), modes["gcloud"])
	for _, c := range pod.InitContainers {
		assert.Empty(t, c.EnvFrom, "init containers never see the agent's credentials")
	}
}

func TestPodSettings(t *testing.T) {
	agent := makeAgent().podSpec(v1alpha1.AgentPodSpec{
		Labels:      map[string]string{"team": "a", LabelTaskUID: "spoofed"},
		Annotations: map[string]string{"cost-center": "42"},
		Scheduling: &v1alpha1.PodScheduling{
			NodeSelector: map[string]string{"pool": "agents"},
			Tolerations:  []corev1.Toleration{{Key: "agents", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Affinity:     &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}},
		},
		RuntimeClassName: ptr.To("gvisor"),
		Resources:        &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}},
		SecurityContext:  &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)},
	}).obj()
	agent.Spec.ServiceAccountName = "reviewer"
	out := build(t, input(makeTask("t").obj(), agent))
	tpl := out.Job.Spec.Template
	assert.Equal(t, "a", tpl.Labels["team"])
	assert.Equal(t, "6d1c6a58-0000-4000-8000-000000000001", tpl.Labels[LabelTaskUID], "the controller's labels cannot be overridden")
	assert.Equal(t, "42", tpl.Annotations["cost-center"])
	assert.Equal(t, "agents", tpl.Spec.NodeSelector["pool"])
	assert.Len(t, tpl.Spec.Tolerations, 1)
	assert.NotNil(t, tpl.Spec.Affinity)
	assert.Equal(t, "gvisor", *tpl.Spec.RuntimeClassName)
	assert.Equal(t, "reviewer", tpl.Spec.ServiceAccountName)
	ag := agentContainer(out)
	assert.Equal(t, "2Gi", ag.Resources.Limits.Memory().String())
	assert.Equal(t, int64(1000), *ag.SecurityContext.RunAsUser)
	assert.False(t, *ag.SecurityContext.AllowPrivilegeEscalation, "restricted defaults stay unless the Agent overrides them")
	assert.Equal(t, []corev1.Capability{"ALL"}, ag.SecurityContext.Capabilities.Drop)
}

func TestSecurityDefaults(t *testing.T) {
	out := build(t, input(makeTask("t").context(gitCtx("https://git.example/r.git", "r", "")).obj(), makeAgent().obj()))
	pod := out.Job.Spec.Template.Spec
	require.NotNil(t, pod.SecurityContext)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	assert.Equal(t, int64(65532), *pod.SecurityContext.FSGroup, "every container shares the group that owns the prepared files")
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
	for _, c := range pod.InitContainers {
		sc := c.SecurityContext
		assert.Equal(t, int64(65532), *sc.RunAsUser, c.Name)
		assert.True(t, *sc.RunAsNonRoot, c.Name)
		assert.True(t, *sc.ReadOnlyRootFilesystem, c.Name)
		assert.False(t, *sc.AllowPrivilegeEscalation, c.Name)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, c.Name)
		assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type, c.Name)
		assert.Contains(t, c.Image, "@sha256:", c.Name)
	}
	require.NotNil(t, pod.AutomountServiceAccountToken)
	assert.False(t, *pod.AutomountServiceAccountToken, "no API token unless the Agent asks for one")

	agent := makeAgent().obj()
	agent.Spec.AutomountServiceAccountToken = ptr.To(true)
	out = build(t, input(makeTask("t").obj(), agent))
	assert.True(t, *out.Job.Spec.Template.Spec.AutomountServiceAccountToken, "an Agent that sets automountServiceAccountToken gets the token")
}

func TestJob(t *testing.T) {
	out := build(t, input(makeTask("fix-bug").timeout("45m").obj(), makeAgent().obj()))
	job := out.Job
	assert.Equal(t, "fix-bug", job.Name)
	assert.Equal(t, "team-a", job.Namespace)
	assert.Equal(t, int32(0), *job.Spec.BackoffLimit)
	assert.Equal(t, int64(45*60), *job.Spec.ActiveDeadlineSeconds)
	require.Len(t, job.OwnerReferences, 1)
	own := job.OwnerReferences[0]
	assert.Equal(t, "Task", own.Kind)
	assert.Equal(t, "kubeopencode.io/v1alpha1", own.APIVersion)
	assert.True(t, *own.Controller)
	assert.Equal(t, "fix-bug", job.Labels[LabelTask])
	assert.Equal(t, "default", job.Labels[LabelAgent])
	assert.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)

	noTimeout := build(t, input(makeTask("t").obj(), makeAgent().obj()))
	assert.Nil(t, noTimeout.Job.Spec.ActiveDeadlineSeconds)
}

func TestJobNames(t *testing.T) {
	long := strings.Repeat("a", 240) + ".example.com"
	names := []string{"short", strings.Repeat("x", 52), strings.Repeat("x", 53), long, long[:200], "with.dots", "with-dots"}
	seen := map[string]string{}
	for _, n := range names {
		j := JobName(n)
		assert.LessOrEqual(t, len(j), 52, n)
		assert.NotContains(t, j, ".", n)
		assert.Regexp(t, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, j)
		if other, dup := seen[j]; dup {
			t.Errorf("Tasks %q and %q would share Job %q", n, other, j)
		}
		seen[j] = n
		assert.Equal(t, j, JobName(n), "the name is stable across reconciles and restarts")
	}
	assert.Equal(t, "short", JobName("short"))
	assert.LessOrEqual(t, len(LabelValue(long)), 63)
}

// TestContextCarrier: a small, all-text context travels inside the Job (a
// pod annotation context-init reads through the downward API); a larger or
// binary one in an immutable ConfigMap the Task owns.
func TestContextCarrier(t *testing.T) {
	planVolume := func(out *Output) corev1.Volume {
		for _, v := range out.Job.Spec.Template.Spec.Volumes {
			if v.Name == "context-plan" {
				return v
			}
		}
		t.Fatal("no context-plan volume")
		return corev1.Volume{}
	}

	small := build(t, input(makeTask("small").context(text("notes", "notes.md")).obj(), makeAgent().obj()))
	assert.Nil(t, small.ConfigMap, "no extra object for a small Task")
	v := planVolume(small)
	require.NotNil(t, v.DownwardAPI)
	assert.Equal(t, "metadata.annotations['"+AnnotationContextPlan+"']", v.DownwardAPI.Items[0].FieldRef.FieldPath)
	assert.Equal(t, contract.ContextPlanKey, v.DownwardAPI.Items[0].Path, "context-init finds the plan at the usual path")
	got, _, ok := written(t, small, "/kubeopencode/workspace/notes.md")
	require.True(t, ok)
	assert.Equal(t, "notes", got)

	large := build(t, input(makeTask("large").context(text(strings.Repeat("y", MaxInlineContextBytes), "big.txt")).obj(), makeAgent().obj()))
	require.NotNil(t, large.ConfigMap)
	assert.Equal(t, "large-context", large.ConfigMap.Name)
	assert.True(t, *large.ConfigMap.Immutable)
	assert.Equal(t, large.ConfigMap.OwnerReferences, large.Job.OwnerReferences, "the context ConfigMap belongs to the Task too")
	assert.Equal(t, "large-context", planVolume(large).ConfigMap.Name)
	assert.NotContains(t, large.Job.Spec.Template.Annotations, AnnotationContextPlan)
	got, _, ok = written(t, large, "/kubeopencode/workspace/big.txt")
	require.True(t, ok)
	assert.Len(t, got, MaxInlineContextBytes)

	cm := configMap("assets", nil)
	cm.BinaryData = map[string][]byte{"logo.png": {0x89, 'P', 'N', 'G', 0xff}}
	binary := build(t, input(makeTask("binary").context(configMapCtx("assets", "logo.png", "logo.png")).obj(), makeAgent().obj(), cm))
	require.NotNil(t, binary.ConfigMap, "binary content needs a ConfigMap's binaryData")
	assert.Equal(t, cm.BinaryData["logo.png"], binary.ConfigMap.BinaryData["f0"])
}

func TestTooMuchContext(t *testing.T) {
	big := strings.Repeat("x", MaxContextBytes)
	_, err := Build(input(makeTask("t").context(text(big, "big.txt")).obj(), makeAgent().obj()))
	var berr *Error
	require.ErrorAs(t, err, &berr)
	assert.Equal(t, v1alpha1.ReasonContextTooLarge, berr.Reason)
	assert.Contains(t, berr.Message, "Git context")
}

func TestUnpinnedImagesRefused(t *testing.T) {
	in := input(makeTask("t").obj(), makeAgent().obj())
	in.Images.GitInit = "registry.example/kubeopencode/git-init:latest"
	_, err := Build(in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pinned by digest")
}

func TestDeterministic(t *testing.T) {
	cm := configMap("m", map[string]string{"z": "1", "a": "2", "k": "3"})
	task := makeTask("t").context(configMapCtx("m", "", "d")).context(configMapCtx("m", "", "")).obj()
	a, err := json.Marshal(build(t, input(task, makeAgent().obj(), cm)))
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		b, err := json.Marshal(build(t, input(task, makeAgent().obj(), cm)))
		require.NoError(t, err)
		require.Equal(t, string(a), string(b))
	}
}

// TestGolden pins whole Jobs for representative Agents and Tasks; run
// `go test ./operator/internal/jobbuilder -update` after an intended change
// and review the diff.
func TestGolden(t *testing.T) {
	cms := []*corev1.ConfigMap{
		configMap("review-guide", map[string]string{"guide.md": "Be kind.", "checklist.md": "- tests\n- docs"}),
	}
	full := makeAgent().workspace("/home/agent/work").
		context(text("Use the repository's conventions.", "")).
		context(configMapCtx("review-guide", "guide.md", "/etc/review/guide.md")).
		credential(v1alpha1.Credential{Name: "token", SecretRef: v1alpha1.SecretKeyReference{Name: "gh", Key: "token"}, Env: "GITHUB_TOKEN"}).
		credential(v1alpha1.Credential{Name: "ssh", SecretRef: v1alpha1.SecretKeyReference{Name: "ssh"}, MountPath: "/home/agent/.ssh", FileMode: ptr.To[int32](0o400)}).
		podSpec(v1alpha1.AgentPodSpec{Labels: map[string]string{"team": "a"}, RuntimeClassName: ptr.To("gvisor")}).
		obj()
	withRef := gitCtx("https://git.example/org/app.git", "app", "")
	withRef.Git.Ref = "0123456789abcdef0123456789abcdef01234567"
	withRef.Git.SecretRef = &v1alpha1.LocalSecretReference{Name: "git-https"}
	cases := map[string]Input{
		"minimal": input(makeTask("minimal").obj(), makeAgent().obj()),
		"full": input(makeTask("full").timeout("1h").
			context(withRef).
			context(gitCtx("https://git.example/org/docs.git", "/opt/docs", "guides")).
			context(configMapCtx("review-guide", "", "review")).
			context(v1alpha1.ContextItem{Type: v1alpha1.ContextTypeRuntime}).
			obj(), full, cms...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			out := build(t, in)
			got, err := yaml.Marshal(map[string]any{"job": out.Job, "configMap": out.ConfigMap})
			require.NoError(t, err)
			file := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(file, got, 0o644))
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "run with -update to create the golden file")
			assert.Equal(t, string(want), string(got))
		})
	}
}

func TestCredentialAsVariableAndFile(t *testing.T) {
	agent := makeAgent().
		credential(v1alpha1.Credential{Name: "gh", SecretRef: v1alpha1.SecretKeyReference{Name: "github", Key: "token"}, Env: "GH_TOKEN", MountPath: "/home/agent/.config/gh/token"}).
		obj()
	out := build(t, input(makeTask("t").obj(), agent))
	ag := agentContainer(out)

	var env *corev1.EnvVar
	for i := range ag.Env {
		if ag.Env[i].Name == "GH_TOKEN" {
			env = &ag.Env[i]
		}
	}
	require.NotNil(t, env, "the key is a variable")
	assert.Equal(t, &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "github"}, Key: "token"}, env.ValueFrom.SecretKeyRef)
	m := mountAt(ag, "/home/agent/.config/gh/token")
	require.NotNil(t, m, "and the same key is a file")
	assert.Equal(t, "value", m.SubPath)
	for _, v := range out.Job.Spec.Template.Spec.Volumes {
		if v.Name == m.Name {
			require.NotNil(t, v.Secret)
			assert.Equal(t, "github", v.Secret.SecretName)
			assert.Equal(t, []corev1.KeyToPath{{Key: "token", Path: "value"}}, v.Secret.Items)
		}
	}
	assert.Empty(t, ag.EnvFrom, "one key, not the whole Secret")
}

func TestAgentEnv(t *testing.T) {
	agent := makeAgent().
		credential(v1alpha1.Credential{Name: "key", SecretRef: v1alpha1.SecretKeyReference{Name: "llm", Key: "key"}, Env: "OPENAI_API_KEY"}).
		obj()
	agent.Spec.Env = []corev1.EnvVar{
		{Name: "OPENCODE_MODEL", Value: "scripted/model"},
		{Name: "FROM_MAP", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}},
	}
	ag := agentContainer(build(t, input(makeTask("t").obj(), agent)))
	var names []string
	for _, e := range ag.Env {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"TASK_NAME", "TASK_NAMESPACE", "AGENT_NAME", "WORKSPACE_DIR", "TASK_FILE", "OPENCODE_MODEL", "FROM_MAP", "OPENAI_API_KEY", "KUBEOPENCODE_CREDENTIAL_ENV"}, names,
		"the controller's variables first, so an Agent's value may refer to them as $(WORKSPACE_DIR); the credentials, then their names, last")
	assert.Equal(t, "OPENAI_API_KEY", ag.Env[8].Value, "the agent image learns which variables hold credentials, to keep them out of its output")
	assert.Equal(t, "scripted/model", ag.Env[5].Value)
	assert.Equal(t, "cfg", ag.Env[6].ValueFrom.ConfigMapKeyRef.Name)
}

func TestReadOnlyRootFilesystemGetsTmp(t *testing.T) {
	ro := makeAgent().podSpec(v1alpha1.AgentPodSpec{SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)}}).obj()
	out := build(t, input(makeTask("t").obj(), ro))
	m := mountAt(agentContainer(out), "/tmp")
	require.NotNil(t, m, "an agent with a read-only root filesystem still has a writable /tmp")
	var tmp *corev1.Volume
	for i, v := range out.Job.Spec.Template.Spec.Volumes {
		if v.Name == m.Name {
			tmp = &out.Job.Spec.Template.Spec.Volumes[i]
		}
	}
	require.NotNil(t, tmp)
	assert.NotNil(t, tmp.EmptyDir)

	rw := build(t, input(makeTask("t").obj(), makeAgent().obj()))
	assert.Nil(t, mountAt(agentContainer(rw), "/tmp"), "with a writable root filesystem /tmp is the image's")

	under := makeAgent().workspace("/tmp/ws").podSpec(v1alpha1.AgentPodSpec{SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)}}).obj()
	mounts := agentContainer(build(t, input(makeTask("t").obj(), under))).VolumeMounts
	require.GreaterOrEqual(t, len(mounts), 2)
	assert.Equal(t, "/tmp", mounts[0].MountPath, "/tmp is mounted before the workspace inside it")
	assert.Equal(t, "/tmp/ws", mounts[1].MountPath)
}
