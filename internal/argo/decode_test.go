package argo

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// misspell renames a key of the first trigger's parameter that sets the
// git ref of the shipped Sensor, as a hand-edited Sensor might.
func misspell(t *testing.T, from, to string) *unstructured.Unstructured {
	t.Helper()
	s := shippedSensor(t)
	for _, p := range firstK8sTrigger(s.Object)["parameters"].([]any) {
		p := p.(map[string]any)
		if p["dest"] != "spec.contexts.0.git.ref" {
			continue
		}
		for _, m := range []map[string]any{p, p["src"].(map[string]any)} {
			if v, ok := m[from]; ok {
				m[to] = v
				delete(m, from)
				return s
			}
		}
	}
	t.Fatalf("no field %s in the git ref parameter", from)
	return nil
}

// The Argo Events controller decodes a Sensor with exact field names, so a
// misspelled field is gone by the time the Sensor runs. With dataKey spelled
// datakey the parameter selects nothing, and Argo puts the whole event,
// context and base64 data, into the git ref: a 15 kB ref that the Task CRD
// rejects.
func TestMisspelledDataKeyPutsTheWholeEventInTheParameter(t *testing.T) {
	data := githubEvent(t, "pull_request")
	obj, err := RenderTrigger(misspell(t, "dataKey", "datakey"), "review-pull-request", map[string][]byte{"pull-request": data})
	require.NoError(t, err)
	ref, _, err := unstructured.NestedSlice(obj.Object, "spec", "contexts")
	require.NoError(t, err)
	got := ref[0].(map[string]any)["git"].(map[string]any)["ref"].(string)

	var whole struct {
		Context map[string]any `json:"context"`
		Data    string         `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(got), &whole), got)
	assert.Equal(t, "emulated-pull-request", whole.Context["id"])
	assert.Equal(t, "github", whole.Context["source"])
	assert.Equal(t, "kubeopencode", whole.Context["subject"])
	decoded, err := base64.StdEncoding.DecodeString(whole.Data)
	require.NoError(t, err)
	assert.Equal(t, string(data), string(decoded))
	assert.Greater(t, len(got), 255, "longer than the Task CRD allows for a ref")
	assert.Regexp(t, `^\{"context":\{"id":"emulated-pull-request","source":"github","specversion":"1.0","type":"","datacontenttype":"application/json","subject":"kubeopencode","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\},"data":"`, got[:250])
}

// A misspelled dependencyName leaves the parameter without a dependency:
// Argo skips it, so the ref keeps the placeholder of the resource.
func TestMisspelledDependencyNameSkipsTheParameter(t *testing.T) {
	obj, err := RenderTrigger(misspell(t, "dependencyName", "dependencyname"), "review-pull-request", map[string][]byte{
		"pull-request": githubEvent(t, "pull_request"),
	})
	require.NoError(t, err)
	ctxs, _, err := unstructured.NestedSlice(obj.Object, "spec", "contexts")
	require.NoError(t, err)
	assert.Equal(t, "set from the event", ctxs[0].(map[string]any)["git"].(map[string]any)["ref"])
}

// Field names match in their exact case only: dataKey in the wrong case
// is as absent as a misspelling, and a correct dataKey still works.
func TestFieldNamesMatchInExactCase(t *testing.T) {
	obj, err := RenderTrigger(misspell(t, "dataKey", "DataKey"), "review-pull-request", map[string][]byte{"pull-request": githubEvent(t, "pull_request")})
	require.NoError(t, err)
	ctxs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "contexts")
	assert.True(t, strings.HasPrefix(ctxs[0].(map[string]any)["git"].(map[string]any)["ref"].(string), `{"context":`))

	obj, err = RenderTrigger(shippedSensor(t), "review-pull-request", map[string][]byte{"pull-request": githubEvent(t, "pull_request")})
	require.NoError(t, err)
	ctxs, _, _ = unstructured.NestedSlice(obj.Object, "spec", "contexts")
	assert.Equal(t, "9f2c4e1b7a5d3c8e6f0a1b2c3d4e5f6a7b8c9d0e", ctxs[0].(map[string]any)["git"].(map[string]any)["ref"])
}

// A misspelled filter field drops the filter: the Sensor then lets through
// events the filter was meant to stop.
func TestMisspelledFilterFieldLetsEventsThrough(t *testing.T) {
	s := shippedSensor(t)
	dep := s.Object["spec"].(map[string]any)["dependencies"].([]any)[0].(map[string]any)
	filters := dep["filters"].(map[string]any)
	filters["Data"] = filters["data"]
	delete(filters, "data")
	_, err := RenderTrigger(s, "review-pull-request", map[string][]byte{
		"pull-request": githubEvent(t, "pull_request", "action", "closed"),
	})
	require.NoError(t, err, "with its data filters gone, a closed pull request passes")
}
