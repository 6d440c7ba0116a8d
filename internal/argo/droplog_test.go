package argo

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the Sensor logs when its filters drop an event, as
// docs/argo-events.md describes it: a filtering error (naming its cause) at
// warn level only when a filter could not be evaluated, a plain mismatch
// only at debug level, and in both cases an info line that names the
// dependency but not the filter.
func TestSensorLogOnADrop(t *testing.T) {
	for _, tc := range []struct {
		name, trigger, dep, eventType string
		edits                         []any
		warn                          string
	}{
		{name: "missing path", trigger: "review-on-comment", dep: "review-comment", eventType: "issue_comment",
			edits: []any{"issue.pull_request", nil},
			warn:  "discarded due to filtering error: data filter error (path 'body.issue.pull_request.url' does not exist)"},
		{name: "value does not match", trigger: "review-pull-request", dep: "pull-request", eventType: "pull_request",
			edits: []any{"action", "closed"}},
		{name: "expression false", trigger: "review-pull-request", dep: "pull-request", eventType: "pull_request",
			edits: []any{"sender.type", "Bot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderTrigger(shippedSensor(t), tc.trigger, map[string][]byte{tc.dep: githubEvent(t, tc.eventType, tc.edits...)})
			var nt *NotTriggeredError
			require.True(t, errors.As(err, &nt), "%v", err)
			lines := nt.Logged[tc.dep]
			require.Len(t, lines, 2)
			assert.Equal(t, "info: not interested in dependency "+tc.dep+" (didn't pass filter)", lines[1])
			if tc.warn != "" {
				assert.True(t, strings.HasPrefix(lines[0], "warn: Event [ID 'emulated-"+tc.dep+"', Source 'github', "), lines[0][:80])
				assert.Contains(t, lines[0], tc.warn)
				return
			}
			assert.True(t, strings.HasPrefix(lines[0], "debug: Event [ID "), lines[0][:80])
			assert.True(t, strings.HasSuffix(lines[0], "] discarded due to filtering"))
			// The emulator's own reason names the filter that the log does not.
			assert.NotEmpty(t, nt.Rejected[tc.dep])
			for _, l := range lines {
				assert.NotContains(t, l, nt.Rejected[tc.dep])
			}
		})
	}
}

// With filtersLogicalOperator "or", a filter that errors does not stop the
// others from passing the event, and the errors are joined as Argo joins
// them.
func TestOrFiltersCollectErrors(t *testing.T) {
	s := sensorYAML(t, `
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: or, namespace: ci}
spec:
  dependencies:
    - name: either
      eventSourceName: github
      eventName: hooks
      filtersLogicalOperator: or
      filters:
        data:
          - {path: body.label.name, type: string, value: ["^needs-review$"]}
        exprs:
          - {expr: 'num > 1000', fields: [{name: num, path: body.number}]}
  triggers:
    - template:
        name: t
        conditions: either
        k8s:
          operation: create
          source: {resource: {apiVersion: v1, kind: ConfigMap, metadata: {generateName: x-}}}
`)
	_, err := RenderTrigger(s, "t", map[string][]byte{"either": githubEvent(t, "pull_request", "number", 4242)})
	require.NoError(t, err, "the expression passes although the data filter's path is missing")

	_, err = RenderTrigger(s, "t", map[string][]byte{"either": githubEvent(t, "pull_request", "number", 999)})
	var nt *NotTriggeredError
	require.True(t, errors.As(err, &nt), "%v", err)
	assert.Contains(t, nt.Logged["either"][0], "discarded due to filtering error: data filter error (path 'body.label.name' does not exist)")
}
