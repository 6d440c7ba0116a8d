package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
)

// The sample Agent and Task a user applies first, in manifests/samples.
var (
	SampleAgentFile = filepath.Join("manifests", "samples", "agent.yaml")
	SampleTaskFile  = filepath.Join("manifests", "samples", "task.yaml")
)

// SampleModel is the model the sample Agent is pointed at in place of the
// one manifests/samples/agent.yaml names.
type SampleModel struct {
	// Name is OPENCODE_MODEL, as provider/model.
	Name string
	// Config is OPENCODE_CONFIG_CONTENT (JSON); empty for a provider
	// OpenCode knows.
	Config string
	// Egress is where the model is served. It replaces the sample's
	// network.egress allow-list; nil keeps the sample's.
	Egress []v1alpha1.EgressRule
}

// ReadSampleAgent reads the sample Agent from the module at root, in
// namespace ns, as a user would apply it.
func ReadSampleAgent(root, ns string) (*v1alpha1.Agent, error) {
	agent := &v1alpha1.Agent{}
	if err := readSample(root, SampleAgentFile, ns, agent); err != nil {
		return nil, err
	}
	return agent, nil
}

// SampleAgent is the sample Agent in namespace ns with image as its agent
// image and m as its model. The rest (command, context, credential,
// resources, service account, egress isolation) stays as a user would
// apply it.
func SampleAgent(root, ns, image string, m SampleModel) (*v1alpha1.Agent, error) {
	agent, err := ReadSampleAgent(root, ns)
	if err != nil {
		return nil, err
	}
	agent.Spec.AgentImage = image
	env := []corev1.EnvVar{{Name: "OPENCODE_MODEL", Value: m.Name}}
	if m.Config != "" {
		env = append(env, corev1.EnvVar{Name: "OPENCODE_CONFIG_CONTENT", Value: m.Config})
	}
	for _, e := range agent.Spec.Env {
		if e.Name != "OPENCODE_MODEL" && e.Name != "OPENCODE_CONFIG_CONTENT" {
			env = append(env, e)
		}
	}
	agent.Spec.Env = env
	if m.Egress != nil {
		if agent.Spec.Network == nil || agent.Spec.Network.Egress == nil {
			return nil, fmt.Errorf("%s: the sample Agent has no network.egress to point at the model", SampleAgentFile)
		}
		agent.Spec.Network.Egress.Allow = m.Egress
	}
	return agent, nil
}

// SampleTask reads the sample Task from the module at root, in namespace ns.
func SampleTask(root, ns string) (*v1alpha1.Task, error) {
	task := &v1alpha1.Task{}
	if err := readSample(root, SampleTaskFile, ns, task); err != nil {
		return nil, err
	}
	return task, nil
}

// readSample decodes the manifest at file (relative to root) into obj,
// refusing fields the type does not have, and puts it in namespace ns.
func readSample(root, file, ns string, obj client.Object) error {
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	obj.SetNamespace(ns)
	return nil
}

// OpenAICompatible is a model served by an OpenAI-compatible API at
// baseURL, under the provider name provider: OpenCode reads its key from
// the sample credential's variable, and the Agent's pods may connect to
// baseURL's host and port only.
func OpenAICompatible(provider, baseURL, model string) (SampleModel, error) {
	rule, err := ModelEgress(baseURL)
	if err != nil {
		return SampleModel{}, err
	}
	cfg := map[string]any{"provider": map[string]any{provider: map[string]any{
		"npm":     "@ai-sdk/openai-compatible",
		"name":    provider,
		"options": map[string]any{"baseURL": baseURL, "apiKey": "{env:ANTHROPIC_API_KEY}"},
		"models":  map[string]any{model: map[string]any{"name": model, "tool_call": true}},
	}}}
	data, err := json.Marshal(cfg)
	if err != nil {
		return SampleModel{}, err
	}
	return SampleModel{Name: provider + "/" + model, Config: string(data), Egress: []v1alpha1.EgressRule{rule}}, nil
}

// ModelEgress is the egress allow-list entry for a model API at baseURL:
// its host name, or its address as a one-address cidr, on its port (the
// scheme's default when the URL has none).
func ModelEgress(baseURL string) (v1alpha1.EgressRule, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return v1alpha1.EgressRule{}, fmt.Errorf("model URL %q: %w", baseURL, err)
	}
	port := map[string]int{"http": 80, "https": 443}[u.Scheme]
	if port == 0 || u.Hostname() == "" {
		return v1alpha1.EgressRule{}, fmt.Errorf("model URL %q: want http:// or https:// and a host, such as https://api.example.com/v1", baseURL)
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return v1alpha1.EgressRule{}, fmt.Errorf("model URL %q: port %q is not a port number", baseURL, p)
		}
	}
	rule := v1alpha1.EgressRule{Ports: []int32{int32(port)}}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		rule.CIDR = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String()
	} else {
		rule.Host = strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	}
	return rule, nil
}

// ProviderHosts are the API hosts of providers OpenCode knows by name, for
// the sample Agent's egress allow-list when it uses one of them.
var ProviderHosts = map[string]string{
	"anthropic":  "api.anthropic.com",
	"openai":     "api.openai.com",
	"google":     "generativelanguage.googleapis.com",
	"mistral":    "api.mistral.ai",
	"groq":       "api.groq.com",
	"deepseek":   "api.deepseek.com",
	"xai":        "api.x.ai",
	"openrouter": "openrouter.ai",
}

// ProviderModel is the model provider/name of a provider OpenCode knows,
// its pods allowed to connect to the provider's API host on 443.
func ProviderModel(model string) (SampleModel, error) {
	provider, _, ok := strings.Cut(model, "/")
	host := ProviderHosts[provider]
	if !ok || host == "" {
		return SampleModel{}, fmt.Errorf("model %q: egress isolation needs the provider's API host, known for %s; "+
			"give an OpenAI-compatible endpoint instead, or turn isolation off", model, strings.Join(slices.Sorted(maps.Keys(ProviderHosts)), ", "))
	}
	return SampleModel{Name: model, Egress: []v1alpha1.EgressRule{{Host: host, Ports: []int32{443}}}}, nil
}

// SampleScript is what the scripted model answers the sample Task ("Say
// hello, list the files in your workspace, and exit."): it has OpenCode
// list the workspace, read task.md, write a file and answer.
var SampleScript = modelserver.Steps(
	modelserver.Reply{Text: "Hello! Let me look at the workspace.", ToolCalls: []modelserver.ToolCall{{Name: "bash", Arguments: `{"command": "id; pwd; ls -la", "description": "List the workspace"}`}}},
	modelserver.Reply{ToolCalls: []modelserver.ToolCall{{Name: "read", Arguments: `{"filePath": "/workspace/task.md"}`}}},
	modelserver.Reply{ToolCalls: []modelserver.ToolCall{{Name: "write", Arguments: `{"filePath": "/workspace/hello.txt", "content": "Hello from OpenCode, run by KubeOpenCode.\n"}`}}},
	modelserver.Reply{Text: "Hello! The workspace held task.md, the Task's prompt; I listed it, read the prompt and wrote hello.txt."},
)
