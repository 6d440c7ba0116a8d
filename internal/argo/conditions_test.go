package argo

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// namedSensor is a Sensor with one GitHub pull request dependency called
// name, a second one called "other", and one trigger with the given
// conditions that creates a ConfigMap holding the pull request number.
func namedSensor(t testing.TB, name, conditions string) *unstructured.Unstructured {
	t.Helper()
	return sensorYAML(t, fmt.Sprintf(`
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: names, namespace: ci}
spec:
  dependencies:
    - name: %q
      eventSourceName: github
      eventName: hooks
      filters:
        data:
          - {path: body.X-GitHub-Event, type: string, value: ["^pull_request$"]}
    - {name: other, eventSourceName: github, eventName: hooks}
  triggers:
    - template:
        name: t
        conditions: %q
        k8s:
          operation: create
          source:
            resource:
              apiVersion: v1
              kind: ConfigMap
              metadata: {generateName: pr-}
              data: {number: ""}
          parameters:
            - {src: {dependencyName: %q, dataKey: body.number}, dest: data.number}
`, name, conditions, name))
}

// Rule names that users give WebhookTrigger rules, which Argo's Sensor
// cannot read as dependency names in a trigger's conditions: the expr
// language it translates the conditions with reads them as numbers,
// keywords or operators. The Sensor accepts such a Sensor, logs an error
// for the trigger and never runs it.
func TestDependencyNamesTheSensorCannotParseNeverFire(t *testing.T) {
	for _, tc := range []struct{ name, log string }{
		{"2nd-review", `failed to get dependency expression: bad number syntax: "2n"`},
		{"3rd-party", `failed to get dependency expression: bad number syntax: "3r"`},
		{"in", `failed to get dependency expression: unexpected token Operator("in")`},
		{"matches", `failed to get dependency expression: unexpected token Operator("matches")`},
		{"not", `failed to get dependency expression: unexpected token EOF`},
		{"and", `failed to get dependency expression: unexpected token Operator("and")`},
		{"or", `failed to get dependency expression: unexpected token Operator("or")`},
		{"contains", `failed to get dependency expression: unexpected token Operator("contains")`},
		{"let", `failed to get dependency expression: unexpected token EOF`},
		// expr turns nil into the string "<nil>", which govaluate rejects.
		{"nil", `failed to get new evaluable expression: Cannot transition token types from UNKNOWN [<nil>]`},
		{"$env", `failed to get dependency expression: the Sensor crashes: attempt to misuse env keyword as env map key`},
		{"review pr", `failed to get dependency expression: unexpected token Identifier("pr")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, conditions := range []string{tc.name, tc.name + " || other", "other && " + tc.name} {
				_, err := RenderTrigger(namedSensor(t, tc.name, conditions), "t", map[string][]byte{
					tc.name: githubEvent(t, "pull_request"),
				})
				require.ErrorIs(t, err, ErrNeverFires, conditions)
				assert.False(t, errors.Is(err, ErrNotTriggered), "a trigger that can never fire is not a dropped event")
				var dead *DeadTriggerError
				require.True(t, errors.As(err, &dead))
				assert.Equal(t, "ci/names", dead.Sensor)
				assert.Equal(t, "t", dead.Trigger)
				if i == 0 {
					assert.Contains(t, dead.Log, tc.log)
				}
			}
		})
	}
}

// The names of expr's built-in functions (len, count, all, ...) work as a
// condition on their own, where the dependency shadows the function, but
// not next to "&&" or "||": the Sensor's translation then adds the
// function to a string.
func TestBuiltinFunctionNamesFireOnlyAlone(t *testing.T) {
	for _, name := range []string{"len", "count", "all", "abs"} {
		t.Run(name, func(t *testing.T) {
			obj, err := RenderTrigger(namedSensor(t, name, name), "t", map[string][]byte{name: githubEvent(t, "pull_request")})
			require.NoError(t, err)
			assert.Equal(t, "1347", obj.Object["data"].(map[string]any)["number"])

			_, err = RenderTrigger(namedSensor(t, name, name+" || other"), "t", map[string][]byte{name: githubEvent(t, "pull_request")})
			require.ErrorIs(t, err, ErrNeverFires)
			assert.Contains(t, err.Error(), "mismatched types func(")
		})
	}
}

// Names that look alike but that the expr language reads as plain
// identifiers fire as written.
func TestDependencyNamesTheSensorParsesFire(t *testing.T) {
	for _, name := range []string{"pull-request", "review2", "rule-2nd-review", "rule-in", "rule-len", "x_y"} {
		t.Run(name, func(t *testing.T) {
			obj, err := RenderTrigger(namedSensor(t, name, name+" || other"), "t", map[string][]byte{
				name: githubEvent(t, "pull_request"),
			})
			require.NoError(t, err)
			assert.Equal(t, "1347", obj.Object["data"].(map[string]any)["number"])
		})
	}
}

// An empty conditions field means all dependencies of the Sensor, joined
// by "&&", which govaluate alone parses: a name it cannot read is fatal
// there too.
func TestEmptyConditionsNeedEveryDependency(t *testing.T) {
	s := namedSensor(t, "pull-request", "")
	_, err := RenderTrigger(s, "t", map[string][]byte{"pull-request": githubEvent(t, "pull_request")})
	require.ErrorIs(t, err, ErrNotTriggered)
	assert.Contains(t, err.Error(), `"pull-request&&other"`)

	obj, err := RenderTrigger(s, "t", map[string][]byte{
		"pull-request": githubEvent(t, "pull_request"),
		"other":        githubEvent(t, "issue_comment"),
	})
	require.NoError(t, err)
	assert.Equal(t, "1347", obj.Object["data"].(map[string]any)["number"])

	_, err = RenderTrigger(namedSensor(t, "2nd-review", ""), "t", map[string][]byte{"2nd-review": githubEvent(t, "pull_request")})
	require.ErrorIs(t, err, ErrNeverFires)
	assert.Contains(t, err.Error(), "failed to get new evaluable expression")
}

// Without "&&" the JetStream EventBus runs the trigger once for every
// dependency whose event passed, with that event alone; with "&&" it runs
// once, when the expression holds, with every event it read.
func TestHowOftenATriggerFires(t *testing.T) {
	pr, comment := githubEvent(t, "pull_request"), githubEvent(t, "issue_comment")
	either := namedSensor(t, "pull-request", "pull-request || other")
	objs, err := RenderTriggerAll(either, "t", map[string][]byte{"pull-request": pr, "other": comment})
	require.NoError(t, err)
	require.Len(t, objs, 2, "one ConfigMap per passing dependency")
	assert.Equal(t, "1347", objs[0].Object["data"].(map[string]any)["number"])
	assert.Equal(t, "", objs[1].Object["data"].(map[string]any)["number"],
		"the run for other has no pull-request event, so the parameter is skipped")

	_, err = RenderTrigger(either, "t", map[string][]byte{"pull-request": pr, "other": comment})
	assert.ErrorContains(t, err, "fires 2 times")

	both := namedSensor(t, "pull-request", "(pull-request && other) || other")
	objs, err = RenderTriggerAll(both, "t", map[string][]byte{"pull-request": pr, "other": comment})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, "1347", objs[0].Object["data"].(map[string]any)["number"])

	// A comment is not a pull request: the filter drops it, so "other"
	// alone carries the expression.
	objs, err = RenderTriggerAll(both, "t", map[string][]byte{"pull-request": comment, "other": comment})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, "", objs[0].Object["data"].(map[string]any)["number"])
}

// A condition naming something that is not a dependency of the Sensor:
// expr already fails on the unknown name.
func TestConditionsNamingAnUnknownDependencyNeverFire(t *testing.T) {
	_, err := RenderTrigger(namedSensor(t, "pull-request", "pull-request || typo"), "t", map[string][]byte{
		"pull-request": githubEvent(t, "pull_request"),
	})
	require.ErrorIs(t, err, ErrNeverFires)
	assert.Contains(t, err.Error(), "unknown name typo")
}

func TestParseConditionsLogsTheTranslatedExpression(t *testing.T) {
	e, err := ParseConditions("(review-a || review-b) && label", []string{"review-a", "review-b", "label", "unused"})
	require.NoError(t, err)
	assert.Equal(t, "(review-a||review-b)&&label", e.Text)
	assert.Equal(t, []string{"review-a", "review-b", "label"}, e.Dependencies)
	assert.True(t, strings.Contains(e.Text, "&"))
}

// The Sensor maps "-" to "_" on both sides, so a condition may name
// dep_1a as dep-1a; the expression it evaluates uses the real name.
func TestConditionsMatchNamesWithDashOrUnderscore(t *testing.T) {
	e, err := ParseConditions("dep-1 || dep-1a || dep-3", []string{"dep-1", "dep_1a", "dep-2", "dep-3"})
	require.NoError(t, err)
	assert.Equal(t, "dep-1||dep_1a||dep-3", e.Text)
	assert.Equal(t, []string{"dep-1", "dep_1a", "dep-3"}, e.Dependencies)

	e, err = ParseConditions("", []string{"dep1"})
	require.NoError(t, err)
	assert.Equal(t, "dep1", e.Text)
}
