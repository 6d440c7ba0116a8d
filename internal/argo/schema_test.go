package argo

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root seen from this package's directory, both
// under `go test` and in Bazel's runfiles tree, where no go.mod is present to
// search for: the files the tests read are declared in the BUILD file's data.
func repoRoot(t testing.TB) string {
	t.Helper()
	return filepath.Join("..", "..")
}

var (
	validatorOnce sync.Once
	validator     *Validator
	validatorErr  error
)

// testValidator compiles the schema once per test binary: it is 1.4 MB.
func testValidator(t testing.TB) *Validator {
	t.Helper()
	validatorOnce.Do(func() {
		validator, validatorErr = LoadValidator(filepath.Join(repoRoot(t), "e2e", "testdata", "argo-events-schema.json"))
	})
	require.NoError(t, validatorErr)
	return validator
}

// TestEveryArgoManifestValidates walks every manifest the repository ships
// (and the migration tool's golden outputs, which users apply as they are)
// and validates each Argo Events object against the closed schema.
func TestEveryArgoManifestValidates(t *testing.T) {
	root := repoRoot(t)
	v := testValidator(t)
	files, err := FindManifests(
		filepath.Join(root, "manifests"),
		filepath.Join(root, "tools", "migrate-webhooktrigger", "testdata"),
	)
	require.NoError(t, err)

	kinds := map[string]int{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		docs, err := ReadDocuments(rel, strings.NewReader(string(data)))
		require.NoError(t, err)
		n, err := v.ValidateDocuments(docs)
		assert.NoError(t, err)
		if n > 0 {
			for _, d := range docs {
				if IsArgoKind(d.APIVersion(), d.Kind()) {
					kinds[d.Kind()]++
				}
			}
		}
	}
	// The walk must have found the shipped GitHub example; a walk that finds
	// nothing would pass vacuously.
	assert.GreaterOrEqual(t, kinds["Sensor"], 1, "no Sensor found under manifests/")
	assert.GreaterOrEqual(t, kinds["EventSource"], 1, "no EventSource found under manifests/")
	assert.GreaterOrEqual(t, kinds["EventBus"], 1, "no EventBus found under manifests/")
	t.Logf("validated %v", kinds)
}

func loadSensorManifest(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "argo-events", "sensor-github.yaml"))
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal(data, &obj))
	return obj
}

func TestValidatorRejectsMisspelledFields(t *testing.T) {
	v := testValidator(t)
	require.NoError(t, v.Validate(loadSensorManifest(t)), "the shipped Sensor must be valid before it is broken")

	cases := []struct {
		name   string
		break_ func(s map[string]any)
		want   string
	}{
		{
			name: "trigger parameter dataKey spelled datakey",
			break_: func(s map[string]any) {
				p := firstK8sParameter(s)
				src := p["src"].(map[string]any)
				src["datakey"] = src["dataKey"]
				delete(src, "dataKey")
			},
			want: "datakey",
		},
		{
			name: "k8s trigger parameters spelled paramters",
			break_: func(s map[string]any) {
				k8s := firstK8sTrigger(s)
				k8s["paramters"] = k8s["parameters"]
				delete(k8s, "parameters")
			},
			want: "paramters",
		},
		{
			name: "dependency filter field invented",
			break_: func(s map[string]any) {
				dep := s["spec"].(map[string]any)["dependencies"].([]any)[0].(map[string]any)
				dep["filters"].(map[string]any)["body"] = []any{"x"}
			},
			want: "body",
		},
		{
			name: "required data filter type missing",
			break_: func(s map[string]any) {
				dep := s["spec"].(map[string]any)["dependencies"].([]any)[0].(map[string]any)
				f := dep["filters"].(map[string]any)["data"].([]any)[0].(map[string]any)
				delete(f, "type")
			},
			want: "type",
		},
		{
			name: "metadata field invented",
			break_: func(s map[string]any) {
				s["metadata"].(map[string]any)["namespaces"] = "x"
			},
			want: "namespaces",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := loadSensorManifest(t)
			tc.break_(s)
			err := v.Validate(s)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "Sensor kubeopencode-github/github-tasks")
		})
	}
}

// The Task inside a k8s trigger is not Argo's to check: the schema leaves
// K8SResource open, and closing objects must not change that.
func TestValidatorLeavesTriggerResourceOpen(t *testing.T) {
	v := testValidator(t)
	s := loadSensorManifest(t)
	res := firstK8sTrigger(s)["source"].(map[string]any)["resource"].(map[string]any)
	res["spec"].(map[string]any)["anyFieldOfTheTask"] = true
	assert.NoError(t, v.Validate(s))
}

func TestValidatorRejectsNonArgoKinds(t *testing.T) {
	v := testValidator(t)
	err := v.Validate(map[string]any{"apiVersion": "v1", "kind": "ConfigMap"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an Argo Events kind")
}

func firstK8sTrigger(s map[string]any) map[string]any {
	tr := s["spec"].(map[string]any)["triggers"].([]any)[0].(map[string]any)
	return tr["template"].(map[string]any)["k8s"].(map[string]any)
}

func firstK8sParameter(s map[string]any) map[string]any {
	return firstK8sTrigger(s)["parameters"].([]any)[0].(map[string]any)
}
