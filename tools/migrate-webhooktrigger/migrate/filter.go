package migrate

import (
	"fmt"
	"net/textproto"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/parser"
)

// GitHub's event type: the EventSource copies this header into the body as
// a plain string, which is easier to filter on than the header list.
const (
	eventTypeHeader = "x-github-event"
	eventTypePath   = "body.X-GitHub-Event"
)

// maxClauses bounds the disjunctive normal form a filter may expand to.
const maxClauses = 16

// atom is one comparison of an event field with constants.
type atom struct {
	path    []string // gjson path segments into the event data
	op      string   // ==, !=, <, <=, >, >=, in, startsWith, endsWith, contains, matches, has
	values  []any    // string, int64, uint64, float64 or bool
	negated bool
	text    string // the original CEL, for messages
}

func (a atom) gjsonPath() string { return gjsonPath(a.path) }

// isEventType reports whether the atom tests GitHub's event type.
func (a atom) isEventType() bool { return a.gjsonPath() == eventTypePath }

type clause []atom

// translatedFilter is the Argo form of a WebhookTrigger rule filter: one
// list of data filters per alternative. A filter without || (or whose ||
// only lists values of one field) has one alternative; otherwise each
// alternative becomes its own Sensor dependency.
type translatedFilter struct {
	Alternatives [][]map[string]any
	EventTypes   []string
	Warnings     []string
}

// TranslationError says why a filter cannot become an Argo filter.
type TranslationError struct{ Reason string }

func (e *TranslationError) Error() string { return e.Reason }

func untranslatable(format string, args ...any) error {
	return &TranslationError{Reason: fmt.Sprintf(format, args...)}
}

// translateFilter turns a WebhookTrigger filter, a CEL expression over
// headers (lower-case names) and body, into Argo dependency filters.
// Comparisons become data filters; a disjunction of one field's equalities
// becomes one data filter with several values; any other disjunction is
// split into alternatives, each a conjunction of data filters. Data filters
// are used rather than one filters.exprs expression because Argo fails an
// expression when any field it names is missing from the event, which would
// break "a || b" whenever a and b concern differently shaped events.
func translateFilter(filter string) (*translatedFilter, error) {
	out := &translatedFilter{}
	if strings.TrimSpace(filter) == "" {
		return out, nil
	}
	p, err := parser.NewParser(parser.Macros(parser.AllMacros...))
	if err != nil {
		return nil, err
	}
	tree, errs := p.Parse(common.NewTextSource(filter))
	if len(errs.GetErrors()) > 0 {
		return nil, untranslatable("filter is not valid CEL: %s", strings.TrimSpace(errs.ToDisplayString()))
	}
	t := &translator{src: filter, info: tree.SourceInfo()}
	dnf, err := t.dnf(tree.Expr(), false)
	if err != nil {
		return nil, err
	}
	for _, c := range dnf {
		for _, a := range c {
			if a.isEventType() && !a.negated && (a.op == "==" || a.op == "in") {
				for _, v := range a.values {
					out.EventTypes = appendUnique(out.EventTypes, fmt.Sprint(v))
				}
			}
		}
	}
	sort.Strings(out.EventTypes)

	if common, merged, ok := mergeAlternatives(dnf); ok {
		dnf = []clause{append(common, merged)}
	}
	for _, c := range dnf {
		var filters []map[string]any
		for _, a := range c {
			fs, err := dataFilters(a)
			if err != nil {
				return nil, err
			}
			filters = append(filters, fs...)
		}
		out.Alternatives = append(out.Alternatives, filters)
	}
	if len(dnf) > 1 && !disjoint(dnf) {
		out.Warnings = append(out.Warnings, "the filter's alternatives (||) became separate dependencies; a delivery that matches more than one of them runs the trigger once per match, so more than one Task is created")
	}
	return out, nil
}

// disjoint reports whether no event can satisfy two clauses: each clause
// requires a different GitHub event type.
func disjoint(dnf []clause) bool {
	seen := map[string]bool{}
	for _, c := range dnf {
		typ := ""
		for _, a := range c {
			if a.isEventType() && a.op == "==" && !a.negated {
				typ = fmt.Sprint(a.values[0])
			}
		}
		if typ == "" || seen[typ] {
			return false
		}
		seen[typ] = true
	}
	return true
}

type translator struct {
	src  string
	info *ast.SourceInfo
}

// text renders an expression back to CEL, for messages.
func (t *translator) text(e ast.Expr) string {
	s, err := parser.Unparse(e, t.info)
	if err != nil {
		return t.src
	}
	return s
}

// dnf converts an expression into a disjunction of conjunctions of atoms,
// pushing negation down to the atoms.
func (t *translator) dnf(e ast.Expr, negate bool) ([]clause, error) {
	if e.Kind() == ast.CallKind {
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.LogicalNot:
			return t.dnf(c.Args()[0], !negate)
		case operators.LogicalAnd, operators.LogicalOr:
			and := c.FunctionName() == operators.LogicalAnd
			if negate {
				and = !and // De Morgan
			}
			var parts [][]clause
			for _, arg := range c.Args() {
				d, err := t.dnf(arg, negate)
				if err != nil {
					return nil, err
				}
				parts = append(parts, d)
			}
			var result []clause
			if and {
				result = []clause{{}}
				for _, p := range parts {
					var next []clause
					for _, left := range result {
						for _, right := range p {
							next = append(next, append(append(clause{}, left...), right...))
						}
					}
					result = next
				}
			} else {
				for _, p := range parts {
					result = append(result, p...)
				}
			}
			if len(result) > maxClauses {
				return nil, untranslatable("%q expands to %d alternatives; split the rule into several rules", t.text(e), len(result))
			}
			return result, nil
		}
	}
	a, err := t.atom(e)
	if err != nil {
		return nil, err
	}
	if negate {
		a, err = negateAtom(a)
		if err != nil {
			return nil, err
		}
	}
	return []clause{{a}}, nil
}

var comparisons = map[string]string{
	operators.Equals:        "==",
	operators.NotEquals:     "!=",
	operators.Less:          "<",
	operators.LessEquals:    "<=",
	operators.Greater:       ">",
	operators.GreaterEquals: ">=",
}

var mirrored = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func (t *translator) atom(e ast.Expr) (atom, error) {
	text := t.text(e)
	switch e.Kind() {
	case ast.SelectKind:
		if s := e.AsSelect(); s.IsTestOnly() {
			path, err := t.field(s.Operand())
			if err != nil {
				return atom{}, err
			}
			return atom{path: append(path, s.FieldName()), op: "has", text: text}, nil
		}
		// A bare field is a boolean test: body.pull_request.draft.
		path, err := t.field(e)
		if err != nil {
			return atom{}, err
		}
		return atom{path: path, op: "==", values: []any{true}, text: text}, nil
	case ast.CallKind:
		c := e.AsCall()
		if op, ok := comparisons[c.FunctionName()]; ok {
			left, right := c.Args()[0], c.Args()[1]
			if path, err := t.field(left); err == nil {
				v, err := t.literal(right, text)
				if err != nil {
					return atom{}, err
				}
				return atom{path: path, op: op, values: []any{v}, text: text}, nil
			}
			if path, err := t.field(right); err == nil {
				v, err := t.literal(left, text)
				if err != nil {
					return atom{}, err
				}
				return atom{path: path, op: mirrored[op], values: []any{v}, text: text}, nil
			}
			for _, side := range []ast.Expr{left, right} {
				if k := side.Kind(); k == ast.SelectKind || k == ast.IdentKind {
					if _, err := t.field(side); err != nil {
						return atom{}, err
					}
				}
				if side.Kind() == ast.CallKind && side.AsCall().FunctionName() != operators.Index {
					return atom{}, untranslatable("%q uses %s, which has no Argo filter equivalent", text, displayFunction(side.AsCall().FunctionName()))
				}
			}
			return atom{}, untranslatable("%q compares no event field with a constant: Argo filters compare one field with constants", text)
		}
		if c.FunctionName() == operators.In {
			path, err := t.field(c.Args()[0])
			if err != nil {
				return atom{}, untranslatable("%q: the left side of in must be an event field", text)
			}
			list := c.Args()[1]
			if list.Kind() != ast.ListKind {
				return atom{}, untranslatable("%q: the right side of in must be a list of constants", text)
			}
			var values []any
			for _, el := range list.AsList().Elements() {
				v, err := t.literal(el, text)
				if err != nil {
					return atom{}, err
				}
				values = append(values, v)
			}
			if len(values) == 0 {
				return atom{}, untranslatable("%q: the list is empty, so the rule never matches", text)
			}
			return atom{path: path, op: "in", values: values, text: text}, nil
		}
		switch c.FunctionName() {
		case "startsWith", "endsWith", "contains", "matches":
			if !c.IsMemberFunction() || len(c.Args()) != 1 {
				break
			}
			path, err := t.field(c.Target())
			if err != nil {
				return atom{}, err
			}
			v, err := t.literal(c.Args()[0], text)
			if err != nil {
				return atom{}, err
			}
			s, ok := v.(string)
			if !ok {
				return atom{}, untranslatable("%q: %s needs a string", text, c.FunctionName())
			}
			if c.FunctionName() == "matches" {
				if _, err := regexp.Compile(s); err != nil {
					return atom{}, untranslatable("%q: %v", text, err)
				}
			}
			return atom{path: path, op: c.FunctionName(), values: []any{s}, text: text}, nil
		}
		return atom{}, untranslatable("%q uses %s, which has no Argo filter equivalent", text, displayFunction(c.FunctionName()))
	}
	return atom{}, untranslatable("%q is not a comparison of an event field with constants", text)
}

func displayFunction(name string) string {
	if d, ok := operators.FindReverse(name); ok {
		return fmt.Sprintf("the %s operator", d)
	}
	return name + "()"
}

// field resolves body.a.b, body["a"].b and headers["name"] to a gjson path.
func (t *translator) field(e ast.Expr) ([]string, error) {
	switch e.Kind() {
	case ast.IdentKind:
		switch e.AsIdent() {
		case "body":
			return []string{"body"}, nil
		case "headers":
			return nil, untranslatable("%q: use a single header, such as headers[\"x-github-event\"]", t.text(e))
		}
		return nil, untranslatable("%q: only body and headers can be filtered on", t.text(e))
	case ast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			break
		}
		base, err := t.field(s.Operand())
		if err != nil {
			return nil, err
		}
		return append(base, s.FieldName()), nil
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index {
			break
		}
		key, err := t.literal(c.Args()[1], t.text(e))
		if err != nil {
			return nil, err
		}
		if c.Args()[0].Kind() == ast.IdentKind && c.Args()[0].AsIdent() == "headers" {
			name, ok := key.(string)
			if !ok {
				return nil, untranslatable("%q: header names are strings", t.text(e))
			}
			if strings.EqualFold(name, eventTypeHeader) {
				return []string{"body", "X-GitHub-Event"}, nil
			}
			if strings.EqualFold(name, "x-github-delivery") {
				return []string{"body", "X-GitHub-Delivery"}, nil
			}
			// The EventSource keeps each header as a list of values under
			// its canonical name; the first value is what a filter wants.
			return []string{"headers", textproto.CanonicalMIMEHeaderKey(name), "0"}, nil
		}
		base, err := t.field(c.Args()[0])
		if err != nil {
			return nil, err
		}
		return append(base, fmt.Sprint(key)), nil
	}
	return nil, untranslatable("%q is not an event field", t.text(e))
}

func (t *translator) literal(e ast.Expr, context string) (any, error) {
	if e.Kind() != ast.LiteralKind {
		return nil, untranslatable("%q: %q is not a constant; Argo filters compare a field with constants", context, t.text(e))
	}
	switch v := e.AsLiteral().(type) {
	case types.String:
		return string(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		return uint64(v), nil
	case types.Double:
		return float64(v), nil
	case types.Bool:
		return bool(v), nil
	}
	return nil, untranslatable("%q: constant %q has a type Argo filters cannot compare", context, t.text(e))
}

func negateAtom(a atom) (atom, error) {
	switch a.op {
	case "has":
		return atom{}, untranslatable("%q negated: Argo filters cannot test that a field is absent", a.text)
	case "<":
		a.op = ">="
	case "<=":
		a.op = ">"
	case ">":
		a.op = "<="
	case ">=":
		a.op = "<"
	case "==":
		a.op = "!="
	case "!=":
		a.op = "=="
	default:
		a.negated = !a.negated
	}
	return a, nil
}

// dataFilters renders an atom as Argo data filters (several when a negated
// list must exclude each value).
func dataFilters(a atom) ([]map[string]any, error) {
	path := a.gjsonPath()
	filter := func(typ string, values []string, comparator string) map[string]any {
		f := map[string]any{"path": path, "type": typ, "value": toAnySlice(values)}
		if comparator != "" && comparator != "=" {
			f["comparator"] = comparator
		}
		return f
	}
	switch a.op {
	case "has":
		// Argo drops an event whose filter path is missing: any value passes.
		return []map[string]any{filter("string", []string{".*"}, "")}, nil
	case "startsWith", "endsWith", "contains", "matches":
		re := a.values[0].(string)
		switch a.op {
		case "startsWith":
			re = "^" + regexp.QuoteMeta(re)
		case "endsWith":
			re = regexp.QuoteMeta(re) + "$"
		case "contains":
			re = regexp.QuoteMeta(re)
		}
		comparator := ""
		if a.negated {
			comparator = "!="
		}
		return []map[string]any{filter("string", []string{re}, comparator)}, nil
	case "==", "!=", "in":
		typ, values, err := typedValues(a)
		if err != nil {
			return nil, err
		}
		exclude := a.op == "!=" || (a.op == "in" && a.negated)
		if typ == "bool" {
			// Bool filters have no comparator: exclude by listing the other value.
			if exclude {
				var keep []string
				for _, b := range []string{"true", "false"} {
					if !contains(values, b) {
						keep = append(keep, b)
					}
				}
				if len(keep) == 0 {
					return nil, untranslatable("%q excludes both true and false", a.text)
				}
				values = keep
			}
			return []map[string]any{filter("bool", values, "")}, nil
		}
		if !exclude {
			return []map[string]any{filter(typ, values, "")}, nil
		}
		// Argo's != passes when the field differs from ANY of the values, so
		// excluding several values takes one filter per value.
		var out []map[string]any
		for _, v := range values {
			out = append(out, filter(typ, []string{v}, "!="))
		}
		return out, nil
	case "<", "<=", ">", ">=":
		typ, values, err := typedValues(a)
		if err != nil {
			return nil, err
		}
		if typ != "number" {
			return nil, untranslatable("%q: Argo compares only numbers with %s", a.text, a.op)
		}
		return []map[string]any{filter(typ, values, a.op)}, nil
	}
	return nil, untranslatable("%q cannot be translated", a.text)
}

// typedValues returns the Argo type of an atom's constants and the values
// as Argo expects them: anchored, escaped regular expressions for strings.
func typedValues(a atom) (string, []string, error) {
	typ := ""
	var values []string
	for _, v := range a.values {
		var t, s string
		switch x := v.(type) {
		case string:
			t, s = "string", "^"+regexp.QuoteMeta(x)+"$"
		case bool:
			t, s = "bool", strconv.FormatBool(x)
		case int64:
			t, s = "number", strconv.FormatInt(x, 10)
		case uint64:
			t, s = "number", strconv.FormatUint(x, 10)
		case float64:
			t, s = "number", strconv.FormatFloat(x, 'g', -1, 64)
		}
		if typ != "" && t != typ {
			return "", nil, untranslatable("%q mixes %s and %s constants", a.text, typ, t)
		}
		typ = t
		values = append(values, s)
	}
	return typ, values, nil
}

// mergeAlternatives recognises (C && x == a) || (C && x == b) || ... and
// returns C and the atom x in [a, b, ...].
func mergeAlternatives(dnf []clause) ([]atom, atom, bool) {
	key := func(a atom) string { return fmt.Sprintf("%v|%s|%v|%v", a.path, a.op, a.values, a.negated) }
	counts := map[string]int{}
	for _, c := range dnf {
		seen := map[string]bool{}
		for _, a := range c {
			if k := key(a); !seen[k] {
				seen[k] = true
				counts[k]++
			}
		}
	}
	var common []atom
	var rest []atom
	for i, c := range dnf {
		var own []atom
		for _, a := range c {
			if counts[key(a)] == len(dnf) {
				if i == 0 {
					common = append(common, a)
				}
				continue
			}
			own = append(own, a)
		}
		if len(own) != 1 {
			return nil, atom{}, false
		}
		rest = append(rest, own[0])
	}
	merged := atom{path: rest[0].path, op: "in"}
	var texts []string
	for _, a := range rest {
		if a.negated || (a.op != "==" && a.op != "in") || a.gjsonPath() != merged.gjsonPath() {
			return nil, atom{}, false
		}
		merged.values = append(merged.values, a.values...)
		texts = append(texts, a.text)
	}
	merged.text = strings.Join(texts, " || ")
	if _, _, err := typedValues(merged); err != nil {
		return nil, atom{}, false
	}
	return common, merged, true
}

// gjsonPath joins path segments, escaping the characters gjson treats as
// syntax so that a key such as "kubeopencode.io/x" stays one segment.
func gjsonPath(segs []string) string {
	esc := strings.NewReplacer(`\`, `\\`, `.`, `\.`, `*`, `\*`, `?`, `\?`, `|`, `\|`, `#`, `\#`, `@`, `\@`, `!`, `\!`, `=`, `\=`, `<`, `\<`, `>`, `\>`, `%`, `\%`, `:`, `\:`)
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = esc.Replace(s)
	}
	return strings.Join(out, ".")
}

func splitGJSON(path string) []string {
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\' && i+1 < len(path):
			i++
			cur.WriteByte(path[i])
		case path[i] == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(path[i])
		}
	}
	return append(segs, cur.String())
}

func appendUnique(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func toAnySlice(values []string) []any {
	out := make([]any, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}
