package migrate

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/Masterminds/sprig/v3"
)

// translatedTemplate is a WebhookTrigger template in Argo parameter form:
// either a plain dataKey (the template was a single field) or a dataTemplate
// over .Input.
type translatedTemplate struct {
	DataKey      string
	DataTemplate string
	// Fields lists the event fields the template reads, as gjson paths.
	Fields []string
}

// hasTemplate reports whether s contains a Go template action.
func hasTemplate(s string) bool { return strings.Contains(s, "{{") }

// translateTemplate rewrites a WebhookTrigger Go template, whose data was
// {body, headers}, into an Argo dataTemplate, whose data is {Input: event
// data}. It works on the parsed template (text/template/parse) rather than
// on the text, so that only real field references change, and nested
// with/range blocks, where dot is no longer the root, are left alone.
func translateTemplate(text string) (*translatedTemplate, error) {
	tpl, err := template.New("t").Funcs(sprig.FuncMap()).Parse(text)
	if err != nil {
		return nil, untranslatable("template %q does not parse with Argo's template functions (Go templates with sprig): %v", text, err)
	}
	if len(tpl.Templates()) > 1 {
		return nil, untranslatable("template %q defines named templates, which Argo's single dataTemplate cannot carry", text)
	}
	tr := &templateRewriter{}
	tr.list(tpl.Tree.Root, true)
	if tr.err != nil {
		return nil, tr.err
	}
	out := &translatedTemplate{Fields: tr.fields}
	if key, ok := singleField(tpl.Tree.Root); ok {
		out.DataKey = key
		return out, nil
	}
	if printsValues(tpl.Tree.Root, true) {
		// The rewritten actions call the helper; Argo parses the whole
		// dataTemplate as one template, so the definition travels with it.
		out.DataTemplate = plainValueDefinition + tpl.Tree.Root.String()
	} else {
		out.DataTemplate = tpl.Tree.Root.String()
	}
	return out, nil
}

// plainValue is a template, defined inside every dataTemplate that prints
// event values, that prints a JSON number the way GitHub wrote it. Argo
// hands a dataTemplate the event decoded into Go values, where every JSON
// number is a float64, which Go templates print in exponent form from a
// million on: pull request #1234567 would print as 1.234567e+06. toJson
// prints a float64 as JSON does (1234567, 2184467201, 0.5); any other value
// prints as before.
const (
	plainValue           = "kubeopencode.plain"
	plainValueDefinition = `{{define "` + plainValue + `"}}{{if kindIs "float64" .}}{{toJson .}}{{else}}{{.}}{{end}}{{end}}`
)

// printsValues rewrites, in place, every action that prints a value that
// may be a JSON number ({{ .Input.body.number }}, {{ index ... }}, {{ $x }},
// {{ default ... }}) into {{ template "kubeopencode.plain" ... }}, and
// reports whether it rewrote any. Actions whose last function returns text
// or an integer (printf, trunc, upper, toJson, add, ...) are left alone.
func printsValues(l *parse.ListNode, top bool) bool {
	if l == nil {
		return false
	}
	changed := false
	for i, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 || !mayPrintNumber(n.Pipe) {
				continue
			}
			l.Nodes[i] = &parse.TemplateNode{
				NodeType: parse.NodeTemplate, Pos: n.Pos, Line: n.Line,
				Name: plainValue, Pipe: n.Pipe,
			}
			changed = true
		case *parse.IfNode:
			changed = printsValues(n.List, false) || changed
			changed = printsValues(n.ElseList, false) || changed
		case *parse.WithNode:
			changed = printsValues(n.List, false) || changed
			changed = printsValues(n.ElseList, false) || changed
		case *parse.RangeNode:
			changed = printsValues(n.List, false) || changed
			changed = printsValues(n.ElseList, false) || changed
		}
	}
	return changed
}

// textOrIntegerFuncs return strings or integers, which print as they should.
var textOrIntegerFuncs = map[string]bool{
	"printf": true, "print": true, "println": true, "html": true, "js": true, "urlquery": true, "len": true,
	"trunc": true, "upper": true, "lower": true, "title": true, "untitle": true, "trim": true, "trimAll": true,
	"trimPrefix": true, "trimSuffix": true, "replace": true, "quote": true, "squote": true, "toJson": true,
	"toRawJson": true, "toPrettyJson": true, "b64enc": true, "b64dec": true, "join": true, "nospace": true,
	"abbrev": true, "substr": true, "repeat": true, "cat": true, "indent": true, "nindent": true,
	"int": true, "int64": true, "add": true, "add1": true, "sub": true, "mul": true, "div": true, "mod": true,
	"toString": true, "toStrings": true, "snakecase": true, "camelcase": true, "kebabcase": true,
	"sha256sum": true, "sha1sum": true, "regexReplaceAll": true, "regexReplaceAllLiteral": true,
	"regexFind": true, "wrap": true, "wrapWith": true, "date": true, "now": true, "toDate": true,
}

// textFields are GitHub payload fields that always hold text (or null),
// never a number; printing them needs no help.
var textFields = map[string]bool{
	"title": true, "body": true, "login": true, "ref": true, "sha": true, "before": true, "after": true,
	"html_url": true, "url": true, "clone_url": true, "ssh_url": true, "git_url": true, "full_name": true,
	"action": true, "state": true, "author_association": true, "node_id": true, "created_at": true,
	"updated_at": true, "default_branch": true, "description": true, "type": true, "name": true,
	"X-GitHub-Event": true, "X-GitHub-Delivery": true,
}

func mayPrintNumber(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) == 0 {
		return false
	}
	last := p.Cmds[len(p.Cmds)-1]
	if len(last.Args) == 0 {
		return false
	}
	switch a := last.Args[0].(type) {
	case *parse.IdentifierNode:
		if a.Ident == "index" && len(last.Args) >= 3 {
			if key, ok := last.Args[len(last.Args)-1].(*parse.StringNode); ok {
				return !textFields[key.Text]
			}
		}
		return !textOrIntegerFuncs[a.Ident]
	case *parse.FieldNode:
		return len(last.Args) > 1 || !textFields[a.Ident[len(a.Ident)-1]]
	case *parse.VariableNode:
		return len(last.Args) > 1 || len(a.Ident) < 2 || !textFields[a.Ident[len(a.Ident)-1]]
	case *parse.StringNode, *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
		return false
	}
	return true
}

// singleField reports whether the template is exactly "{{ .body.x.y }}",
// which Argo expresses more simply as dataKey body.x.y.
func singleField(root *parse.ListNode) (string, bool) {
	if len(root.Nodes) != 1 {
		return "", false
	}
	action, ok := root.Nodes[0].(*parse.ActionNode)
	if !ok || len(action.Pipe.Decl) > 0 || len(action.Pipe.Cmds) != 1 || len(action.Pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := action.Pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) < 2 || f.Ident[0] != "Input" || f.Ident[1] != "body" {
		return "", false
	}
	return gjsonPath(f.Ident[1:]), true
}

type templateRewriter struct {
	fields []string
	err    error
}

func (r *templateRewriter) fail(format string, args ...any) {
	if r.err == nil {
		r.err = untranslatable(format, args...)
	}
}

func (r *templateRewriter) list(l *parse.ListNode, rootDot bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		r.node(n, rootDot)
	}
}

func (r *templateRewriter) node(n parse.Node, rootDot bool) {
	switch n := n.(type) {
	case *parse.ActionNode:
		r.pipe(n.Pipe, rootDot)
	case *parse.IfNode:
		r.pipe(n.Pipe, rootDot)
		r.list(n.List, rootDot)
		r.list(n.ElseList, rootDot)
	case *parse.WithNode:
		r.pipe(n.Pipe, rootDot)
		r.list(n.List, false)
		r.list(n.ElseList, rootDot)
	case *parse.RangeNode:
		r.pipe(n.Pipe, rootDot)
		r.list(n.List, false)
		r.list(n.ElseList, rootDot)
	case *parse.TemplateNode:
		r.fail("template uses {{ template %q }}, which Argo's single dataTemplate cannot carry", n.Name)
	case *parse.PipeNode:
		r.pipe(n, rootDot)
	case *parse.CommandNode:
		r.command(n, rootDot)
	case *parse.FieldNode:
		if rootDot {
			n.Ident = r.root(n.Ident, n.String())
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			n.Ident = append([]string{"$"}, r.root(n.Ident[1:], n.String())...)
		}
	case *parse.ChainNode:
		r.node(n.Node, rootDot)
	case *parse.DotNode:
		if rootDot {
			r.fail("template uses {{ . }}, the whole event: name the fields it needs, such as .body.pull_request.title")
		}
	}
}

func (r *templateRewriter) pipe(p *parse.PipeNode, rootDot bool) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		r.command(c, rootDot)
	}
}

func (r *templateRewriter) command(c *parse.CommandNode, rootDot bool) {
	// index .headers "x-github-event" reads a header; the GitHub EventSource
	// copies the event type and delivery id into the body.
	if len(c.Args) == 3 {
		if id, ok := c.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" {
			if f, ok := c.Args[1].(*parse.FieldNode); ok && rootDot && len(f.Ident) == 1 && f.Ident[0] == "headers" {
				if s, ok := c.Args[2].(*parse.StringNode); ok {
					switch strings.ToLower(s.Text) {
					case eventTypeHeader:
						f.Ident = []string{"Input", "body"}
						s.Text, s.Quoted = "X-GitHub-Event", `"X-GitHub-Event"`
						r.fields = appendUnique(r.fields, eventTypePath)
						return
					case "x-github-delivery":
						f.Ident = []string{"Input", "body"}
						s.Text, s.Quoted = "X-GitHub-Delivery", `"X-GitHub-Delivery"`
						r.fields = appendUnique(r.fields, "body.X-GitHub-Delivery")
						return
					}
				}
			}
		}
	}
	for _, a := range c.Args {
		r.node(a, rootDot)
	}
}

// root maps a field chain that starts at the WebhookTrigger's data onto
// Argo's .Input.
func (r *templateRewriter) root(ident []string, text string) []string {
	if len(ident) == 0 {
		return ident
	}
	switch ident[0] {
	case "body":
		r.fields = appendUnique(r.fields, gjsonPath(ident))
		return append([]string{"Input"}, ident...)
	case "headers":
		r.fail("template reads %s: only index .headers \"x-github-event\" and \"x-github-delivery\" can be carried over; Argo keeps other headers as lists under .Input.headers", text)
	default:
		r.fail("template reads %s: WebhookTrigger templates see only .body and .headers", text)
	}
	return ident
}

// trustedFields are event fields whose values GitHub controls or
// constrains (numbers, hashes, URLs, login names, enumerations), so they
// may appear in a prompt outside an untrusted-content block.
var trustedFields = map[string]bool{
	"number": true, "id": true, "sha": true, "clone_url": true, "html_url": true, "url": true,
	"ssh_url": true, "git_url": true, "full_name": true, "login": true, "action": true,
	"author_association": true, "state": true, "draft": true, "merged": true, "type": true,
	"X-GitHub-Event": true, "X-GitHub-Delivery": true, "node_id": true, "created_at": true,
	"updated_at": true, "default_branch": true, "private": true, "visibility": true,
	"before": true, "after": true, "additions": true, "deletions": true, "changed_files": true, "pushed_at": true,
}

// untrustedFields returns the fields of a template that carry text written
// by whoever caused the event (titles, bodies, comments, branch names).
func untrustedFields(fields []string) []string {
	var out []string
	for _, f := range fields {
		segs := splitGJSON(f)
		if !trustedFields[segs[len(segs)-1]] {
			out = append(out, "."+f)
		}
	}
	return out
}

func describeTemplate(t *translatedTemplate) string {
	if t.DataKey != "" {
		return "dataKey " + t.DataKey
	}
	return fmt.Sprintf("dataTemplate over %s", strings.Join(t.Fields, ", "))
}
