package migrate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/sjson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubeopencode/kubeopencode/internal/argo"
)

// migrated converts a testdata input and returns the Sensor it produced.
func migrated(t *testing.T, file string) *unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", file))
	require.NoError(t, err)
	defer f.Close()
	res, err := Migrate(file, f, Options{AllowPartial: true})
	require.NoError(t, err)
	for _, o := range res.Objects {
		if o["kind"] == "Sensor" {
			return &unstructured.Unstructured{Object: o}
		}
	}
	t.Fatal("no Sensor generated")
	return nil
}

// delivery wraps a recorded GitHub payload (shared with internal/argo) as
// the GitHub EventSource publishes it, after sjson edits to the body.
func delivery(t *testing.T, eventType, file string, edits ...any) []byte {
	t.Helper()
	var body []byte
	var err error
	if file != "" {
		body, err = os.ReadFile(filepath.Join("..", "..", "..", "internal", "argo", "testdata", "github", file))
		require.NoError(t, err)
	} else {
		body = []byte(`{}`)
	}
	for i := 0; i < len(edits); i += 2 {
		if edits[i+1] == nil {
			body, err = sjson.DeleteBytes(body, edits[i].(string))
		} else {
			body, err = sjson.SetBytes(body, edits[i].(string), edits[i+1])
		}
		require.NoError(t, err)
	}
	data, err := argo.GitHubEventData(eventType, "d-1", body)
	require.NoError(t, err)
	return data
}

// fire delivers one event to every dependency of the Sensor, as the
// EventBus does, and renders the trigger.
func fire(t *testing.T, sensor *unstructured.Unstructured, trigger string, data []byte) (*unstructured.Unstructured, error) {
	t.Helper()
	deps, _, err := unstructured.NestedSlice(sensor.Object, "spec", "dependencies")
	require.NoError(t, err)
	events := map[string][]byte{}
	for _, d := range deps {
		events[d.(map[string]any)["name"].(string)] = data
	}
	return argo.RenderTrigger(sensor, trigger, events)
}

func str(t *testing.T, obj *unstructured.Unstructured, path ...string) string {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	require.NoError(t, err)
	require.True(t, found, "%v not set", path)
	return v.(string)
}

func contextField(t *testing.T, obj *unstructured.Unstructured, i int, path ...string) string {
	t.Helper()
	ctxs, _, err := unstructured.NestedSlice(obj.Object, "spec", "contexts")
	require.NoError(t, err)
	v, _, err := unstructured.NestedString(ctxs[i].(map[string]any), path...)
	require.NoError(t, err)
	return v
}

func TestMigratedPullRequestRuleBehavesLikeTheWebhookTrigger(t *testing.T) {
	s := migrated(t, "github-review.yaml")
	for _, tc := range []struct {
		name  string
		edits []any
		fires bool
	}{
		{name: "opened against main", fires: true},
		{name: "synchronize against main", edits: []any{"action", "synchronize"}, fires: true},
		{name: "reopened is not in the list", edits: []any{"action", "reopened"}},
		{name: "opened against develop", edits: []any{"pull_request.base.ref", "develop"}},
		{name: "base ref only containing main", edits: []any{"pull_request.base.ref", "maintenance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := fire(t, s, "pr-opened", delivery(t, "pull_request", "pull_request.opened.json", tc.edits...))
			if !tc.fires {
				require.ErrorIs(t, err, argo.ErrNotTriggered)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "github-review-pr-opened-", obj.GetGenerateName())
			assert.Equal(t, "ci", obj.GetNamespace())
			assert.Equal(t, "reviewer", str(t, obj, "spec", "agentRef"))
			assert.Equal(t, "45m", str(t, obj, "spec", "timeout"))
			assert.Equal(t, "Review pull request #1347 in example-org/example-repo: Retry transient errors when fetching `config.yaml`\n", str(t, obj, "spec", "description"))
			assert.Equal(t, "https://github.com/example-org/example-repo.git", contextField(t, obj, 0, "git", "repository"))
			assert.Equal(t, "9f2c4e1b7a5d3c8e6f0a1b2c3d4e5f6a7b8c9d0e", contextField(t, obj, 0, "git", "ref"))
			assert.Equal(t, "github-clone", contextField(t, obj, 0, "git", "secretRef", "name"))
			assert.Equal(t, "review-guidelines", contextField(t, obj, 1, "configMap", "name"))
		})
	}
	// The pull request rule must not fire on comments.
	_, err := fire(t, s, "pr-opened", delivery(t, "issue_comment", "issue_comment.created.json"))
	require.ErrorIs(t, err, argo.ErrNotTriggered)
}

func TestMigratedCommentRuleBehavesLikeTheWebhookTrigger(t *testing.T) {
	s := migrated(t, "github-review.yaml")
	for _, tc := range []struct {
		name  string
		edits []any
		fires bool
	}{
		{name: "owner asks for a review", edits: []any{"comment.body", "/review the retry loop"}, fires: true},
		{name: "outsider asks", edits: []any{"comment.body", "/review", "comment.author_association", "NONE"}},
		{name: "comment on an issue", edits: []any{"comment.body", "/review", "issue.pull_request", nil}},
		{name: "not a command", edits: []any{"comment.body", "please /review"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := fire(t, s, "review-command", delivery(t, "issue_comment", "issue_comment.created.json", tc.edits...))
			if !tc.fires {
				require.ErrorIs(t, err, argo.ErrNotTriggered)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "/review the retry loop", str(t, obj, "spec", "description"))
			assert.Equal(t, "Requested by maintainer-mia on d-1", contextField(t, obj, 0, "text"))
		})
	}
}

func TestMigratedAlternativesFireForEachShapeOfEvent(t *testing.T) {
	s := migrated(t, "either-event.yaml")
	issue := delivery(t, "issues", "", "action", "opened", "repository.full_name", "example-org/example-repo")
	obj, err := fire(t, s, "new-issue-or-labelled-pr", issue)
	require.NoError(t, err, "an issue event has no label.name: the alternative for it must not need one")
	assert.Equal(t, "Triage example-org/example-repo event issues.", str(t, obj, "spec", "description"))
	assert.Equal(t, "triage", str(t, obj, "spec", "agentRef"))

	labelled := delivery(t, "pull_request", "pull_request.opened.json", "action", "labeled", "label.name", "needs-triage")
	obj, err = fire(t, s, "new-issue-or-labelled-pr", labelled)
	require.NoError(t, err)
	assert.Equal(t, "Triage example-org/example-repo event pull_request.", str(t, obj, "spec", "description"))

	_, err = fire(t, s, "new-issue-or-labelled-pr", delivery(t, "pull_request", "pull_request.opened.json"))
	require.ErrorIs(t, err, argo.ErrNotTriggered)
	_, err = fire(t, s, "new-issue-or-labelled-pr", delivery(t, "issues", "", "action", "closed"))
	require.ErrorIs(t, err, argo.ErrNotTriggered)

	push := func(ref string) []byte {
		return delivery(t, "push", "", "ref", ref, "after", "0123456789abcdef0123456789abcdef01234567")
	}
	obj, err = fire(t, s, "main-or-release", push("refs/heads/release"))
	require.NoError(t, err)
	assert.Equal(t, "Summarise the push to refs/heads/release (0123456789abcdef0123456789abcdef01234567).", str(t, obj, "spec", "description"))
	_, err = fire(t, s, "main-or-release", push("refs/heads/release-2"))
	require.ErrorIs(t, err, argo.ErrNotTriggered)
}

func TestTranslateFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   [][]map[string]any
		err    string
	}{
		{
			filter: `body.action == "opened"`,
			want:   [][]map[string]any{{{"path": "body.action", "type": "string", "value": []any{"^opened$"}}}},
		},
		{
			filter: `"opened" == body.action && body.pull_request.number >= 10`,
			want: [][]map[string]any{{
				{"path": "body.action", "type": "string", "value": []any{"^opened$"}},
				{"path": "body.pull_request.number", "type": "number", "value": []any{"10"}, "comparator": ">="},
			}},
		},
		{
			filter: `body.ref == "v1.2+rc" || body.ref == "main"`,
			want:   [][]map[string]any{{{"path": "body.ref", "type": "string", "value": []any{`^v1\.2\+rc$`, "^main$"}}}},
		},
		{
			filter: `!(body.action in ["closed", "deleted"])`,
			want: [][]map[string]any{{
				{"path": "body.action", "type": "string", "value": []any{"^closed$"}, "comparator": "!="},
				{"path": "body.action", "type": "string", "value": []any{"^deleted$"}, "comparator": "!="},
			}},
		},
		{
			filter: `body.pull_request.draft != true && !body.pull_request.merged`,
			want: [][]map[string]any{{
				{"path": "body.pull_request.draft", "type": "bool", "value": []any{"false"}},
				{"path": "body.pull_request.merged", "type": "bool", "value": []any{"false"}},
			}},
		},
		{filter: `body.x.size() > 2`, err: "uses size()"},
		{
			filter: `body.pull_request.draft != true`,
			want:   [][]map[string]any{{{"path": "body.pull_request.draft", "type": "bool", "value": []any{"false"}}}},
		},
		{
			filter: `body.comment.body.contains("LGTM") && !body.sender.login.endsWith("[bot]")`,
			want: [][]map[string]any{{
				{"path": "body.comment.body", "type": "string", "value": []any{"LGTM"}},
				{"path": "body.sender.login", "type": "string", "value": []any{`\[bot\]$`}, "comparator": "!="},
			}},
		},
		{
			filter: `headers["X-Request-Source"] == "proxy" && body["kubeopencode.io/x"] == 1`,
			want: [][]map[string]any{{
				{"path": "headers.X-Request-Source.0", "type": "string", "value": []any{"^proxy$"}},
				{"path": `body.kubeopencode\.io/x`, "type": "number", "value": []any{"1"}},
			}},
		},
		{
			filter: `(body.a == "x" || body.b == "y") && body.c == "z"`,
			want: [][]map[string]any{
				{{"path": "body.a", "type": "string", "value": []any{"^x$"}}, {"path": "body.c", "type": "string", "value": []any{"^z$"}}},
				{{"path": "body.b", "type": "string", "value": []any{"^y$"}}, {"path": "body.c", "type": "string", "value": []any{"^z$"}}},
			},
		},
		{filter: `!has(body.issue.pull_request)`, err: "cannot test that a field is absent"},
		{filter: `body.a == `, err: "not valid CEL"},
		{filter: `body.x.matches("[")`, err: "missing closing ]"},
		{filter: `task.name == "x"`, err: "only body and headers can be filtered on"},
		{filter: `body.a == "x" && body.b in [1, "2"]`, err: "mixes number and string"},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			got, err := translateFilter(tc.filter)
			if tc.err != "" {
				require.Error(t, err)
				var te *TranslationError
				assert.True(t, errors.As(err, &te))
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Alternatives)
		})
	}
}

// plainDef is the helper every dataTemplate that prints event values
// defines, so that numbers print as GitHub wrote them.
const plainDef = `{{define "kubeopencode.plain"}}{{if kindIs "float64" .}}{{toJson .}}{{else}}{{.}}{{end}}{{end}}`

func TestTranslateTemplate(t *testing.T) {
	for _, tc := range []struct {
		in, key, tmpl, err string
	}{
		{in: "{{ .body.pull_request.head.sha }}", key: "body.pull_request.head.sha"},
		{in: `PR {{ .body.number }}: {{ .body.pull_request.title | trunc 50 }}`, tmpl: plainDef + `PR {{template "kubeopencode.plain" .Input.body.number}}: {{.Input.body.pull_request.title | trunc 50}}`},
		{in: `{{ with .body.pull_request }}{{ .title }}{{ end }} by {{ $.body.sender.login }}`, tmpl: `{{with .Input.body.pull_request}}{{.title}}{{end}} by {{$.Input.body.sender.login}}`},
		{in: `{{ with .body.pull_request }}{{ .number }}{{ end }} by {{ $.body.sender.id }}`, tmpl: plainDef + `{{with .Input.body.pull_request}}{{template "kubeopencode.plain" .number}}{{end}} by {{template "kubeopencode.plain" $.Input.body.sender.id}}`},
		{in: `{{ if eq .body.action "opened" }}new{{ else }}{{ .body.action }}{{ end }}`, tmpl: `{{if eq .Input.body.action "opened"}}new{{else}}{{.Input.body.action}}{{end}}`},
		{in: `{{ range .body.commits }}{{ .id }} {{ end }}`, tmpl: plainDef + `{{range .Input.body.commits}}{{template "kubeopencode.plain" .id}} {{end}}`},
		{in: `{{ index .headers "X-GitHub-Event" }}`, tmpl: `{{index .Input.body "X-GitHub-Event"}}`},
		{in: `{{ index .body "kubeopencode.io/count" }}`, tmpl: plainDef + `{{template "kubeopencode.plain" index .Input.body "kubeopencode.io/count"}}`},
		{in: `#{{ .body.number | printf "%d" }} {{ .body.title | upper }}`, tmpl: `#{{.Input.body.number | printf "%d"}} {{.Input.body.title | upper}}`},
		{in: `{{ index .headers "user-agent" }}`, err: "only index .headers"},
		{in: `{{ . }}`, err: "the whole event"},
		{in: `{{ .spec.x }}`, err: "see only .body and .headers"},
		{in: `{{ define "x" }}y{{ end }}{{ template "x" }}`, err: "named templates"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := translateTemplate(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.key, got.DataKey)
			assert.Equal(t, tc.tmpl, got.DataTemplate)
		})
	}
}

func TestNoHMACIsNotTranslated(t *testing.T) {
	res, err := Migrate("x.yaml", strings.NewReader(`
apiVersion: kubeopencode.io/v1alpha1
kind: WebhookTrigger
metadata: {name: open, namespace: ci}
spec:
  rules:
    - name: any
      filter: 'headers["x-github-event"] == "push"'
      resourceTemplate: {task: {description: "x"}}
`), Options{})
	require.ErrorIs(t, err, ErrUntranslated)
	assert.Contains(t, findingsText(res), "NOT TRANSLATED: WebhookTrigger ci/open: spec.auth.hmac.secretRef is not set: the EventSource would accept unsigned deliveries")
}

func findingsText(r *Result) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestRuleNamesStayUniqueAndMissingKeyIsReported(t *testing.T) {
	res, err := Migrate("x.yaml", strings.NewReader(`
apiVersion: kubeopencode.io/v1alpha1
kind: WebhookTrigger
metadata: {name: dup, namespace: ci}
spec:
  auth: {hmac: {secretRef: {name: hook}}}
  rules:
    - name: Review PR
      filter: 'headers["x-github-event"] == "pull_request"'
      resourceTemplate: {task: {description: "a"}}
    - name: review-pr
      filter: 'headers["x-github-event"] == "pull_request"'
      resourceTemplate: {task: {description: "b"}}
`), Options{})
	require.NoError(t, err)
	assert.Contains(t, findingsText(res), `names no key: the output reads key "secret" of Secret hook`)
	var sensor map[string]any
	for _, o := range res.Objects {
		if o["kind"] == "Sensor" {
			sensor = o
		}
	}
	require.NotNil(t, sensor)
	deps, _, _ := unstructured.NestedSlice(sensor, "spec", "dependencies")
	require.Len(t, deps, 2)
	assert.Equal(t, "rule-review-pr", deps[0].(map[string]any)["name"])
	assert.Equal(t, "rule-review-pr-2", deps[1].(map[string]any)["name"])
	s := &unstructured.Unstructured{Object: sensor}
	for trigger, want := range map[string]string{"review-pr": "a", "review-pr-2": "b"} {
		obj, err := fire(t, s, trigger, delivery(t, "pull_request", "pull_request.opened.json"))
		require.NoError(t, err)
		assert.Equal(t, want, str(t, obj, "spec", "description"))
	}
}
