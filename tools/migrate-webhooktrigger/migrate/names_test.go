package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubeopencode/kubeopencode/internal/argo"
)

// migratedObjects converts a testdata input and returns its objects by kind.
func migratedObjects(t *testing.T, file string) map[string]map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", file))
	require.NoError(t, err)
	defer f.Close()
	res, err := Migrate(file, f, Options{})
	require.NoError(t, err, "every rule of %s must translate", file)
	out := map[string]map[string]any{}
	for _, o := range res.Objects {
		out[o["kind"].(string)] = o
	}
	return out
}

// Every rule of rule-names.yaml is named like an expr keyword, operator or
// number; each must still create its Task in the emulator, which fails a
// trigger whose conditions Argo's Sensor could not parse. The rule's own
// name is on the Task.
func TestRuleNamesThatAreKeywordsOrNumbersStillFire(t *testing.T) {
	s := migrated(t, "rule-names.yaml")
	pr := func(edits ...any) []byte {
		return delivery(t, "pull_request", "pull_request.opened.json", edits...)
	}
	comment := func(edits ...any) []byte {
		return delivery(t, "issue_comment", "issue_comment.created.json", edits...)
	}
	push := func(edits ...any) []byte { return delivery(t, "push", "push.json", edits...) }
	for _, tc := range []struct {
		rule string
		data []byte
		want string
	}{
		{"2nd-review", pr(), "Review pull request #1347 (id 2087451093, 38 lines added) of example-org/example-repo."},
		{"3rd-party", pr("action", "reopened"), "Check the reopened pull request https://github.com/example-org/example-repo/pull/1347."},
		{"in", comment(), "Answer comment 2514870331 on #1347."},
		{"matches", pr("action", "edited"), "Re-read pull request #1347."},
		{"not", pr("action", "closed", "pull_request.merged", true), "Summarise merged pull request #1347."},
		{"and", pr("action", "synchronize"), "Review the new commits of #1347."},
		{"or", pr("action", "ready_for_review"), "Triage #1347."},
		{"contains", comment("comment.body", "LGTM, thanks"), "Approve #1347."},
		{"nil", push(), "Summarise the push of 0c7d2e9f4a1b6c3d8e5f0a7b2c9d4e1f6a3b8c5d at 1764410587."},
		{"let", push("ref", "refs/heads/release"), "Release check for example-org/example-repo (712043941)."},
		{"let", pr("action", "converted_to_draft"), "Release check for example-org/example-repo (712043941)."},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			obj, err := fire(t, s, tc.rule, tc.data)
			require.NoError(t, err)
			assert.Equal(t, tc.want, str(t, obj, "spec", "description"))
			assert.Equal(t, tc.rule, obj.GetAnnotations()[RuleAnnotation])
			assert.Equal(t, tc.rule, obj.GetLabels()[argo.LabelTrigger])
		})
	}
	// And none fires on what it does not ask for.
	_, err := fire(t, s, "2nd-review", pr("action", "closed"))
	require.ErrorIs(t, err, argo.ErrNotTriggered)
}

// Argo hands a dataTemplate the event as Go values, every JSON number a
// float64, which Go templates print as 1.234567e+06: the migrated
// templates print the numbers as GitHub wrote them.
func TestNumbersInTemplatesPrintAsIntegers(t *testing.T) {
	s := migrated(t, "rule-names.yaml")
	obj, err := fire(t, s, "2nd-review", delivery(t, "pull_request", "pull_request.opened.json",
		"number", 1234567, "pull_request.id", 2184467201, "pull_request.additions", 0))
	require.NoError(t, err)
	assert.Equal(t, "Review pull request #1234567 (id 2184467201, 0 lines added) of example-org/example-repo.", str(t, obj, "spec", "description"))

	obj, err = fire(t, s, "in", delivery(t, "issue_comment", "issue_comment.created.json", "issue.number", 98765432))
	require.NoError(t, err)
	assert.Equal(t, "Answer comment 2514870331 on #98765432.", str(t, obj, "spec", "description"))

	// A fraction keeps its digits; text stays text.
	tt, err := translateTemplate(`{{ .body.score }}/{{ .body.name }}`)
	require.NoError(t, err)
	sensor := sensorWithTemplate(t, tt.DataTemplate)
	got, err := argo.RenderTrigger(sensor, "t", map[string][]byte{"d": []byte(`{"headers":{},"body":{"score":0.75,"name":"1e6"}}`)})
	require.NoError(t, err)
	assert.Equal(t, "0.75/1e6", got.Object["data"].(map[string]any)["out"])
}

func sensorWithTemplate(t *testing.T, tmpl string) *unstructured.Unstructured {
	t.Helper()
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": argo.APIVersion, "kind": "Sensor",
		"metadata": map[string]any{"name": "s", "namespace": "ci"},
		"spec": map[string]any{
			"dependencies": []any{map[string]any{"name": "d", "eventSourceName": "e", "eventName": "e"}},
			"triggers": []any{map[string]any{"template": map[string]any{
				"name": "t", "conditions": "d",
				"k8s": map[string]any{
					"operation": "create",
					"source": map[string]any{"resource": map[string]any{
						"apiVersion": "v1", "kind": "ConfigMap",
						"metadata": map[string]any{"generateName": "x-"}, "data": map[string]any{"out": ""},
					}},
					"parameters": []any{map[string]any{"src": map[string]any{"dependencyName": "d", "dataTemplate": tmpl}, "dest": "data.out"}},
				},
			}}},
		},
	}}
}

// A rule filtering on a header that the EventSource does not copy into the
// body reads it from the headers GitHub sent.
func TestHeaderFilterMatchesWhatGitHubSends(t *testing.T) {
	s := migrated(t, "rule-names.yaml")
	body, err := os.ReadFile(filepath.Join("..", "..", "..", "internal", "argo", "testdata", "github", "pull_request.opened.json"))
	require.NoError(t, err)
	body, err = sjson.SetBytes(body, "action", "reopened")
	require.NoError(t, err)
	for target, fires := range map[string]bool{"repository": true, "organization": false} {
		req, err := argo.GitHubRequest("pull_request", "d-2", body, []byte("hook-secret"))
		require.NoError(t, err)
		req.Header.Set("X-GitHub-Hook-Installation-Target-Type", target)
		data, err := argo.GitHubEventSource{Secret: []byte("hook-secret")}.Receive(req)
		require.NoError(t, err)
		_, err = fire(t, s, "3rd-party", data)
		if fires {
			require.NoError(t, err, target)
		} else {
			require.ErrorIs(t, err, argo.ErrNotTriggered, target)
		}
	}
}

// GitHub sends push deliveries of up to 25 MB; the EventSource the tool
// writes for push rules accepts them, where one with the default limit
// answers HTTP 400 and no Task is created.
func TestPushOverOneMiBReachesTheSensor(t *testing.T) {
	objs := migratedObjects(t, "rule-names.yaml")
	es, err := argo.NewGitHubEventSource(objs["EventSource"], "names", []byte("hook-secret"))
	require.NoError(t, err)
	assert.Equal(t, argo.GitHubMaxPayloadSize, es.MaxPayloadSize)

	body, err := os.ReadFile(filepath.Join("..", "..", "..", "internal", "argo", "testdata", "github", "push.json"))
	require.NoError(t, err)
	commit := gjson.GetBytes(body, "commits.0").Raw
	n := int(argo.DefaultMaxPayloadSize)/len(commit) + 1
	body, err = sjson.SetRawBytes(body, "commits", []byte("["+strings.TrimSuffix(strings.Repeat(commit+",", n), ",")+"]"))
	require.NoError(t, err)
	require.Greater(t, int64(len(body)), argo.DefaultMaxPayloadSize)

	request := func() *http.Request {
		req, err := argo.GitHubRequest("push", "d-3", body, []byte("hook-secret"))
		require.NoError(t, err)
		return req
	}
	data, err := es.Receive(request())
	require.NoError(t, err)
	obj, err := fire(t, migrated(t, "rule-names.yaml"), "nil", data)
	require.NoError(t, err)
	assert.Equal(t, "Summarise the push of 0c7d2e9f4a1b6c3d8e5f0a7b2c9d4e1f6a3b8c5d at 1764410587.", str(t, obj, "spec", "description"))

	_, err = argo.GitHubEventSource{Secret: []byte("hook-secret")}.Receive(request())
	var rejected *argo.RejectedDeliveryError
	require.True(t, errors.As(err, &rejected))
	assert.Equal(t, "http: request body too large", rejected.Body)

	// Rules that never see push events leave the default alone.
	prOnly := migratedObjects(t, "github-review.yaml")
	webhook := prOnly["EventSource"]["spec"].(map[string]any)["github"].(map[string]any)["github-review"].(map[string]any)["webhook"].(map[string]any)
	assert.NotContains(t, webhook, "maxPayloadSize")
}

// The tool checks every trigger's conditions with Argo's own translation
// and parsing; one the Sensor could not use is reported as not translated
// and left out, never written as ok.
func TestConditionsArgoCannotParseAreNotTranslated(t *testing.T) {
	rules := []*sensorRule{
		{name: "2nd review", conditions: "2nd-review", trigger: map[string]any{"template": map[string]any{"name": "2nd-review"}},
			deps: []map[string]any{{"name": "2nd-review"}}},
		{name: "fine", conditions: "rule-fine", trigger: map[string]any{"template": map[string]any{"name": "fine"}},
			deps: []map[string]any{{"name": "rule-fine"}}},
	}
	var failed []string
	deps, triggers := usableTriggers(rules, func(rule string, err error) {
		failed = append(failed, fmt.Sprintf("%s: %v", rule, err))
	})
	require.Len(t, failed, 1)
	assert.Contains(t, failed[0], `2nd review: Argo's Sensor cannot use the conditions "2nd-review" of trigger 2nd-review`)
	assert.Contains(t, failed[0], `bad number syntax`)
	assert.Len(t, deps, 1)
	assert.Len(t, triggers, 1)
}

// FuzzRuleNamesAlwaysFire: whatever a rule is called, the migrated Sensor
// creates its Task for a matching delivery, with the name on the Task.
func FuzzRuleNamesAlwaysFire(f *testing.F) {
	for _, name := range []string{"2nd-review", "3rd-party", "in", "matches", "not", "and", "or", "contains", "nil", "let",
		"len", "true", "$env", "Review PR", "review_pr", "a.b", "(x)", "-", "", "ünïcode", "rule-1", strings.Repeat("long", 30)} {
		f.Add(name)
	}
	pr, err := os.ReadFile(filepath.Join("..", "..", "..", "internal", "argo", "testdata", "github", "pull_request.opened.json"))
	require.NoError(f, err)
	data, err := argo.GitHubEventData("pull_request", "d-4", pr)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) || strings.ContainsAny(name, "\x00") {
			return // no Kubernetes object holds such a name
		}
		var in bytes.Buffer
		fmt.Fprintf(&in, "apiVersion: kubeopencode.io/v1alpha1\nkind: WebhookTrigger\nmetadata: {name: fuzz, namespace: ci}\n"+
			"spec:\n  auth: {hmac: {secretRef: {name: s, key: k}}}\n  rules:\n    - name: %q\n"+
			"      filter: 'headers[\"x-github-event\"] == \"pull_request\"'\n"+
			"      resourceTemplate: {task: {description: 'PR #{{ .body.number }}'}}\n"+
			"    - name: %q\n"+
			"      filter: 'headers[\"x-github-event\"] == \"pull_request\" || headers[\"x-github-event\"] == \"issues\"'\n"+
			"      resourceTemplate: {task: {description: 'second'}}\n", name, name)
		res, err := Migrate("fuzz.yaml", &in, Options{})
		if err != nil {
			// Only input that is not a WebhookTrigger (a name YAML cannot
			// hold) may fail, and then loudly.
			require.NotErrorIs(t, err, ErrUntranslated, "%v", res)
			return
		}
		var sensor *unstructured.Unstructured
		for _, o := range res.Objects {
			if o["kind"] == "Sensor" {
				sensor = &unstructured.Unstructured{Object: o}
			}
		}
		require.NotNil(t, sensor)
		triggers := sensor.Object["spec"].(map[string]any)["triggers"].([]any)
		require.Len(t, triggers, 2)
		for i, want := range []string{"PR #1347", "second"} {
			trigger := triggers[i].(map[string]any)["template"].(map[string]any)["name"].(string)
			obj, err := fire(t, sensor, trigger, data)
			require.NoError(t, err, "rule %q, trigger %q", name, trigger)
			assert.Equal(t, want, str(t, obj, "spec", "description"))
			assert.Equal(t, firstNonEmpty(name, fmt.Sprintf("rule-%d", i)), obj.GetAnnotations()[RuleAnnotation])
		}
	})
}
