package argo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// The Argo Workflows example (manifests/argo-workflows) is checked the way
// the Argo Events manifests are: against the JSON schema Argo Workflows
// publishes, e2e/testdata/argo-workflows-schema.json (file
// api/jsonschema/schema.json of the Go module
// github.com/argoproj/argo-workflows/v4 at v4.0.5, unmodified, sha256
// 98df6174460702d2c178cd54c6fb3f597985c9969bb5ae79ad7e55e2d47c0b39), with
// every object that lists properties closed so that an invented field
// fails without a cluster. With the minimal CRDs (those of releases before
// v4) spec preserves unknown fields, so an API server accepts a misspelled
// field and the controller ignores it; v4's full CRDs catch it only when
// the manifest is applied.
//
// The Task inside a resource template is a string to Argo: it is checked
// separately, after Argo's placeholders are replaced, against the Task CRD's
// openAPIV3Schema (closed the same way) and by a strict decode into the Go
// type.

const workflowsSchemaURL = "file:///argo-workflows-schema.json"

// workflowKinds are the Argo Workflows kinds that can hold templates.
var workflowKinds = []string{"Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow"}

const workflowDefinitionPrefix = "io.argoproj.workflow.v1alpha1."

type closedSchemas map[string]*jsonschema.Schema

func (s closedSchemas) validate(kind string, obj any) error {
	schema, ok := s[kind]
	if !ok {
		return fmt.Errorf("no schema for kind %q", kind)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if err := schema.Validate(inst); err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	return nil
}

var (
	workflowsOnce    sync.Once
	workflowsSchemas closedSchemas
	workflowsErr     error
)

func testWorkflowsSchemas(t testing.TB) closedSchemas {
	t.Helper()
	workflowsOnce.Do(func() {
		workflowsSchemas, workflowsErr = loadWorkflowsSchemas(filepath.Join(repoRoot(t), "e2e", "testdata", "argo-workflows-schema.json"))
	})
	require.NoError(t, workflowsErr)
	return workflowsSchemas
}

func loadWorkflowsSchemas(path string) (closedSchemas, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	defs, ok := doc.(map[string]any)["definitions"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no definitions", path)
	}
	closed := 0
	for _, def := range defs {
		closed += closeObjects(def)
	}
	if closed == 0 {
		return nil, fmt.Errorf("%s: no object schema lists properties", path)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(workflowsSchemaURL, doc); err != nil {
		return nil, err
	}
	out := closedSchemas{}
	for _, kind := range workflowKinds {
		s, err := c.Compile(workflowsSchemaURL + "#/definitions/" + workflowDefinitionPrefix + kind)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", kind, err)
		}
		out[kind] = s
	}
	return out, nil
}

func isWorkflowKind(d Document) bool {
	if d.APIVersion() != APIVersion {
		return false
	}
	for _, k := range workflowKinds {
		if d.Kind() == k {
			return true
		}
	}
	return false
}

// workflowDocuments returns every Argo Workflows object the repository
// ships under manifests/.
func workflowDocuments(t testing.TB) []Document {
	t.Helper()
	root := repoRoot(t)
	files, err := FindManifests(filepath.Join(root, "manifests"))
	require.NoError(t, err)
	var out []Document
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, f)
		docs, err := ReadDocuments(rel, bytes.NewReader(data))
		require.NoError(t, err)
		for _, d := range docs {
			if isWorkflowKind(d) {
				out = append(out, d)
			}
		}
	}
	return out
}

func TestEveryArgoWorkflowManifestValidates(t *testing.T) {
	s := testWorkflowsSchemas(t)
	kinds := map[string]int{}
	for _, d := range workflowDocuments(t) {
		kinds[d.Kind()]++
		assert.NoError(t, s.validate(d.Kind(), d.Object), "%s (document %d)", d.File, d.Index)
	}
	// A walk that finds nothing would pass vacuously.
	assert.GreaterOrEqual(t, kinds["WorkflowTemplate"], 1, "no WorkflowTemplate under manifests/")
	assert.GreaterOrEqual(t, kinds["Workflow"], 1, "no Workflow under manifests/")
	t.Logf("validated %v", kinds)
}

// loadWorkflowTemplate reads the shipped WorkflowTemplate afresh.
func loadWorkflowTemplate(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "argo-workflows", "workflow-task.yaml"))
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal(data, &obj))
	require.Equal(t, "WorkflowTemplate", obj["kind"])
	return obj
}

func templatesByName(t testing.TB, wt map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, tmpl := range wt["spec"].(map[string]any)["templates"].([]any) {
		m := tmpl.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func resourceOf(t testing.TB, wt map[string]any, name string) map[string]any {
	t.Helper()
	tmpl, ok := templatesByName(t, wt)[name]
	require.True(t, ok, "no template %q", name)
	return tmpl["resource"].(map[string]any)
}

func TestWorkflowValidatorRejectsBrokenTemplates(t *testing.T) {
	s := testWorkflowsSchemas(t)
	require.NoError(t, s.validate("WorkflowTemplate", loadWorkflowTemplate(t)), "the shipped WorkflowTemplate must be valid before it is broken")

	for _, tc := range []struct {
		name   string
		break_ func(t testing.TB, wt map[string]any)
		want   string
	}{
		{
			name: "invented resource field",
			break_: func(t testing.TB, wt map[string]any) {
				resourceOf(t, wt, "run-task")["waitFor"] = "status.phase == Completed"
			},
			want: "'waitFor' not allowed",
		},
		{
			name: "successCondition spelled successConditions",
			break_: func(t testing.TB, wt map[string]any) {
				r := resourceOf(t, wt, "run-task")
				r["successConditions"] = r["successCondition"]
				delete(r, "successCondition")
			},
			want: "'successConditions' not allowed",
		},
		{
			name: "jsonPath spelled jsonpath",
			break_: func(t testing.TB, wt map[string]any) {
				p := templatesByName(t, wt)["run-task"]["outputs"].(map[string]any)["parameters"].([]any)[2].(map[string]any)
				vf := p["valueFrom"].(map[string]any)
				vf["jsonpath"] = vf["jsonPath"]
				delete(vf, "jsonPath")
			},
			want: "valueFrom': additional properties 'jsonpath' not allowed",
		},
		{
			name: "invented step field",
			break_: func(t testing.TB, wt map[string]any) {
				step := templatesByName(t, wt)["main"]["steps"].([]any)[0].([]any)[0].(map[string]any)
				step["waitUntil"] = "Completed"
			},
			want: "'waitUntil' not allowed",
		},
		{
			name: "setOwnerReference as a string",
			break_: func(t testing.TB, wt map[string]any) {
				resourceOf(t, wt, "run-task")["setOwnerReference"] = "true"
			},
			want: "resource/setOwnerReference': got string, want boolean",
		},
		{
			name: "parameter value as a number",
			break_: func(t testing.TB, wt map[string]any) {
				params := wt["spec"].(map[string]any)["arguments"].(map[string]any)["parameters"].([]any)
				for _, p := range params {
					if p.(map[string]any)["name"] == "ttlSecondsAfterFinished" {
						p.(map[string]any)["value"] = 86400
						return
					}
				}
				t.Fatal("no parameter ttlSecondsAfterFinished")
			},
			want: "/value': got number, want string",
		},
		{
			name: "steps as a list of steps instead of a list of groups",
			break_: func(t testing.TB, wt map[string]any) {
				main := templatesByName(t, wt)["main"]
				main["steps"] = main["steps"].([]any)[0]
			},
			want: "/steps/0': got object, want array",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wt := loadWorkflowTemplate(t)
			tc.break_(t, wt)
			err := s.validate("WorkflowTemplate", wt)
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// placeholder matches Argo's template tags: {{name}} and expression tags
// {{=expression}}.
var placeholder = regexp.MustCompile(`\{\{(=?)\s*([^{}]*?)\s*\}\}`)

// expressionCall matches the only expression forms the example uses.
var expressionCall = regexp.MustCompile(`^(toJson|asInt)\(([A-Za-z0-9_.]+)\)$`)

// substitute replaces Argo's placeholders in a resource manifest as Argo
// does (util/template): a plain tag becomes the value itself, {{=toJson(x)}}
// the JSON encoding of x, {{=asInt(x)}} x as an integer. Any other tag, or
// a name without a value, is an error.
func substitute(manifest string, values map[string]string) (string, error) {
	if n, m := strings.Count(manifest, "{{"), len(placeholder.FindAllString(manifest, -1)); n != m {
		return "", fmt.Errorf("%d of %d tags are not well-formed in %q", n-m, n, manifest)
	}
	var errs []string
	out := placeholder.ReplaceAllStringFunc(manifest, func(tag string) string {
		m := placeholder.FindStringSubmatch(tag)
		name := m[2]
		if m[1] == "" {
			v, ok := values[name]
			if !ok {
				errs = append(errs, "no value for "+tag)
			}
			return v
		}
		call := expressionCall.FindStringSubmatch(name)
		if call == nil {
			errs = append(errs, "unsupported expression "+tag)
			return tag
		}
		v, ok := values[call[2]]
		if !ok {
			errs = append(errs, "no value for "+tag)
			return tag
		}
		switch call[1] {
		case "toJson":
			b, _ := json.Marshal(v)
			return string(b)
		default: // asInt
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", tag, err))
			}
			return strconv.Itoa(n)
		}
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// sampleInputs are values a user could pass, the prompt chosen to break a
// manifest that spliced it in as YAML: newlines, a document separator, a
// key, quotes, a comment, an Argo tag.
func sampleInputs() map[string]string {
	return map[string]string{
		"workflow.name":                             "kubeopencode-task-x7k2p",
		"inputs.parameters.prompt":                  "Fix the typo.\n---\nspec:\n  agentRef: evil # \"quoted\" 'single'\n{{not.a.tag}}\n",
		"inputs.parameters.agent":                   "default",
		"inputs.parameters.repository":              "https://github.com/example-org/example-repo.git",
		"inputs.parameters.ref":                     "main",
		"inputs.parameters.timeout":                 "30m",
		"inputs.parameters.ttlSecondsAfterFinished": "86400",
		"inputs.parameters.task":                    "kubeopencode-task-x7k2p",
	}
}

var (
	taskSchemaOnce sync.Once
	taskSchema     *jsonschema.Schema
	taskSchemaErr  error
)

// testTaskSchema compiles the Task CRD's openAPIV3Schema with its objects
// closed: `kubectl create`, which the resource step runs, asks the API
// server for strict field validation, so an unknown field fails there too.
func testTaskSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	taskSchemaOnce.Do(func() {
		taskSchema, taskSchemaErr = loadTaskSchema(filepath.Join(repoRoot(t), "manifests", "crd", "kubeopencode.io_tasks.yaml"))
	})
	require.NoError(t, taskSchemaErr)
	return taskSchema
}

func loadTaskSchema(path string) (*jsonschema.Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		return nil, err
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != "v1alpha1" {
			continue
		}
		raw, err := json.Marshal(v.Schema.OpenAPIV3Schema)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if closeObjects(doc) == 0 {
			return nil, fmt.Errorf("%s: no object schema lists properties", path)
		}
		c := jsonschema.NewCompiler()
		const url = "file:///kubeopencode.io_tasks.json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, err
		}
		return c.Compile(url)
	}
	return nil, fmt.Errorf("%s: no version v1alpha1", path)
}

func validateTask(t testing.TB, obj map[string]any) error {
	t.Helper()
	raw, err := json.Marshal(obj)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	return testTaskSchema(t).Validate(inst)
}

// renderedTask substitutes the sample inputs into a resource template's
// manifest and decodes it.
func renderedTask(t testing.TB, resource map[string]any) map[string]any {
	t.Helper()
	text, err := substitute(resource["manifest"].(string), sampleInputs())
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(text), &obj), "the manifest after substitution:\n%s", text)
	return obj
}

func TestWorkflowTaskManifestIsAValidTask(t *testing.T) {
	wt := loadWorkflowTemplate(t)
	res := resourceOf(t, wt, "run-task")
	assert.Equal(t, "create", res["action"])
	assert.Equal(t, true, res["setOwnerReference"], "the Task must go away with its Workflow")

	obj := renderedTask(t, res)
	require.NoError(t, validateTask(t, obj))

	// The Go type agrees, field for field.
	text, err := substitute(res["manifest"].(string), sampleInputs())
	require.NoError(t, err)
	var task v1alpha1.Task
	require.NoError(t, yaml.UnmarshalStrict([]byte(text), &task))
	in := sampleInputs()
	assert.Equal(t, "Task", task.Kind)
	assert.Equal(t, "kubeopencode.io/v1alpha1", task.APIVersion)
	assert.Equal(t, in["workflow.name"], task.Name, "the exit handler finds the Task by the Workflow's name")
	require.NotNil(t, task.Spec.Description)
	assert.Equal(t, in["inputs.parameters.prompt"], *task.Spec.Description, "the prompt arrives as one string, unchanged")
	assert.Equal(t, "default", task.Spec.AgentRef)
	require.NotNil(t, task.Spec.Timeout)
	assert.Equal(t, "30m0s", task.Spec.Timeout.Duration.String())
	require.NotNil(t, task.Spec.TTLSecondsAfterFinished)
	assert.EqualValues(t, 86400, *task.Spec.TTLSecondsAfterFinished)
	require.Len(t, task.Spec.Contexts, 1)
	git := task.Spec.Contexts[0].Git
	require.NotNil(t, git)
	assert.Equal(t, in["inputs.parameters.repository"], git.Repository)
	assert.Equal(t, "main", git.Ref)
	assert.Equal(t, "repo", task.Spec.Contexts[0].MountPath)

	// The read-task step names the same Task.
	got := renderedTask(t, resourceOf(t, wt, "read-task"))
	assert.Equal(t, "get", resourceOf(t, wt, "read-task")["action"])
	assert.Equal(t, map[string]any{"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task", "metadata": map[string]any{"name": in["workflow.name"]}}, got)
}

func TestTaskSchemaRejectsBrokenTasks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(spec map[string]any)
		want   string
	}{
		{name: "invented spec field", break_: func(spec map[string]any) { spec["prompt"] = "x" }, want: "'prompt' not allowed"},
		{name: "invented git field", break_: func(spec map[string]any) {
			spec["contexts"].([]any)[0].(map[string]any)["git"].(map[string]any)["branch"] = "main"
		}, want: "'branch' not allowed"},
		{name: "ttlSecondsAfterFinished as a string", break_: func(spec map[string]any) { spec["ttlSecondsAfterFinished"] = "86400" }, want: "ttlSecondsAfterFinished': got string, want integer"},
		{name: "description as a list", break_: func(spec map[string]any) { spec["description"] = []any{"x"} }, want: "description': got array, want string"},
		{name: "context type unknown", break_: func(spec map[string]any) { spec["contexts"].([]any)[0].(map[string]any)["type"] = "Repo" }, want: "type': value must be one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := renderedTask(t, resourceOf(t, loadWorkflowTemplate(t), "run-task"))
			tc.break_(obj["spec"].(map[string]any))
			err := validateTask(t, obj)
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSubstituteRefusesWhatArgoWouldNotReplace(t *testing.T) {
	_, err := substitute("a: {{inputs.parameters.nope}}", sampleInputs())
	assert.ErrorContains(t, err, "no value for {{inputs.parameters.nope}}")
	_, err = substitute("a: {{=sprig.upper(inputs.parameters.agent)}}", sampleInputs())
	assert.ErrorContains(t, err, "unsupported expression")
	_, err = substitute("a: {{=asInt(inputs.parameters.agent)}}", sampleInputs())
	assert.ErrorContains(t, err, "invalid syntax")
	_, err = substitute("a: {{inputs.parameters.agent}", sampleInputs())
	assert.ErrorContains(t, err, "not well-formed")
}

// agreedStatus is the Task status shape the results feature writes, as
// agreed for status.results and status.transcript.
const agreedStatus = `{
  "apiVersion": "kubeopencode.io/v1alpha1",
  "kind": "Task",
  "metadata": {"name": "kubeopencode-task-x7k2p", "namespace": "kubeopencode-workflows"},
  "status": {
    "phase": "Completed",
    "results": {
      "summary": "Fixed the typo in README.md and opened a pull request.",
      "pullRequestURL": "https://github.com/o/r/pull/7",
      "repositories": [{
        "mountPath": "repo",
        "commit": "2f1e0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a392",
        "baseCommit": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
        "dirty": false,
        "filesChanged": 2,
        "insertions": 10,
        "deletions": 3,
        "pushedBranches": [{"name": "fix-typo", "commit": "2f1e0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a392"}]
      }],
      "usage": {"inputTokens": 1234, "outputTokens": 56, "reasoningTokens": 0, "cacheReadTokens": 0, "cacheWriteTokens": 0, "totalTokens": 1290, "steps": 3, "costUSD": "0.004200"}
    },
    "transcript": {"configMap": "kubeopencode-task-x7k2p-transcript", "bytes": 1234, "truncated": false}
  }
}`

// kubectlJSONPath evaluates a jsonPath as `kubectl get -o jsonpath=...`
// does, which is how Argo's executor reads a resource template's output
// parameters: client-go's jsonpath with missing keys allowed
// (--allow-missing-template-keys defaults to true).
func kubectlJSONPath(t testing.TB, doc, path string) (string, error) {
	t.Helper()
	var obj any
	require.NoError(t, json.Unmarshal([]byte(doc), &obj))
	j := jsonpath.New("out").AllowMissingKeys(true)
	if err := j.Parse(path); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := j.Execute(&buf, obj); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func TestWorkflowOutputsReadTheAgreedResults(t *testing.T) {
	want := map[string]struct{ path, value string }{
		"task":           {"{.metadata.name}", "kubeopencode-task-x7k2p"},
		"phase":          {"{.status.phase}", "Completed"},
		"summary":        {"{.status.results.summary}", "Fixed the typo in README.md and opened a pull request."},
		"pullRequestURL": {"{.status.results.pullRequestURL}", "https://github.com/o/r/pull/7"},
		"costUSD":        {"{.status.results.usage.costUSD}", "0.004200"},
		"pushedBranch":   {"{.status.results.repositories[0].pushedBranches[0].name}", "fix-typo"},
		"transcript":     {"{.status.transcript.configMap}", "kubeopencode-task-x7k2p-transcript"},
	}
	wt := loadWorkflowTemplate(t)
	checked := 0
	for name, tmpl := range templatesByName(t, wt) {
		if tmpl["resource"] == nil || tmpl["outputs"] == nil {
			continue
		}
		var names []string
		for _, p := range tmpl["outputs"].(map[string]any)["parameters"].([]any) {
			p := p.(map[string]any)
			pname := p["name"].(string)
			names = append(names, pname)
			path := p["valueFrom"].(map[string]any)["jsonPath"].(string)
			w, ok := want[pname]
			if !assert.True(t, ok, "template %s: output %s is not in this test's table", name, pname) {
				continue
			}
			assert.Equal(t, w.path, path, "template %s output %s", name, pname)
			got, err := kubectlJSONPath(t, agreedStatus, path)
			require.NoError(t, err, "template %s output %s", name, pname)
			assert.Equal(t, w.value, got, "template %s output %s", name, pname)

			// A Task without results (an agent that reports none, or a
			// status written before the results feature): every path
			// reads as "" without an error, as kubectl prints it.
			got, err = kubectlJSONPath(t, `{"metadata":{"name":"t"},"status":{"phase":"Failed"}}`, path)
			require.NoError(t, err, "template %s output %s on a Task without results", name, pname)
			if pname != "task" && pname != "phase" {
				assert.Empty(t, got, "template %s output %s on a Task without results", name, pname)
			}
			checked++
		}
		sort.Strings(names)
		assert.Len(t, names, len(want), "template %s outputs %v", name, names)
	}
	assert.Equal(t, 2*len(want), checked, "run-task and read-task each read every field")

	// The one shape a [0] index fails on is a list that is present and
	// empty; the results are written with omitempty, so the operator never
	// writes one, but kubectl (and so the step) would fail on it.
	_, err := kubectlJSONPath(t, `{"status":{"results":{"repositories":[{"mountPath":"repo","pushedBranches":[]}]}}}`,
		want["pushedBranch"].path)
	assert.ErrorContains(t, err, "array index out of bounds")
}

// gjsonLabels is how Argo's executor evaluates successCondition and
// failureCondition (workflow/executor/resource.go): label-selector
// requirements whose keys are gjson paths into the resource's JSON.
type gjsonLabels []byte

func (g gjsonLabels) Has(label string) bool { return gjson.GetBytes(g, label).Exists() }
func (g gjsonLabels) Get(label string) string {
	return gjson.GetBytes(g, label).String()
}
func (g gjsonLabels) Lookup(label string) (string, bool) {
	r := gjson.GetBytes(g, label)
	return r.String(), r.Exists()
}

func TestWorkflowConditionsFollowTaskPhases(t *testing.T) {
	res := resourceOf(t, loadWorkflowTemplate(t), "run-task")
	parse := func(s string) labels.Requirements {
		sel, err := labels.Parse(s)
		require.NoError(t, err, s)
		reqs, _ := sel.Requirements()
		require.NotEmpty(t, reqs)
		return reqs
	}
	success, failure := parse(res["successCondition"].(string)), parse(res["failureCondition"].(string))
	matches := func(reqs labels.Requirements, doc []byte) bool {
		for _, r := range reqs {
			if !r.Matches(gjsonLabels(doc)) {
				return false
			}
		}
		return true
	}
	for _, phase := range []v1alpha1.TaskPhase{"", v1alpha1.TaskPhasePending, v1alpha1.TaskPhaseQueued, v1alpha1.TaskPhaseRunning, v1alpha1.TaskPhaseCompleted, v1alpha1.TaskPhaseFailed} {
		doc := []byte(fmt.Sprintf(`{"status":{"phase":%q}}`, phase))
		assert.Equal(t, phase == v1alpha1.TaskPhaseCompleted, matches(success, doc), "success at phase %q", phase)
		assert.Equal(t, phase == v1alpha1.TaskPhaseFailed, matches(failure, doc), "failure at phase %q", phase)
		assert.Equal(t, phase.IsTerminal(), matches(success, doc) || matches(failure, doc), "the step stops waiting exactly at a terminal phase (%q)", phase)
	}
	assert.True(t, matches(success, []byte(agreedStatus)))
}

// The references between steps are strings the schema cannot check: every
// argument a step passes is an input of the template it calls (and every
// input without a default is passed), every {{steps.X.outputs.parameters.Y}}
// names an earlier step whose template has output Y, every
// {{inputs.parameters.Y}} an input of its own template, and every
// {{workflow.parameters.Y}} a Workflow argument. The Workflow that
// references the template passes every argument that has no value.
func TestWorkflowReferencesResolve(t *testing.T) {
	wt := loadWorkflowTemplate(t)
	tmpls := templatesByName(t, wt)
	spec := wt["spec"].(map[string]any)
	globals := map[string]bool{}
	var required []string
	for _, p := range spec["arguments"].(map[string]any)["parameters"].([]any) {
		p := p.(map[string]any)
		globals[p["name"].(string)] = true
		if _, ok := p["value"]; !ok {
			required = append(required, p["name"].(string))
		}
	}
	require.Contains(t, tmpls, spec["entrypoint"])
	require.Contains(t, tmpls, spec["onExit"])

	names := func(list any) map[string]bool {
		out := map[string]bool{}
		if list == nil {
			return out
		}
		for _, p := range list.([]any) {
			out[p.(map[string]any)["name"].(string)] = true
		}
		return out
	}
	paramsOf := func(tmpl map[string]any, key string) any {
		m, _ := tmpl[key].(map[string]any)
		return m["parameters"]
	}
	tag := regexp.MustCompile(`\{\{=?\s*[^{}]*?\}\}`)
	ref := regexp.MustCompile(`(steps\.([a-z0-9-]+)\.outputs|inputs|workflow)\.parameters\.([A-Za-z0-9_-]+)`)
	checkRefs := func(where, text string, inputs map[string]bool, steps map[string]string) {
		for _, tg := range tag.FindAllString(text, -1) {
			for _, m := range ref.FindAllStringSubmatch(tg, -1) {
				switch {
				case m[1] == "inputs":
					assert.True(t, inputs[m[3]], "%s: %s is not an input", where, tg)
				case m[1] == "workflow":
					assert.True(t, globals[m[3]], "%s: %s is not a Workflow argument", where, tg)
				default:
					callee, ok := steps[m[2]]
					if assert.True(t, ok, "%s: %s names no earlier step", where, tg) {
						assert.True(t, names(paramsOf(tmpls[callee], "outputs"))[m[3]], "%s: template %s has no output %s", where, callee, m[3])
					}
				}
			}
		}
	}
	refs := 0
	for name, tmpl := range tmpls {
		inputs := names(paramsOf(tmpl, "inputs"))
		raw, err := json.Marshal(tmpl)
		require.NoError(t, err)
		if tmpl["steps"] == nil {
			checkRefs(name, string(raw), inputs, nil)
			continue
		}
		earlier := map[string]string{}
		for _, group := range tmpl["steps"].([]any) {
			for _, step := range group.([]any) {
				step := step.(map[string]any)
				callee := step["template"].(string)
				require.Contains(t, tmpls, callee, "template %s calls %s", name, callee)
				passed := map[string]bool{}
				if args, ok := step["arguments"].(map[string]any); ok {
					passed = names(args["parameters"])
				}
				calleeInputs, _ := paramsOf(tmpls[callee], "inputs").([]any)
				for _, p := range calleeInputs {
					p := p.(map[string]any)
					_, hasDefault := p["value"]
					if !hasDefault {
						assert.True(t, passed[p["name"].(string)], "%s step %s does not pass input %s", name, step["name"], p["name"])
					}
				}
				for p := range passed {
					assert.True(t, names(paramsOf(tmpls[callee], "inputs"))[p], "%s step %s passes %s, which %s does not take", name, step["name"], p, callee)
				}
				raw, err := json.Marshal(step)
				require.NoError(t, err)
				checkRefs(name+" step "+step["name"].(string), string(raw), inputs, earlier)
				refs += len(ref.FindAllString(string(raw), -1))
			}
			// A step sees the steps of the groups before its own.
			for _, step := range group.([]any) {
				earlier[step.(map[string]any)["name"].(string)] = step.(map[string]any)["template"].(string)
			}
		}
	}
	assert.Greater(t, refs, 10, "the walk found the steps' references")

	// The shipped Workflow runs this template and passes what has no value.
	var wf map[string]any
	for _, d := range workflowDocuments(t) {
		if d.Kind() == "Workflow" && d.File == filepath.Join("manifests", "argo-workflows", "workflow.yaml") {
			wf = d.Object
		}
	}
	require.NotNil(t, wf, "manifests/argo-workflows/workflow.yaml holds no Workflow")
	wfSpec := wf["spec"].(map[string]any)
	assert.Equal(t, wt["metadata"].(map[string]any)["name"], wfSpec["workflowTemplateRef"].(map[string]any)["name"])
	assert.Equal(t, wt["metadata"].(map[string]any)["namespace"], wf["metadata"].(map[string]any)["namespace"])
	passed := names(wfSpec["arguments"].(map[string]any)["parameters"])
	for _, r := range required {
		assert.True(t, passed[r], "workflow.yaml does not pass %s, which has no value", r)
	}
	for p := range passed {
		assert.True(t, globals[p], "workflow.yaml passes %s, which the template does not declare", p)
	}
}

// The Workflow's pods run as the ServiceAccount that rbac.yaml binds, and
// the Role grants what the steps need.
func TestWorkflowRBACCoversTheSteps(t *testing.T) {
	wt := loadWorkflowTemplate(t)
	sa := wt["spec"].(map[string]any)["serviceAccountName"]
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "argo-workflows", "rbac.yaml"))
	require.NoError(t, err)
	docs, err := ReadDocuments("rbac.yaml", bytes.NewReader(data))
	require.NoError(t, err)
	ns := wt["metadata"].(map[string]any)["namespace"]
	grants := map[string][]string{}
	bound := false
	for _, d := range docs {
		md := d.Object["metadata"].(map[string]any)
		assert.Equal(t, ns, md["namespace"], "%s %s", d.Kind(), md["name"])
		switch d.Kind() {
		case "Role":
			for _, r := range d.Object["rules"].([]any) {
				r := r.(map[string]any)
				for _, g := range r["apiGroups"].([]any) {
					for _, res := range r["resources"].([]any) {
						for _, v := range r["verbs"].([]any) {
							grants[fmt.Sprintf("%s/%s", res, g)] = append(grants[fmt.Sprintf("%s/%s", res, g)], v.(string))
						}
					}
				}
			}
		case "RoleBinding":
			for _, s := range d.Object["subjects"].([]any) {
				s := s.(map[string]any)
				if s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns {
					bound = true
				}
			}
		}
	}
	assert.True(t, bound, "no RoleBinding for ServiceAccount %v", sa)
	assert.ElementsMatch(t, []string{"create", "get"}, grants["tasks/kubeopencode.io"])
	assert.ElementsMatch(t, []string{"create", "patch"}, grants["workflowtaskresults/argoproj.io"])
	assert.Len(t, grants, 2, "nothing else: %v", grants)
}
