package argo

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/Knetic/govaluate"
	"github.com/Masterminds/sprig/v3"
	"github.com/tidwall/gjson"
)

// Argo's names for the ways filters combine.
const (
	logicalAnd = "and"
	logicalOr  = "or"
)

// eventDependency is the part of an Argo EventDependency the emulator reads.
type eventDependency struct {
	Name                   string         `json:"name"`
	EventSourceName        string         `json:"eventSourceName"`
	EventName              string         `json:"eventName"`
	Filters                *eventFilters  `json:"filters,omitempty"`
	FiltersLogicalOperator string         `json:"filtersLogicalOperator,omitempty"`
	Transform              map[string]any `json:"transform,omitempty"`
}

type eventFilters struct {
	Context             *EventContextFilter `json:"context,omitempty"`
	Data                []dataFilter        `json:"data,omitempty"`
	DataLogicalOperator string              `json:"dataLogicalOperator,omitempty"`
	Exprs               []exprFilter        `json:"exprs,omitempty"`
	ExprLogicalOperator string              `json:"exprLogicalOperator,omitempty"`
	Time                map[string]any      `json:"time,omitempty"`
	Script              string              `json:"script,omitempty"`
}

// EventContextFilter matches the non-empty fields against the event context.
type EventContextFilter struct {
	Type            string `json:"type,omitempty"`
	Subject         string `json:"subject,omitempty"`
	Source          string `json:"source,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
}

type dataFilter struct {
	Path       string   `json:"path"`
	Type       string   `json:"type"`
	Value      []string `json:"value"`
	Comparator string   `json:"comparator,omitempty"`
	Template   string   `json:"template,omitempty"`
}

type exprFilter struct {
	Expr   string         `json:"expr"`
	Fields []payloadField `json:"fields"`
}

type payloadField struct {
	Path string `json:"path"`
	Name string `json:"name"`
}

// filterEvent decides whether the dependency accepts the event, as Argo's
// Sensor does before any trigger sees it. The returned reason says, for a
// rejected event, which filter rejected it and why.
func (d *eventDependency) filterEvent(ev Event) (bool, string, error) {
	if d.Transform != nil {
		return false, "", fmt.Errorf("dependency %q: transform is not emulated", d.Name)
	}
	f := d.Filters
	if f == nil {
		return true, "", nil
	}
	if f.Time != nil {
		return false, "", fmt.Errorf("dependency %q: filters.time is not emulated", d.Name)
	}
	if f.Script != "" {
		return false, "", fmt.Errorf("dependency %q: filters.script is not emulated", d.Name)
	}
	op, err := logicalOperator(d.FiltersLogicalOperator, "filtersLogicalOperator")
	if err != nil {
		return false, "", fmt.Errorf("dependency %q: %w", d.Name, err)
	}

	type outcome struct {
		set    bool
		pass   bool
		reason string
	}
	var outcomes []outcome
	if f.Exprs != nil {
		pass, reason, err := filterExprs(f.Exprs, f.ExprLogicalOperator, ev.Data)
		if err != nil {
			return false, "", fmt.Errorf("dependency %q: %w", d.Name, err)
		}
		outcomes = append(outcomes, outcome{true, pass, reason})
	}
	if len(f.Data) > 0 {
		pass, reason, err := filterData(f.Data, f.DataLogicalOperator, ev.Data)
		if err != nil {
			return false, "", fmt.Errorf("dependency %q: %w", d.Name, err)
		}
		outcomes = append(outcomes, outcome{true, pass, reason})
	}
	if f.Context != nil {
		pass, reason := filterContext(f.Context, ev.Context)
		outcomes = append(outcomes, outcome{true, pass, reason})
	}

	var reasons []string
	for _, o := range outcomes {
		if op == logicalOr && o.pass {
			return true, "", nil
		}
		if !o.pass {
			reasons = append(reasons, o.reason)
		}
	}
	if op == logicalOr {
		// Like Argo, "or" over no filter at all passes nothing.
		return false, strings.Join(reasons, "; "), nil
	}
	if len(reasons) > 0 {
		return false, reasons[0], nil
	}
	return true, "", nil
}

func logicalOperator(op, field string) (string, error) {
	switch strings.ToLower(op) {
	case "", logicalAnd:
		return logicalAnd, nil
	case logicalOr:
		return logicalOr, nil
	default:
		return "", fmt.Errorf("%s %q must be \"and\" or \"or\"", field, op)
	}
}

// filterData applies data filters. A filter that cannot be evaluated (a
// missing path, an unparsable value) counts as not matching, which is what
// the Sensor does after logging the error.
func filterData(filters []dataFilter, operator string, data []byte) (bool, string, error) {
	return combine(filters, operator, "dataLogicalOperator", "data filter", data, matchDataFilter)
}

// combine applies filters of one kind under their logical operator ("and",
// the default, or "or") and says which filter rejected the event.
func combine[F any](filters []F, operator, field, kind string, data []byte, match func(F, []byte) (bool, string)) (bool, string, error) {
	op, err := logicalOperator(operator, field)
	if err != nil {
		return false, "", err
	}
	if !gjson.ValidBytes(data) {
		return false, kind + ": event data is not valid JSON", nil
	}
	var reasons []string
	for _, f := range filters {
		ok, reason := match(f, data)
		if ok && op == logicalOr {
			return true, "", nil
		}
		if !ok {
			if op == logicalAnd {
				return false, reason, nil
			}
			reasons = append(reasons, reason)
		}
	}
	if op == logicalOr {
		return false, strings.Join(reasons, "; "), nil
	}
	return true, "", nil
}

func matchDataFilter(f dataFilter, data []byte) (bool, string) {
	where := "data filter " + f.Path
	res := gjson.GetBytes(data, f.Path)
	if !res.Exists() {
		return false, where + ": path does not exist in the event"
	}
	if len(f.Value) == 0 {
		return false, where + ": no values specified"
	}
	if f.Template != "" {
		out, err := executeTemplate(f.Template, res.String())
		if err != nil {
			return false, where + ": " + err.Error()
		}
		res = gjson.Parse(strconv.Quote(out))
	}
	switch f.Type {
	case "bool":
		for _, v := range f.Value {
			want, err := strconv.ParseBool(v)
			if err != nil {
				return false, fmt.Sprintf("%s: value %q is not a bool", where, v)
			}
			if want == res.Bool() {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s: %s is none of %v", where, res.Raw, f.Value)
	case "number":
		for _, v := range f.Value {
			want, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return false, fmt.Sprintf("%s: value %q is not a number", where, v)
			}
			if compareNumbers(res.Float(), want, f.Comparator) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s: %s is not %s any of %v", where, res.Raw, comparatorText(f.Comparator), f.Value)
	case "string":
		for _, v := range f.Value {
			re, err := regexp.Compile(v)
			if err != nil {
				return false, fmt.Sprintf("%s: value %q is not a regular expression: %v", where, v, err)
			}
			// Argo matches the pattern anywhere in the value (no implicit
			// anchors), so "opened" also matches "reopened".
			matched := re.MatchString(res.String())
			switch f.Comparator {
			case "", "=":
				if matched {
					return true, ""
				}
			case "!=":
				if !matched {
					return true, ""
				}
			}
		}
		if f.Comparator == "!=" {
			return false, fmt.Sprintf("%s: %q matches each of %q", where, res.String(), f.Value)
		}
		return false, fmt.Sprintf("%s: %q matches none of %q", where, res.String(), f.Value)
	default:
		return false, fmt.Sprintf("%s: unsupported type %q (want bool, number or string)", where, f.Type)
	}
}

func compareNumbers(got, want float64, comparator string) bool {
	switch comparator {
	case ">=":
		return got >= want
	case ">":
		return got > want
	case "<":
		return got < want
	case "<=":
		return got <= want
	case "!=":
		return got != want
	case "", "=":
		return got == want
	}
	return false
}

func comparatorText(c string) string {
	if c == "" {
		return "="
	}
	return c
}

// filterExprs evaluates expression filters with govaluate, the library
// Argo's Sensor uses; each field's gjson path becomes a named parameter.
func filterExprs(filters []exprFilter, operator string, data []byte) (bool, string, error) {
	return combine(filters, operator, "exprLogicalOperator", "expr filter", data, matchExpr)
}

func matchExpr(f exprFilter, data []byte) (bool, string) {
	where := fmt.Sprintf("expr filter %q", f.Expr)
	params := map[string]any{}
	for _, field := range f.Fields {
		res := gjson.GetBytes(data, field.Path)
		if !res.Exists() {
			return false, fmt.Sprintf("%s: path %s does not exist in the event", where, field.Path)
		}
		params[field.Name] = res.Value()
	}
	if len(params) == 0 {
		// Argo skips an expression without fields.
		return true, ""
	}
	expr, err := govaluate.NewEvaluableExpression(f.Expr)
	if err != nil {
		return false, fmt.Sprintf("%s: %v", where, err)
	}
	result, err := expr.Evaluate(params)
	if err != nil {
		return false, fmt.Sprintf("%s: %v", where, err)
	}
	if result != true {
		return false, fmt.Sprintf("%s is false for %v", where, params)
	}
	return true, ""
}

func filterContext(want *EventContextFilter, got EventContext) (bool, string) {
	check := func(field, want, got string) string {
		if want != "" && want != got {
			return fmt.Sprintf("context filter: %s is %q, not %q", field, got, want)
		}
		return ""
	}
	for _, r := range []string{
		check("type", want.Type, got.Type),
		check("subject", want.Subject, got.Subject),
		check("source", want.Source, got.Source),
		check("datacontenttype", want.DataContentType, got.DataContentType),
	} {
		if r != "" {
			return false, r
		}
	}
	return true, ""
}

// executeTemplate runs a Go template with sprig's functions over
// {"Input": input}, as Argo does for dataTemplate, contextTemplate and data
// filter templates. An empty result or "<no value>" is an error, as in Argo.
func executeTemplate(text string, input any) (string, error) {
	tpl, err := template.New("param").Funcs(sprig.FuncMap()).Parse(text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, map[string]any{"Input": input}); err != nil {
		return "", err
	}
	out := buf.String()
	if out == "" || out == "<no value>" {
		return "", errors.New("template evaluated to an empty string or no value")
	}
	return out, nil
}
