package argo

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/antonmedv/expr"
	"github.com/antonmedv/expr/ast"
	"github.com/antonmedv/expr/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// conditionsOracle decides, independently of the emulator, whether and how
// often a trigger fires when the events of the passed dependencies arrive.
// It reads the conditions as Argo documents them: dependency names joined
// by "&&" and "||", with parentheses. expr's parser must find exactly that
// shape (identifiers that name dependencies, with "-" read as "_", and the
// two operators; no literal, keyword, negation or call), and expr then
// evaluates it as a boolean expression, each dependency true when its event
// passed. Anything else is a condition the Sensor cannot use. Without "&"
// the JetStream EventBus fires once per passing dependency named in the
// conditions; with it, once when the expression holds.
func conditionsOracle(conditions string, deps []string, passed map[string]bool) (dead bool, fires int) {
	if conditions == "" {
		conditions = strings.Join(deps, " && ")
	}
	src := strings.ReplaceAll(conditions, "-", "_")
	byIdent := map[string]string{}
	env := map[string]any{}
	for _, d := range deps {
		byIdent[strings.ReplaceAll(d, "-", "_")] = d
		env[strings.ReplaceAll(d, "-", "_")] = passed[d]
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return true, 0
	}
	shape := &dependencyShape{deps: byIdent, named: map[string]bool{}}
	ast.Walk(&tree.Node, shape)
	if shape.bad {
		return true, 0
	}
	var out any
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		program, cerr := expr.Compile(src, expr.Env(env), expr.AsBool())
		if cerr != nil {
			err = cerr
			return
		}
		out, err = expr.Run(program, env)
	}()
	if err != nil {
		return true, 0
	}
	if strings.Contains(conditions, "&") {
		if out == true {
			return false, 1
		}
		return false, 0
	}
	for ident := range shape.named {
		if passed[byIdent[ident]] {
			fires++
		}
	}
	if (fires > 0) != (out == true) {
		panic("the oracle contradicts itself on " + conditions)
	}
	return false, fires
}

// dependencyShape checks that an expression is only dependency names
// joined by && and ||.
type dependencyShape struct {
	deps  map[string]string
	named map[string]bool
	bad   bool
}

func (v *dependencyShape) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if _, ok := v.deps[n.Value]; !ok {
			v.bad = true
		}
		v.named[n.Value] = true
	case *ast.BinaryNode:
		if n.Operator != "&&" && n.Operator != "||" {
			v.bad = true
		}
	default:
		v.bad = true
	}
}

// sensorsUnderTest returns every Sensor the repository ships or the
// migration tool's goldens hold, by file and name.
func sensorsUnderTest(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	root := repoRoot(t)
	files, err := FindManifests(
		filepath.Join(root, "manifests"),
		filepath.Join(root, "tools", "migrate-webhooktrigger", "testdata"),
	)
	require.NoError(t, err)
	out := map[string]*unstructured.Unstructured{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		docs, err := ReadDocuments(f, strings.NewReader(string(data)))
		require.NoError(t, err)
		for _, d := range docs {
			if d.APIVersion() == APIVersion && d.Kind() == "Sensor" {
				rel, _ := filepath.Rel(root, f)
				out[rel] = &unstructured.Unstructured{Object: d.Object}
			}
		}
	}
	return out
}

// withoutFiltersAndParameters copies a Sensor with every dependency filter
// and trigger parameter removed, so that whether and how often a trigger
// fires depends on its conditions alone.
func withoutFiltersAndParameters(s *unstructured.Unstructured) *unstructured.Unstructured {
	c := s.DeepCopy()
	spec := c.Object["spec"].(map[string]any)
	for _, d := range spec["dependencies"].([]any) {
		delete(d.(map[string]any), "filters")
	}
	for _, tr := range spec["triggers"].([]any) {
		tr := tr.(map[string]any)
		delete(tr, "parameters")
		if k8s, ok := tr["template"].(map[string]any)["k8s"].(map[string]any); ok {
			delete(k8s, "parameters")
		}
	}
	return c
}

// nameSensors are Sensors whose dependencies carry the rule names users
// give, in the condition shapes triggers use.
func nameSensors(t *testing.T) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, name := range []string{"2nd-review", "3rd-party", "in", "matches", "not", "and", "or", "contains", "nil", "let",
		"true", "$env", "review pr", "pull-request", "rule-2nd-review", "rule-in"} {
		// Not here: the names of expr's built-in functions (len, count),
		// which the Sensor's translation accepts alone but expr does not
		// read as booleans; TestBuiltinFunctionNamesFireOnlyAlone covers them.
		for _, conditions := range []string{name, name + " || other", "other && " + name, "(" + name + " || other) && other", "!" + name} {
			out[fmt.Sprintf("dependency %q, conditions %q", name, conditions)] = namedSensor(t, name, conditions)
		}
	}
	return out
}

// TestEmulatorAgreesWithExprOnEveryTrigger runs every shipped and golden
// Sensor, and Sensors with the rule names users give, through the emulator
// with every combination of dependencies whose events pass, and compares
// whether and how often each trigger fires with the oracle's reading of the
// conditions.
func TestEmulatorAgreesWithExprOnEveryTrigger(t *testing.T) {
	sensors := sensorsUnderTest(t)
	require.GreaterOrEqual(t, len(sensors), 4, "the shipped Sensor and the migration goldens")
	for k, v := range nameSensors(t) {
		sensors[k] = v
	}
	keys := make([]string, 0, len(sensors))
	for k := range sensors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	data := githubEvent(t, "pull_request")
	checked, dead := 0, 0
	for _, key := range keys {
		sensor := withoutFiltersAndParameters(sensors[key])
		spec, err := decodeSensor(sensor)
		require.NoError(t, err)
		deps := spec.dependencyNameList()
		for _, tr := range spec.Triggers {
			var tmpl triggerTemplate
			require.NoError(t, unmarshalArgo(tr.Template, &tmpl))
			// Every combination of the dependencies the conditions mention;
			// the events of all others always arrive, and must not matter.
			var varied, others []string
			for _, d := range deps {
				if tmpl.Conditions == "" || strings.Contains(tmpl.Conditions, d) {
					varied = append(varied, d)
				} else {
					others = append(others, d)
				}
			}
			require.Less(t, len(varied), 10, "%s: too many dependencies to try every combination", key)
			for mask := 0; mask < 1<<len(varied); mask++ {
				passed := map[string]bool{}
				events := map[string][]byte{}
				for i, d := range varied {
					if mask&(1<<i) != 0 {
						passed[d] = true
						events[d] = data
					}
				}
				for _, d := range others {
					events[d] = data
				}
				wantDead, wantFires := conditionsOracle(tmpl.Conditions, deps, passed)
				objs, err := RenderTriggerAll(sensor, tmpl.Name, events)
				where := fmt.Sprintf("%s trigger %q (conditions %q) with events for %v", key, tmpl.Name, tmpl.Conditions, events2names(events))
				checked++
				switch {
				case wantDead:
					dead++
					assert.ErrorIs(t, err, ErrNeverFires, where)
				case wantFires == 0:
					assert.ErrorIs(t, err, ErrNotTriggered, where)
				default:
					if assert.NoError(t, err, where) {
						assert.Len(t, objs, wantFires, where)
					}
				}
			}
		}
	}
	t.Logf("compared %d trigger runs (%d on triggers that can never fire)", checked, dead)
	assert.Greater(t, dead, 0)
}

func events2names(events map[string][]byte) []string {
	var names []string
	for n := range events {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
