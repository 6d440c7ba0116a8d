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

// filterOutcome is what the Sensor makes of one event for one dependency.
type filterOutcome struct {
	pass bool
	// err is the filtering error the Sensor logs (at Warn) with the event;
	// the Sensor logs nothing else about which filter dropped an event.
	err error
	// reason is the emulator's own account of a drop: which filter and why.
	reason string
}

// filterEvent decides whether the dependency accepts the event, following
// the Sensor's order and error handling. An error is returned only for
// what the emulator does not reproduce.
func (d *eventDependency) filterEvent(ev Event) (filterOutcome, error) {
	if d.Transform != nil {
		return filterOutcome{}, fmt.Errorf("dependency %q: transform is not emulated", d.Name)
	}
	f := d.Filters
	if f == nil {
		return filterOutcome{pass: true}, nil
	}
	if f.Time != nil {
		return filterOutcome{}, fmt.Errorf("dependency %q: filters.time is not emulated", d.Name)
	}
	if f.Script != "" {
		return filterOutcome{}, fmt.Errorf("dependency %q: filters.script is not emulated", d.Name)
	}
	for field, op := range map[string]string{
		"filtersLogicalOperator":      d.FiltersLogicalOperator,
		"filters.exprLogicalOperator": f.ExprLogicalOperator,
		"filters.dataLogicalOperator": f.DataLogicalOperator,
	} {
		if op != "" && op != logicalAnd && op != logicalOr {
			// The Sensor controller rejects the Sensor.
			return filterOutcome{}, fmt.Errorf("dependency %q: %s %q must be \"and\", \"or\" or empty", d.Name, field, op)
		}
	}
	or := d.FiltersLogicalOperator == logicalOr

	var errs, reasons []string
	expr := filterExprs(f.Exprs, f.ExprLogicalOperator, ev.Data)
	if expr.err != nil {
		if !or {
			return expr, nil
		}
		errs = append(errs, expr.err.Error())
	}
	data := filterData(f.Data, f.DataLogicalOperator, ev.Data)
	if data.err != nil {
		if !or {
			return data, nil
		}
		errs = append(errs, data.err.Error())
	}
	ctx := filterContext(f.Context, ev.Context)
	for _, o := range []filterOutcome{expr, data, ctx} {
		if !o.pass && o.reason != "" {
			reasons = append(reasons, o.reason)
		}
	}
	if or {
		pass := (f.Exprs != nil && expr.pass) || (f.Data != nil && data.pass) || (f.Context != nil && ctx.pass)
		out := filterOutcome{pass: pass}
		if len(errs) > 0 {
			out.err = errors.New(strings.Join(errs, " / "))
		}
		if !pass {
			out.reason = strings.Join(reasons, "; ")
			if out.reason == "" {
				out.reason = "filtersLogicalOperator is or, and no filter passed"
			}
		}
		return out, nil
	}
	if expr.pass && data.pass && ctx.pass {
		return filterOutcome{pass: true}, nil
	}
	return filterOutcome{reason: reasons[0]}, nil
}

// filterError formats an error as the Sensor does: "data filter error (...)".
func filterError(kind, format string, args ...any) error {
	return fmt.Errorf("%s filter error (%s)", kind, fmt.Sprintf(format, args...))
}

// filterData applies data filters as the Sensor does (see combineFilters).
func filterData(filters []dataFilter, operator string, data []byte) filterOutcome {
	if len(filters) == 0 || data == nil {
		return filterOutcome{pass: true}
	}
	return combineFilters("data", filters, operator, data, matchDataFilter)
}

// match is one filter's verdict: it matched, it does not count (an
// expression without fields), or it did not match, with the emulator's
// reason and, where the Sensor sees one, the filtering error.
type match struct {
	ok, skip bool
	reason   string
	err      error
}

// combineFilters applies filters of one kind ("data" or "expr") under their
// logical operator, as the Sensor does: with "and" (the default) a filter
// that cannot be evaluated (a missing path, a bad value) is a filtering
// error and a value that does not match a plain drop; with "or" the first
// match passes and the errors of the others are collected.
func combineFilters[F any](kind string, filters []F, operator string, data []byte, test func(F, []byte) match) filterOutcome {
	if !gjson.ValidBytes(data) {
		return filterOutcome{err: filterError(kind, "event data not valid JSON"), reason: kind + " filter: event data is not valid JSON"}
	}
	or := operator == logicalOr
	var errs, reasons []string
	for _, f := range filters {
		m := test(f, data)
		switch {
		case m.skip:
		case m.err != nil && !or:
			return filterOutcome{err: filterError(kind, "%s", m.err), reason: m.reason}
		case m.err != nil:
			errs = append(errs, m.err.Error())
			reasons = append(reasons, m.reason)
		case m.ok && or:
			return filterOutcome{pass: true}
		case !m.ok && !or:
			return filterOutcome{reason: m.reason}
		case !m.ok:
			reasons = append(reasons, m.reason)
		}
	}
	if !or {
		return filterOutcome{pass: true}
	}
	out := filterOutcome{reason: strings.Join(reasons, "; ")}
	if len(errs) > 0 {
		out.err = fmt.Errorf("%s filter errors [%s]", kind, strings.Join(errs, " / "))
	}
	return out
}

// matchDataFilter tests one data filter. The error is what the Sensor
// reports as a filtering error; the reason says, in the emulator's words,
// why the filter did not match.
func matchDataFilter(f dataFilter, data []byte) match {
	where := "data filter " + f.Path
	res := gjson.GetBytes(data, f.Path)
	if !res.Exists() {
		return match{reason: where + ": path does not exist in the event", err: fmt.Errorf("path '%s' does not exist", f.Path)}
	}
	if len(f.Value) == 0 {
		return match{reason: where + ": no values specified", err: errors.New("no values specified")}
	}
	if f.Template != "" {
		out, err := executeTemplate(f.Template, res.String())
		if err != nil {
			return match{reason: where + ": " + err.Error(), err: err}
		}
		res = gjson.Parse(strconv.Quote(out))
	}
	switch f.Type {
	case "bool":
		for _, v := range f.Value {
			want, err := strconv.ParseBool(v)
			if err != nil {
				return match{reason: fmt.Sprintf("%s: value %q is not a bool", where, v), err: err}
			}
			if want == res.Bool() {
				return match{ok: true}
			}
		}
		return match{reason: fmt.Sprintf("%s: %s is none of %v", where, res.Raw, f.Value)}
	case "number":
		for _, v := range f.Value {
			want, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return match{reason: fmt.Sprintf("%s: value %q is not a number", where, v), err: err}
			}
			if compareNumbers(res.Float(), want, f.Comparator) {
				return match{ok: true}
			}
		}
		return match{reason: fmt.Sprintf("%s: %s is not %s any of %v", where, res.Raw, comparatorText(f.Comparator), f.Value)}
	case "string":
		for _, v := range f.Value {
			re, err := regexp.Compile(v)
			if err != nil {
				return match{reason: fmt.Sprintf("%s: value %q is not a regular expression: %v", where, v, err), err: err}
			}
			// Argo matches the pattern anywhere in the value (no implicit
			// anchors), so "opened" also matches "reopened".
			matched := re.MatchString(res.String())
			switch f.Comparator {
			case "", "=":
				if matched {
					return match{ok: true}
				}
			case "!=":
				if !matched {
					return match{ok: true}
				}
			}
		}
		if f.Comparator == "!=" {
			return match{reason: fmt.Sprintf("%s: %q matches each of %q", where, res.String(), f.Value)}
		}
		return match{reason: fmt.Sprintf("%s: %q matches none of %q", where, res.String(), f.Value)}
	default:
		return match{reason: fmt.Sprintf("%s: unsupported type %q (want bool, number or string)", where, f.Type), err: fmt.Errorf("unsupported JSON type '%s'", f.Type)}
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

// filterExprs evaluates expression filters with govaluate, as the Sensor
// does (see combineFilters); each field's gjson path becomes a named
// parameter, and an expression without fields does not count. Unlike data
// filters, an empty list still goes through the logical operator.
func filterExprs(filters []exprFilter, operator string, data []byte) filterOutcome {
	if filters == nil || data == nil {
		return filterOutcome{pass: true}
	}
	return combineFilters("expr", filters, operator, data, matchExpr)
}

func matchExpr(f exprFilter, data []byte) match {
	where := fmt.Sprintf("expr filter %q", f.Expr)
	params := map[string]any{}
	for _, field := range f.Fields {
		res := gjson.GetBytes(data, field.Path)
		if !res.Exists() {
			err := fmt.Errorf("path '%s' does not exist", field.Path)
			return match{reason: where + ": " + err.Error(), err: err}
		}
		params[field.Name] = res.Value()
	}
	if len(params) == 0 {
		return match{skip: true}
	}
	e, err := govaluate.NewEvaluableExpression(f.Expr)
	if err != nil {
		return match{reason: where + ": " + err.Error(), err: err}
	}
	result, err := e.Evaluate(params)
	if err != nil {
		return match{reason: where + ": " + err.Error(), err: err}
	}
	if result != true {
		return match{reason: fmt.Sprintf("%s is false for %v", where, params)}
	}
	return match{ok: true}
}

func filterContext(want *EventContextFilter, got EventContext) filterOutcome {
	if want == nil {
		return filterOutcome{pass: true}
	}
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
			return filterOutcome{reason: r}
		}
	}
	return filterOutcome{pass: true}
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
