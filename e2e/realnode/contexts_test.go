package realnode_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

func text(s string) *string { return &s }

// Modes and owners of what the init containers prepare: files are
// group-writable and group-owned by the pod's fsGroup (65532), directories
// setgid (Go prints the bit as "g"), so an agent of any UID can edit them.
const (
	preparedFile = "-rw-rw-r-- 65532:65532"
	preparedDir  = "dgrwxrwxr-x 65532:65532"
)

// TestTextContexts: a Text context without mountPath lands in task.md after
// the description; one with a relative mountPath becomes a workspace file;
// one with an absolute mountPath outside the workspace becomes that file
// while the rest of its directory, shipped by the image, stays visible.
func TestTextContexts(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, echoAgent(ns, "default", "id", "tree", "cat=task.md", "cat=notes/hint.md",
		"cat=/etc/ssl/certs/e2e-note.txt", "stat=/etc/ssl/certs/e2e-note.txt", "stat=/etc/ssl/certs/ca-certificates.crt"))
	create(t, task(ns, "text", "", "Fix the failing test.",
		v1alpha1.ContextItem{Name: "style", Type: v1alpha1.ContextTypeText, Text: text("Keep the diff small.")},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "notes/hint.md", Text: text("Look at parser.go first.\n")},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "/etc/ssl/certs/e2e-note.txt", Text: text("outside the workspace\n")},
	))
	tk := waitEnded(t, ns, "text")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	assert.Equal(t, "Fix the failing test.\n\n<context name=\"style\" namespace=\""+ns+"\" type=\"Text\">\nKeep the diff small.\n</context>\n", out.cats["task.md"])
	assert.Equal(t, "Look at parser.go first.\n", out.cats["notes/hint.md"])
	assert.Equal(t, "outside the workspace\n", out.cats["/etc/ssl/certs/e2e-note.txt"])
	assert.Contains(t, out.stats, "/etc/ssl/certs/ca-certificates.crt", "the image's file next to the mounted one:\n%s", out.raw)

	assert.Equal(t, "uid=65532 gid=65532 groups=[65532]", out.id)
	assert.True(t, strings.HasPrefix(out.stats["/workspace/task.md"], preparedFile+" "), "task.md: %q", out.stats["/workspace/task.md"])
	assert.True(t, strings.HasPrefix(out.stats["/workspace/notes/hint.md"], preparedFile+" 25"), "hint.md: %q", out.stats["/workspace/notes/hint.md"])
	assert.True(t, strings.HasPrefix(out.stats["/workspace/notes"], preparedDir+" "), "notes/: %q", out.stats["/workspace/notes"])
	assert.True(t, strings.HasPrefix(out.stats["/etc/ssl/certs/e2e-note.txt"], preparedFile+" "), "e2e-note.txt: %q", out.stats["/etc/ssl/certs/e2e-note.txt"])
	assert.Equal(t, int32(0), *tk.Status.ExitCode)
	assert.NotEmpty(t, tk.Status.Images.ContextInit)
	assert.Equal(t, env.images["context-init"], tk.Status.Images.ContextInit)
}

// TestConfigMapContexts: one key to a file, every key into a directory, and
// every key into task.md.
func TestConfigMapContexts(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	create(t, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "guide", Namespace: ns},
		Data:       map[string]string{"style.md": "Use tabs.\n", "review.md": "Check errors.\n"},
	})
	create(t, echoAgent(ns, "default", "tree", "cat=task.md", "cat=guide.md", "cat=/etc/guide/style.md", "cat=/etc/guide/review.md",
		"stat=/etc/guide", "stat=/etc/passwd"))
	create(t, task(ns, "configmap", "", "Review the change.",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeConfigMap, MountPath: "guide.md", ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide", Key: "style.md"}},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeConfigMap, MountPath: "/etc/guide", ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide"}},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeConfigMap, ConfigMap: &v1alpha1.ConfigMapContext{Name: "guide"}},
	))
	tk := waitEnded(t, ns, "configmap")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	assert.Equal(t, "Use tabs.\n", out.cats["guide.md"])
	assert.Equal(t, "Use tabs.\n", out.cats["/etc/guide/style.md"])
	assert.Equal(t, "Check errors.\n", out.cats["/etc/guide/review.md"])
	assert.True(t, strings.HasPrefix(out.stats["/workspace/guide.md"], preparedFile+" "), "guide.md: %q", out.stats["/workspace/guide.md"])
	assert.Contains(t, out.stats, "/etc/passwd", "the rest of /etc stays visible")
	wantTask := fmt.Sprintf("Review the change.\n\n"+
		"<context name=\"guide/review.md\" namespace=%q type=\"ConfigMap\">\nCheck errors.\n</context>\n\n"+
		"<context name=\"guide/style.md\" namespace=%q type=\"ConfigMap\">\nUse tabs.\n</context>\n", ns, ns)
	assert.Equal(t, wantTask, out.cats["task.md"])
}

// TestRuntimeContext: the Runtime context explains the environment, in
// task.md and at a mountPath, and the environment says the same.
func TestRuntimeContext(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	a := echoAgent(ns, "runner", "cat=task.md", "cat=runtime.md", "env=TASK_NAME", "env=TASK_NAMESPACE", "env=WORKSPACE_DIR", "env=TASK_FILE", "env=AGENT_NAME")
	a.Spec.WorkspaceDir = "/home/nonroot/work"
	create(t, a)
	create(t, task(ns, "runtime", "runner", "Where am I?",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeRuntime},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeRuntime, MountPath: "runtime.md"},
	))
	tk := waitEnded(t, ns, "runtime")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	assert.Equal(t, "runtime", out.envs["TASK_NAME"])
	assert.Equal(t, ns, out.envs["TASK_NAMESPACE"])
	assert.Equal(t, "/home/nonroot/work", out.envs["WORKSPACE_DIR"])
	assert.Equal(t, "/home/nonroot/work/task.md", out.envs["TASK_FILE"])
	assert.Equal(t, "runner", out.envs["AGENT_NAME"])
	runtimeText := out.cats["runtime.md"]
	require.NotEmpty(t, runtimeText, out.raw)
	assert.Contains(t, runtimeText, "TASK_NAME=runtime\n")
	assert.Contains(t, runtimeText, "TASK_NAMESPACE="+ns+"\n")
	assert.Contains(t, runtimeText, "WORKSPACE_DIR=/home/nonroot/work ")
	assert.Equal(t, fmt.Sprintf("Where am I?\n\n<context name=\"runtime\" namespace=%q type=\"Runtime\">\n%s</context>\n", ns, runtimeText), out.cats["task.md"])
}
