package argo

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Knetic/govaluate"
	"github.com/antonmedv/expr"
)

// ErrNeverFires is returned (wrapped in a *DeadTriggerError) for a trigger
// that the Sensor accepts but can never run: its conditions do not survive
// the Sensor's translation of them, so the Sensor logs an error for the
// trigger at start-up and never subscribes it to any event.
var ErrNeverFires = errors.New("trigger can never fire")

// DeadTriggerError says why a trigger can never fire and what the Sensor
// logs about it.
type DeadTriggerError struct {
	Sensor     string
	Trigger    string
	Conditions string
	// Log is the error line the Sensor writes at start-up; empty when it
	// writes none.
	Log string
	Err error
}

func (e *DeadTriggerError) Error() string {
	if e.Log == "" {
		return fmt.Sprintf("Sensor %s: trigger %q can never fire: conditions %q: %v (the Sensor logs nothing about it)",
			e.Sensor, e.Trigger, e.Conditions, e.Err)
	}
	return fmt.Sprintf("Sensor %s: trigger %q can never fire: conditions %q: %v (the Sensor logs %q at start-up and never runs the trigger)",
		e.Sensor, e.Trigger, e.Conditions, e.Err, e.Log)
}

func (e *DeadTriggerError) Unwrap() []error { return []error{ErrNeverFires, e.Err} }

// DependencyExpression is a trigger's conditions after the Sensor has
// translated and parsed them: the form the Sensor evaluates.
type DependencyExpression struct {
	// Text is the translated expression the Sensor logs ("Dependency
	// expression for trigger T: ...").
	Text string
	// Dependencies are the dependency names the expression reads, in order:
	// the Sensor subscribes the trigger to these and no others.
	Dependencies []string
	// requiresAnd is Argo's test for whether the expression needs state:
	// without an "&", every event that passes the filters of one of the
	// Dependencies fires the trigger on its own.
	requiresAnd bool
	parsed      *govaluate.EvaluableExpression
}

// ParseConditions turns a trigger's conditions into the dependency
// expression the Sensor of Argo Events v1.9.11 evaluates, failing exactly
// where that Sensor fails (the returned *DeadTriggerError then carries the
// line it logs):
//
//  1. Empty conditions mean every dependency of the Sensor, joined by "&&".
//  2. Otherwise the conditions are rewritten into an expr-language program
//     (github.com/antonmedv/expr) that rebuilds the expression as a string:
//     "&&" and "||" become string literals, every "-" becomes "_", and each
//     dependency name (with "-" as "_") is a variable holding the name.
//     A dependency name that the expr language reads as a number, keyword
//     or operator (2nd-review, in, not, matches, nil, ...) breaks this step.
//  3. The result, with "-" escaped, is parsed by govaluate, whose variables
//     must all be dependencies of the Sensor.
func ParseConditions(conditions string, dependencies []string) (expression *DependencyExpression, err error) {
	text := strings.Join(dependencies, "&&")
	if conditions != "" {
		text, err = translateConditions(conditions, dependencies)
		if err != nil {
			return nil, &DeadTriggerError{Conditions: conditions, Err: err,
				Log: "failed to get dependency expression: " + err.Error()}
		}
	}
	parsed, err := govaluate.NewEvaluableExpression(strings.ReplaceAll(text, "-", "\\-"))
	if err != nil {
		return nil, &DeadTriggerError{Conditions: conditions, Err: err,
			Log: "failed to get new evaluable expression: " + err.Error()}
	}
	known := map[string]bool{}
	for _, d := range dependencies {
		known[d] = true
	}
	seen := map[string]bool{}
	var deps []string
	for _, v := range parsed.Vars() {
		if seen[v] {
			continue
		}
		seen[v] = true
		if !known[v] {
			err := fmt.Errorf("%s is not a dependency of the Sensor", v)
			return nil, &DeadTriggerError{Conditions: conditions, Err: err,
				Log: fmt.Sprintf("Dependency expression and dependency list do not match, %s is not found", v)}
		}
		deps = append(deps, v)
	}
	if len(deps) == 0 {
		// "true", for instance: the Sensor subscribes the trigger to no
		// event at all, silently.
		return nil, &DeadTriggerError{Conditions: conditions,
			Err: fmt.Errorf("the dependency expression %q names no dependency, so the trigger is subscribed to no event", text)}
	}
	return &DependencyExpression{
		Text:         text,
		Dependencies: deps,
		requiresAnd:  strings.Contains(text, "&"),
		parsed:       parsed,
	}, nil
}

// translateConditions is the Sensor's rewriting of conditions into an expr
// program that concatenates the dependency names back into an expression.
func translateConditions(conditions string, dependencies []string) (_ string, err error) {
	// A dependency called "$env" makes expr panic, which kills the Sensor.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the Sensor crashes: %v", r)
		}
	}()
	// The same replacements, in the same order, as the Sensor.
	program := conditions
	for _, r := range [][2]string{
		{"&&", ` + "&&" + `},
		{"||", ` + "||" + `},
		{"-", "_"},
		{"(", `"("+`},
		{")", `+")"`},
	} {
		program = strings.ReplaceAll(program, r[0], r[1])
	}
	env := map[string]string{}
	for _, d := range dependencies {
		env[strings.ReplaceAll(d, "-", "_")] = d
	}
	compiled, err := expr.Compile(program, expr.Env(env))
	if err != nil {
		return "", err
	}
	out, err := expr.Run(compiled, env)
	if err != nil {
		return "", err
	}
	s := fmt.Sprintf("%v", out)
	s = strings.ReplaceAll(s, `"("`, "(")
	s = strings.ReplaceAll(s, `")"`, ")")
	return s, nil
}

// firings returns the sets of dependencies whose events fire the trigger
// when the events of the passed dependencies arrive together, as the
// JetStream EventBus decides it: an expression without "&" fires once for
// each passing dependency, with that dependency's event alone; otherwise
// the expression is evaluated once, each dependency true when its event
// passed, and fires with every passed event the expression reads.
func (e *DependencyExpression) firings(passed map[string]bool) ([][]string, error) {
	if !e.requiresAnd {
		var out [][]string
		for _, d := range e.Dependencies {
			if passed[d] {
				out = append(out, []string{d})
			}
		}
		return out, nil
	}
	params := map[string]any{}
	var with []string
	for _, d := range e.Dependencies {
		params[d] = passed[d]
		if passed[d] {
			with = append(with, d)
		}
	}
	res, err := e.parsed.Evaluate(params)
	if err != nil {
		return nil, fmt.Errorf("failed to evaluate dependency expression: %w", err)
	}
	if res != true {
		return nil, nil
	}
	return [][]string{with}, nil
}
