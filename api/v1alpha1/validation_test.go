package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/tools/cluster/envtest"
)

// TestAdmissionValidation installs the generated CRDs into a real API server
// and proves that bad Tasks, Agents and KubeOpenCodeConfigs are rejected at
// admission, each with a message naming the field and saying what to do.
func TestAdmissionValidation(t *testing.T) {
	cfg := envtest.ForTest(t, filepath.Join("..", "..", "manifests", "crd"))
	c, err := client.New(cfg, client.Options{})
	require.NoError(t, err)
	ctx := context.Background()

	const task = "apiVersion: kubeopencode.io/v1alpha1\nkind: Task\nmetadata: {name: t, namespace: default}\n"
	const agent = "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a, namespace: default}\n"
	const config = "apiVersion: kubeopencode.io/v1alpha1\nkind: KubeOpenCodeConfig\n"
	const agentSpec = "spec:\n  agentImage: img\n  command: [run]\n  serviceAccountName: sa\n"
	// allow opens an Agent's spec.network.egress.allow list: a case appends
	// its entries and closes it with "]}}".
	const allow = agent + agentSpec + "  network: {egress: {allow: ["

	cases := []struct {
		name      string
		manifest  string
		wantField string
		wantMsg   string
	}{
		// Task contexts: the member matching the type, and only it.
		{"Text without text", task + "spec:\n  contexts: [{type: Text}]", "spec.contexts[0].text", "set type: Text or remove text"},
		{"Text with a git member", task + "spec:\n  contexts: [{type: Text, text: hi, git: {repository: 'https://h/r'}}]", "spec.contexts[0].git", "git must be set for a Git context and only for it"},
		{"ConfigMap without configMap", task + "spec:\n  contexts: [{type: ConfigMap}]", "spec.contexts[0].configMap", "configMap must be set"},
		{"Git without git", task + "spec:\n  contexts: [{type: Git, mountPath: src}]", "spec.contexts[0].git", "git must be set"},
		{"runtime on a Text context", task + "spec:\n  contexts: [{type: Text, text: hi, runtime: {}}]", "spec.contexts[0].runtime", "runtime may be set only for a Runtime context"},
		{"unknown context type", task + "spec:\n  contexts: [{type: Database}]", "spec.contexts[0].type", "supported values"},
		{"Git without mountPath", task + "spec:\n  contexts: [{type: Git, git: {repository: 'https://h/r'}}]", "spec.contexts[0].mountPath", "a Git context needs mountPath"},
		{"fileMode above 0777", task + "spec:\n  contexts: [{type: Text, text: hi, mountPath: a, fileMode: 512}]", "spec.contexts[0].fileMode", "less than or equal to 511"},
		{"fileMode without mountPath", task + "spec:\n  contexts: [{type: Text, text: hi, fileMode: 420}]", "spec.contexts[0].fileMode", "fileMode applies only to a context with mountPath"},
		{"mountPath with ..", task + "spec:\n  contexts: [{type: Text, text: hi, mountPath: ../etc/passwd}]", "spec.contexts[0].mountPath", "no '.' or '..' segments"},
		{"mountPath with a trailing slash", task + "spec:\n  contexts: [{type: Text, text: hi, mountPath: docs/}]", "spec.contexts[0].mountPath", "must not end with '/'"},
		{"mountPath with //", task + "spec:\n  contexts: [{type: Text, text: hi, mountPath: a//b}]", "spec.contexts[0].mountPath", "must be clean"},
		{"repository that is no URL", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'not a url'}}]", "spec.contexts[0].git.repository", "must be an https://, http://, ssh:// or user@host:path URL"},
		{"repository with credentials", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://user:token@github.com/o/r.git'}}]", "spec.contexts[0].git.repository", "put them in a Secret"},
		{"ref with ..", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://h/r', ref: 'main..dev'}}]", "spec.contexts[0].git.ref", "ref must be a branch name, a tag name or a full commit SHA"},
		{"ref starting with -", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://h/r', ref: '-upload-pack=x'}}]", "spec.contexts[0].git.ref", "leading '-'"},
		{"negative depth", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://h/r', depth: -1}}]", "spec.contexts[0].git.depth", "greater than or equal to 0"},
		{"absolute git path", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://h/r', path: /docs}}]", "spec.contexts[0].git.path", "relative to the repository root"},
		{"git path escaping the repository", task + "spec:\n  contexts: [{type: Git, mountPath: src, git: {repository: 'https://h/r', path: ../x}}]", "spec.contexts[0].git.path", "no '.' or '..' segments"},
		{"ConfigMap name with a space", task + "spec:\n  contexts: [{type: ConfigMap, configMap: {name: 'my map'}}]", "spec.contexts[0].configMap.name", "should match"},
		{"timeout of zero", task + "spec:\n  description: x\n  timeout: 0s", "spec.timeout", "timeout must be at least 1s"},
		{"neither description nor contexts", task + "spec:\n  agentRef: default", "spec", "needs spec.description or at least one context"},
		{"agentRef that is no name", task + "spec:\n  description: x\n  agentRef: Bad_Agent", "spec.agentRef", "should match"},
		{"negative ttlSecondsAfterFinished", task + "spec:\n  description: x\n  ttlSecondsAfterFinished: -1", "spec.ttlSecondsAfterFinished", "ttlSecondsAfterFinished must be 0 or more seconds"},

		// Agents.
		{"Agent without agentImage", agent + "spec:\n  command: [run]\n  serviceAccountName: sa", "spec.agentImage", "Required value"},
		{"Agent with an empty command", agent + "spec:\n  agentImage: img\n  command: []\n  serviceAccountName: sa", "spec.command", "should have at least 1 items"},
		{"Agent without serviceAccountName", agent + "spec:\n  agentImage: img\n  command: [run]", "spec.serviceAccountName", "Required value"},
		{"relative workspaceDir", agent + agentSpec + "  workspaceDir: workspace", "spec.workspaceDir", "workspaceDir must be an absolute directory"},
		{"workspaceDir /", agent + agentSpec + "  workspaceDir: /", "spec.workspaceDir", "workspaceDir must be an absolute directory other than '/'"},
		{"workspaceDir with ..", agent + agentSpec + "  workspaceDir: /a/../b", "spec.workspaceDir", "workspaceDir must be clean"},
		{"negative maxConcurrentTasks", agent + agentSpec + "  maxConcurrentTasks: -1", "spec.maxConcurrentTasks", "greater than or equal to 0"},
		{"empty taskRetention", agent + agentSpec + "  taskRetention: {}", "spec.taskRetention", "remove taskRetention to keep finished Tasks forever"},
		{"negative Agent TTL", agent + agentSpec + "  taskRetention: {ttlSecondsAfterFinished: -5}", "spec.taskRetention.ttlSecondsAfterFinished", "must be 0 or more seconds"},
		{"negative successful history", agent + agentSpec + "  taskRetention: {successfulTasksHistoryLimit: -1}", "spec.taskRetention.successfulTasksHistoryLimit", "0 keeps no Completed Task"},
		{"negative failed history", agent + agentSpec + "  taskRetention: {failedTasksHistoryLimit: -1}", "spec.taskRetention.failedTasksHistoryLimit", "0 keeps no Failed Task"},
		{"credential env without key", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s}, env: TOKEN}]", "spec.credentials[0].secretRef.key", "env needs secretRef.key"},
		{"env setting a controller variable", agent + agentSpec + "  env: [{name: TASK_FILE, value: /tmp/x}]", "spec.env", "the controller sets them for every Task"},
		{"env repeating a credential's variable", agent + agentSpec + "  env: [{name: TOKEN, value: x}]\n  credentials: [{name: c, secretRef: {name: s, key: k}, env: TOKEN}]", "spec.env", "set it in one place"},
		{"env listing one name twice", agent + agentSpec + "  env: [{name: A, value: x}, {name: A, value: y}]", "spec.env[1]", "Duplicate value"},
		{"credential key going nowhere", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s, key: k}}]", "spec.credentials[0].secretRef.key", "neither env nor mountPath says where it goes"},
		{"credential fileMode without mountPath", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s}, fileMode: 256}]", "spec.credentials[0].fileMode", "fileMode applies only with mountPath"},
		{"credential env that is no variable name", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s, key: k}, env: 1TOKEN}]", "spec.credentials[0].env", "should match"},
		{"credential with a relative mountPath", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s}, mountPath: etc/creds}]", "spec.credentials[0].mountPath", "must be an absolute path"},
		{"two credentials of one name", agent + agentSpec + "  credentials: [{name: c, secretRef: {name: s}}, {name: c, secretRef: {name: t}}]", "spec.credentials[1]", "Duplicate value"},

		// Agent network egress: each allow entry is a cidr or a host, with ports.
		{"egress entry with cidr and host", allow + "{cidr: 10.20.0.0/16, host: api.openai.com, ports: [443]}]}}", "spec.network.egress.allow[0]", "needs exactly one of cidr (an IP range such as 203.0.113.0/24) and host"},
		{"egress entry with neither cidr nor host", allow + "{ports: [443]}]}}", "spec.network.egress.allow[0]", "needs exactly one of cidr (an IP range such as 203.0.113.0/24) and host"},
		{"cidr with bits past the prefix", allow + "{cidr: 10.20.3.4/16, ports: [443]}]}}", "spec.network.egress.allow[0].cidr", "write the network address, for example 10.20.0.0/16 rather than 10.20.3.4/16"},
		{"cidr that is no CIDR", allow + "{cidr: not-a-cidr, ports: [443]}]}}", "spec.network.egress.allow[0].cidr", "cidr must be an IP range in CIDR notation"},
		{"cidr without a prefix length", allow + "{cidr: 10.0.0.1, ports: [443]}]}}", "spec.network.egress.allow[0].cidr", "cidr must be an IP range in CIDR notation"},
		{"host with a scheme", allow + "{host: 'https://api.openai.com', ports: [443]}]}}", "spec.network.egress.allow[0].host", "no scheme, port, path or wildcard"},
		{"host with a port", allow + "{host: 'api.openai.com:443', ports: [443]}]}}", "spec.network.egress.allow[0].host", "no scheme, port, path or wildcard"},
		{"host with a wildcard", allow + "{host: '*.openai.com', ports: [443]}]}}", "spec.network.egress.allow[0].host", "no scheme, port, path or wildcard"},
		{"host in upper case", allow + "{host: API.OpenAI.com, ports: [443]}]}}", "spec.network.egress.allow[0].host", "host must be a lower-case DNS name"},
		{"host that is an IP address", allow + "{host: 203.0.113.7, ports: [443]}]}}", "spec.network.egress.allow[0].host", "write an IP address as a cidr (203.0.113.7/32)"},
		{"egress entry without ports", allow + "{host: api.openai.com, ports: []}]}}", "spec.network.egress.allow[0].ports", "should have at least 1 items"},
		{"port 0", allow + "{host: api.openai.com, ports: [0]}]}}", "spec.network.egress.allow[0].ports[0]", "greater than or equal to 1"},
		{"port above 65535", allow + "{host: api.openai.com, ports: [70000]}]}}", "spec.network.egress.allow[0].ports[0]", "less than or equal to 65535"},
		{"protocol SCTP", allow + "{host: api.openai.com, ports: [443], protocol: SCTP}]}}", "spec.network.egress.allow[0].protocol", "supported values"},
		{"unknown egress dns", agent + agentSpec + "  network: {egress: {dns: Google}}", "spec.network.egress.dns", "supported values"},
		{"more than 64 egress entries", allow + strings.Repeat("{host: api.openai.com, ports: [443]}, ", 64) + "{host: api.openai.com, ports: [443]}]}}", "spec.network.egress.allow", "must have at most 64 items"},
		{"more than 16 ports", allow + "{host: api.openai.com, ports: [" + strings.Repeat("1, ", 16) + "17]}]}}", "spec.network.egress.allow[0].ports", "must have at most 16 items"},

		// KubeOpenCodeConfig.
		{"config not named cluster", config + "metadata: {name: main}\nspec: {systemImage: {tag: v1}}", "", `its metadata.name must be "cluster"`},
		{"systemImage with neither registry nor tag", config + "metadata: {name: cluster}\nspec: {systemImage: {imagePullPolicy: Always}}", "spec.systemImage", "systemImage needs registry, tag or both"},
		{"tag with a space", config + "metadata: {name: cluster}\nspec: {systemImage: {tag: 'v1 beta'}}", "spec.systemImage.tag", "should match"},
		{"unknown pull policy", config + "metadata: {name: cluster}\nspec: {systemImage: {tag: v1, imagePullPolicy: Sometimes}}", "spec.systemImage.imagePullPolicy", "supported values"},
	}
	require.GreaterOrEqual(t, len(cases), 25)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			require.NoError(t, yaml.Unmarshal([]byte(tc.manifest), &obj.Object))
			err := c.Create(ctx, obj)
			require.Error(t, err, "the API server accepted:\n%s", tc.manifest)
			require.True(t, apierrors.IsInvalid(err), "want an Invalid error, got %v", err)
			assert.Contains(t, err.Error(), tc.wantField, "the message names the field")
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}

	t.Run("Task spec is immutable", func(t *testing.T) {
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(task+"spec: {description: first}"), &obj.Object))
		obj.SetName("immutable")
		require.NoError(t, c.Create(ctx, obj))
		require.NoError(t, unstructured.SetNestedField(obj.Object, "second", "spec", "description"))
		err := c.Update(ctx, obj)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Task spec is immutable")
	})

	t.Run("defaults", func(t *testing.T) {
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(agent+agentSpec+"  contexts: [{type: Git, mountPath: src, git: {repository: 'git@github.com:o/r.git'}}]"), &obj.Object))
		obj.SetName("defaults")
		require.NoError(t, c.Create(ctx, obj))
		ws, _, _ := unstructured.NestedString(obj.Object, "spec", "workspaceDir")
		assert.Equal(t, "/workspace", ws)
		ctxs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "contexts")
		depth, _, _ := unstructured.NestedInt64(ctxs[0].(map[string]any), "git", "depth")
		assert.Equal(t, int64(1), depth, "Git depth defaults to a shallow clone")
	})

	t.Run("egress accepted, with its defaults", func(t *testing.T) {
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(agent+agentSpec+"  network: {egress: {dns: None, kubernetesAPI: true, allow: [{cidr: 10.20.0.0/16, ports: [443]}, {host: api.openai.com, ports: [443, 80]}, {cidr: '2001:db8::/32', protocol: UDP, ports: [53]}]}}"), &obj.Object))
		obj.SetName("egress")
		require.NoError(t, c.Create(ctx, obj))
		rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "network", "egress", "allow")
		require.Len(t, rules, 3)
		protocols := []string{}
		for _, r := range rules {
			p, _, _ := unstructured.NestedString(r.(map[string]any), "protocol")
			protocols = append(protocols, p)
		}
		assert.Equal(t, []string{"TCP", "TCP", "UDP"}, protocols, "protocol defaults to TCP")
		dns, _, _ := unstructured.NestedString(obj.Object, "spec", "network", "egress", "dns")
		assert.Equal(t, "None", dns)

		empty := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(agent+agentSpec+"  network: {egress: {}}"), &empty.Object))
		empty.SetName("egress-empty")
		require.NoError(t, c.Create(ctx, empty))
		dns, found, _ := unstructured.NestedString(empty.Object, "spec", "network", "egress", "dns")
		assert.True(t, found, "an empty egress is kept")
		assert.Equal(t, "ClusterResolver", dns, "dns defaults to ClusterResolver")
	})

	t.Run("a credential as both a variable and a file", func(t *testing.T) {
		// Upstream Agents give one key (a GitHub token) to GH_TOKEN and to a
		// tool's configuration file: it must stay legal.
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(agent+agentSpec+"  credentials: [{name: gh, secretRef: {name: s, key: token}, env: GH_TOKEN, mountPath: /home/agent/.config/gh/token}]\n  env: [{name: OPENCODE_MODEL, value: scripted/m}, {name: FROM_MAP, valueFrom: {configMapKeyRef: {name: cfg, key: k}}}]"), &obj.Object))
		obj.SetName("env-and-file")
		require.NoError(t, c.Create(ctx, obj))
	})

	t.Run("generateName works", func(t *testing.T) {
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte("apiVersion: kubeopencode.io/v1alpha1\nkind: Task\nmetadata: {generateName: pr-, namespace: default}\nspec: {description: x}"), &obj.Object))
		require.NoError(t, c.Create(ctx, obj))
		assert.True(t, strings.HasPrefix(obj.GetName(), "pr-"))
	})

	t.Run("samples are accepted", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join("..", "..", "manifests", "samples", "*.yaml"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, doc := range strings.Split(string(data), "\n---\n") {
				obj := &unstructured.Unstructured{}
				require.NoError(t, yaml.Unmarshal([]byte(doc), &obj.Object), f)
				if obj.GetKind() != "KubeOpenCodeConfig" {
					obj.SetNamespace("default")
				}
				assert.NoError(t, c.Create(ctx, obj), f)
			}
		}
	})
}
