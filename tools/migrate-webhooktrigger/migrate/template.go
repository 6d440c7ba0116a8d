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
	out.DataTemplate = tpl.Tree.Root.String()
	return out, nil
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
	"before": true, "after": true, "additions": true, "deletions": true, "changed_files": true,
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
