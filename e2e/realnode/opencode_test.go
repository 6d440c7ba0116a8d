package realnode_test

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

// The tests in this file run the real OpenCode binary, from the
// agent-opencode image, as the agent of Tasks in restricted namespaces. Only
// the model is a test double: the scripted model server on the pod bridge
// answers each conversation from a script, and its request log shows what
// OpenCode sent.

// opencodeAgent is an Agent that runs the agent-opencode image against the
// scripted model's script, with a read-only root filesystem. The API key
// comes from a Secret, as with a real provider; extra is merged into the
// OpenCode configuration.
func opencodeAgent(t testing.TB, ns, script string, extra map[string]any) *v1alpha1.Agent {
	t.Helper()
	const key = "scripted-key-for-" + "e2e"
	require.NoError(t, env.k8s.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "model-credentials", Namespace: ns},
		StringData: map[string]string{"api-key": key},
	}))
	cfg := map[string]any{
		"provider": map[string]any{"scripted": map[string]any{
			"npm":     "@ai-sdk/openai-compatible",
			"name":    "Scripted model",
			"options": map[string]any{"baseURL": env.model.BaseURL(script), "apiKey": "{env:MODEL_API_KEY}"},
			"models":  map[string]any{"test-model": map[string]any{"name": "Scripted", "tool_call": true}},
		}},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	cfgJSON, err := json.Marshal(cfg)
	require.NoError(t, err)
	return &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
		Spec: v1alpha1.AgentSpec{
			AgentImage: env.opencodeImage,
			Command:    []string{images.AgentOpenCode.BinaryPath()},
			Env: []corev1.EnvVar{
				{Name: "OPENCODE_MODEL", Value: "scripted/test-model"},
				{Name: "OPENCODE_CONFIG_CONTENT", Value: string(cfgJSON)},
			},
			Credentials: []v1alpha1.Credential{{
				Name: "model-key", SecretRef: v1alpha1.SecretKeyReference{Name: "model-credentials", Key: "api-key"}, Env: "MODEL_API_KEY",
			}},
			ServiceAccountName: agentSA,
			PodSpec: &v1alpha1.AgentPodSpec{
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)},
			},
		},
	}
}

// scriptName is a model script name unique to the test.
func scriptName(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
}

func call(name string, args map[string]any) modelserver.ToolCall {
	data, _ := json.Marshal(args)
	return modelserver.ToolCall{Name: name, Arguments: string(data)}
}

// TestOpenCodeCompletesTask: the model drives OpenCode to read a file of
// the Task's Git context, write a file, run a shell command and answer. The
// Task completes; the model saw task.md with its contexts, the file's
// content and the command's output, which shows the tools ran as the pod's
// user inside the workspace.
func TestOpenCodeCompletesTask(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	gitSecrets(t, ns)
	script := scriptName(t)
	env.model.Handle(script, modelserver.Steps(
		modelserver.Reply{Text: "Reading the README first.", ToolCalls: []modelserver.ToolCall{call("read", map[string]any{"filePath": "/workspace/repo/README.md"})}},
		modelserver.Reply{ToolCalls: []modelserver.ToolCall{call("write", map[string]any{"filePath": "/workspace/summary.txt", "content": "The repository is the e2e repository.\n"})}},
		modelserver.Reply{ToolCalls: []modelserver.ToolCall{call("bash", map[string]any{"command": "id -u; pwd; cat summary.txt; git -C repo log --format=%H -1", "description": "Check the result"})}},
		modelserver.Reply{Text: "Wrote summary.txt from the README."},
	))
	create(t, opencodeAgent(t, ns, script, nil))
	tk := task(ns, "summarize", "", "Summarize the README of the repository in summary.txt.",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, Name: "style", Text: ptr.To("Write one sentence.")},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, Name: "repo", MountPath: "repo", Git: &v1alpha1.GitContext{
			Repository: env.git.httpURL, SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}},
	)
	create(t, tk)
	tk = waitTask(t, ns, tk.Name, 5*time.Minute, "Completed or Failed", func(tk *v1alpha1.Task) bool { return tk.Status.Phase.IsTerminal() })
	requireCompleted(t, tk)

	reqs := agentRequests(env.model.Requests(script))
	require.Len(t, reqs, 4, "one model request per step")
	first := reqs[0]
	assert.Contains(t, first.Text(), "Summarize the README of the repository in summary.txt.", "the prompt is task.md")
	assert.Contains(t, first.Text(), `<context name="style" namespace="`+ns+`" type="Text">`+"\nWrite one sentence.", "task.md carries the Text context")
	assert.True(t, first.HasTool("bash") && first.HasTool("write") && first.HasTool("read"), "the image allows OpenCode's tools: %v", first.Tools)
	assert.Equal(t, modelserver.KeyFingerprint("scripted-key-for-e2e"), first.KeyFingerprint, "the API key came from the Secret")
	assert.Contains(t, reqs[1].Text(), "# e2e repository", "OpenCode read the README that git-init cloned")
	assert.Contains(t, reqs[3].Text(), "65532\n/workspace\nThe repository is the e2e repository.\n"+env.git.Commit,
		"the shell command ran as the pod's user in the workspace, after the write, in the checkout")

	out := containerLogs(t, taskPod(t, tk), "agent")
	assert.Contains(t, out, "[tool read] completed")
	assert.Contains(t, out, "[tool write] completed")
	assert.Contains(t, out, "[tool bash] completed")
	assert.Contains(t, out, "final answer: Wrote summary.txt from the README.")
	assert.NotContains(t, out, "scripted-key-for-e2e", "the API key is not in the agent's output")
}

// agentRequests leaves out the side requests OpenCode makes without
// tools (the session title).
func agentRequests(all []*modelserver.Request) []*modelserver.Request {
	var out []*modelserver.Request
	for _, r := range all {
		if len(r.Tools) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// TestOpenCodeModelFailure: a model endpoint that answers every request
// with 503 fails the Task, in bounded time, with the provider's message.
func TestOpenCodeModelFailure(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	script := scriptName(t)
	env.model.Handle(script, func(*modelserver.Request) modelserver.Reply {
		return modelserver.Reply{Error: &modelserver.Error{Status: 503, Message: "the model is overloaded", RetryAfter: 200 * time.Millisecond}}
	})
	create(t, opencodeAgent(t, ns, script, nil))
	tk := task(ns, "overloaded", "", "Say hello.")
	create(t, tk)
	tk = waitTask(t, ns, tk.Name, 4*time.Minute, "Failed", func(tk *v1alpha1.Task) bool { return tk.Status.Phase.IsTerminal() })
	require.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase, describeTask(tk))
	cond := condition(tk, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, cond)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, cond.Reason)
	assert.Contains(t, cond.Message, "the model request failed: APIError: the model is overloaded (HTTP 503 from "+env.model.URL)
	assert.NotEmpty(t, env.model.Requests(script))
}

// TestOpenCodeRefusedPermission: OpenCode exits 0 when a tool call is
// refused; the Task must still not report Completed.
func TestOpenCodeRefusedPermission(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	script := scriptName(t)
	env.model.Handle(script, modelserver.Steps(
		modelserver.Reply{ToolCalls: []modelserver.ToolCall{call("bash", map[string]any{"command": "touch /workspace/refused", "description": "Create a file"})}},
		modelserver.Reply{Text: "Done."},
	))
	create(t, opencodeAgent(t, ns, script, map[string]any{"permission": map[string]any{"bash": "ask"}}))
	tk := task(ns, "refused", "", "Create the file refused.")
	create(t, tk)
	tk = waitEnded(t, ns, tk.Name)
	require.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase, "a refused tool call is not a completed Task: %s", describeTask(tk))
	cond := condition(tk, v1alpha1.TaskConditionSucceeded)
	require.NotNil(t, cond)
	assert.Contains(t, cond.Message, "OpenCode refused the bash tool call")
	assert.Contains(t, cond.Message, "touch /workspace/refused")
}

// TestOpenCodeStopWhileThinking: a Task stopped while OpenCode waits for
// the model ends Failed with the user's stop recorded, and its pod goes.
func TestOpenCodeStopWhileThinking(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	script := scriptName(t)
	env.model.Handle(script, modelserver.Steps(modelserver.Reply{Hold: 10 * time.Minute, Text: "too late"}))
	create(t, opencodeAgent(t, ns, script, nil))
	tk := task(ns, "thinking", "", "Think for a long time.")
	create(t, tk)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	_, err := env.model.WaitRequest(ctx, script, func(r *modelserver.Request) bool { return len(r.Tools) > 0 })
	require.NoError(t, err, "OpenCode asked the model; Task: %s", describeTask(getTask(t, ns, tk.Name)))

	tk = getTask(t, ns, tk.Name)
	patch := client.MergeFrom(tk.DeepCopy())
	tk.Annotations = map[string]string{v1alpha1.StopAnnotation: "true"}
	require.NoError(t, env.k8s.Patch(t.Context(), tk, patch))
	tk = waitEnded(t, ns, tk.Name)
	assert.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase)
	stopped := condition(tk, v1alpha1.TaskConditionStopped)
	require.NotNil(t, stopped, describeTask(tk))
	assert.Equal(t, v1alpha1.ReasonUserStopped, stopped.Reason)
	waitGone(t, tk)
}

// TestQuickstartSample runs manifests/samples/agent.yaml and task.yaml as
// tools/quickstart does on a real node: the real OpenCode, the sample's
// command, credential, context and read-only root filesystem, and its
// egress isolation on, the allow-list pointed at the scripted model (by the
// name the controller resolves). The Task completes, the pod proved its
// NetworkPolicy enforced before OpenCode started, and OpenCode still got
// every answer from the model.
func TestQuickstartSample(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubeopencode-agent", Namespace: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-credentials", Namespace: ns}, StringData: map[string]string{"api-key": "scripted-key-for-quickstart"}},
	} {
		create(t, obj)
	}
	script := scriptName(t)
	base, err := url.Parse(env.model.Handle(script, deploy.SampleScript))
	require.NoError(t, err)
	base.Host = net.JoinHostPort(modelHost, base.Port())
	model, err := deploy.OpenAICompatible("scripted", base.String(), "quickstart")
	require.NoError(t, err)
	agent, err := deploy.SampleAgent(root, ns, env.opencodeImage, model)
	require.NoError(t, err)
	require.NotNil(t, agent.Spec.Network, "the sample Agent turns egress isolation on")
	assert.Equal(t, []v1alpha1.EgressRule{{Host: modelHost, Ports: []int32{int32(nettest.Port(t, base.Host))}}}, agent.Spec.Network.Egress.Allow)
	create(t, agent)
	tk, err := deploy.SampleTask(root, ns)
	require.NoError(t, err)
	create(t, tk)

	tk = waitTask(t, ns, tk.Name, 5*time.Minute, "Completed or Failed", func(tk *v1alpha1.Task) bool { return tk.Status.Phase.IsTerminal() })
	requireCompleted(t, tk)
	c := condition(tk, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, c, describeTask(tk))
	assert.Equal(t, metav1.ConditionTrue, c.Status, c.Message)
	assert.Contains(t, tk.Status.Egress.Refused, env.cluster.APIServiceAddress+" (Kubernetes API)")

	reqs := agentRequests(env.model.Requests(script))
	require.Len(t, reqs, 4, "one model request per step of the sample script")
	assert.Contains(t, reqs[0].Text(), "Say hello, list the files in your workspace, and exit.")
	assert.Contains(t, reqs[0].Text(), "Keep changes small. Run the tests before you finish.", "the sample Agent's Text context")
	assert.Equal(t, modelserver.KeyFingerprint("scripted-key-for-quickstart"), reqs[0].KeyFingerprint, "the key came from the sample credential")
	assert.Contains(t, reqs[1].Text(), "task.md", "OpenCode listed the workspace")
	out := containerLogs(t, taskPod(t, tk), "agent")
	assert.Contains(t, out, "[tool write] completed")
	assert.Contains(t, out, "final answer: Hello!")
}
