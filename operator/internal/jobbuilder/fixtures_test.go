package jobbuilder

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

const (
	testGitInit     = "registry.example/kubeopencode/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testContextInit = "registry.example/kubeopencode/context-init@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// taskW and agentW are small fluent builders that keep the tables readable.
type taskW struct{ t v1alpha1.Task }

func makeTask(name string) *taskW {
	return &taskW{t: v1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a", UID: "6d1c6a58-0000-4000-8000-000000000001"},
		Spec:       v1alpha1.TaskSpec{Description: ptr.To("Fix the failing test in pkg/foo.")},
	}}
}

func (w *taskW) description(d string) *taskW { w.t.Spec.Description = ptr.To(d); return w }
func (w *taskW) timeout(d string) *taskW {
	dur, _ := time.ParseDuration(d)
	w.t.Spec.Timeout = &metav1.Duration{Duration: dur}
	return w
}
func (w *taskW) context(c v1alpha1.ContextItem) *taskW {
	w.t.Spec.Contexts = append(w.t.Spec.Contexts, c)
	return w
}
func (w *taskW) obj() *v1alpha1.Task { return w.t.DeepCopy() }

type agentW struct{ a v1alpha1.Agent }

func makeAgent() *agentW {
	return &agentW{a: v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "team-a"},
		Spec: v1alpha1.AgentSpec{
			AgentImage:         "registry.example/agents/opencode@sha256:3333333333333333333333333333333333333333333333333333333333333333",
			WorkspaceDir:       "/workspace",
			Command:            []string{"sh", "-c", `opencode run "$(cat $TASK_FILE)"`},
			ServiceAccountName: "agent",
		},
	}}
}

func (w *agentW) workspace(dir string) *agentW { w.a.Spec.WorkspaceDir = dir; return w }
func (w *agentW) context(c v1alpha1.ContextItem) *agentW {
	w.a.Spec.Contexts = append(w.a.Spec.Contexts, c)
	return w
}
func (w *agentW) credential(c v1alpha1.Credential) *agentW {
	w.a.Spec.Credentials = append(w.a.Spec.Credentials, c)
	return w
}
func (w *agentW) podSpec(p v1alpha1.AgentPodSpec) *agentW { w.a.Spec.PodSpec = &p; return w }
func (w *agentW) obj() *v1alpha1.Agent                    { return w.a.DeepCopy() }

func text(t, mountPath string) v1alpha1.ContextItem {
	return v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, Text: ptr.To(t), MountPath: mountPath}
}

func configMapCtx(name, key, mountPath string) v1alpha1.ContextItem {
	return v1alpha1.ContextItem{Type: v1alpha1.ContextTypeConfigMap, MountPath: mountPath, ConfigMap: &v1alpha1.ConfigMapContext{Name: name, Key: key}}
}

func gitCtx(repo, mountPath, path string) v1alpha1.ContextItem {
	return v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: mountPath, Git: &v1alpha1.GitContext{Repository: repo, Path: path, Depth: ptr.To[int32](1)}}
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"}, Data: data}
}

func input(task *v1alpha1.Task, agent *v1alpha1.Agent, cms ...*corev1.ConfigMap) Input {
	m := map[string]*corev1.ConfigMap{}
	for _, cm := range cms {
		m[cm.Name] = cm
	}
	return Input{Task: task, Agent: agent, ConfigMaps: m, Images: Images{GitInit: testGitInit, ContextInit: testContextInit, PullPolicy: corev1.PullIfNotPresent}}
}
