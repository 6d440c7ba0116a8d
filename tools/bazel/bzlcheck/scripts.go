package main

import (
	"fmt"
	"path"
	"strings"
)

// CheckScripts reports every location expansion handed to a script (the
// args of an sh_binary, the command of a genrule) that can expand to a path
// without "/". bash looks such a word up on PATH when it runs it as a
// command ("push_controller_push.sh: command not found"), and a script cannot
// tell a relative file from a command name. $(rlocationpath ...) always
// holds a "/" (it starts with the repository name); a script resolves it
// against its runfiles directory.
func CheckScripts(ws *Workspace) []string {
	var problems []string
	for _, pkg := range sortedPackages(ws) {
		for _, r := range sortedRules(pkg) {
			var texts []string
			execpaths := false
			switch r.Kind {
			case "sh_binary", "sh_test":
				texts = r.Attrs["args"].Strings()
			case "genrule":
				texts = r.Attrs["cmd"].Strings()
				execpaths = true
			default:
				continue
			}
			for _, text := range texts {
				for _, m := range locationRE.FindAllStringSubmatch(text, -1) {
					fn, target := m[1], m[2]
					if strings.HasPrefix(fn, "rlocationpath") {
						continue
					}
					exec := strings.HasPrefix(fn, "execpath") || execpaths && strings.HasPrefix(fn, "location")
					l, err := ParseLabel(target, pkg.Path)
					if err != nil || l.Repo != "" {
						continue
					}
					paths, err := expansionPaths(ws, l, exec, map[Label]bool{})
					if err != nil {
						problems = append(problems, fmt.Sprintf("%s: %s %s: $(%s %s): %v", pkg.File, r.Kind, r.Name, fn, target, err))
						continue
					}
					for _, p := range paths {
						if !strings.Contains(p, "/") {
							problems = append(problems, fmt.Sprintf("%s: %s %s: $(%s %s) expands to %q, a path without \"/\" that bash would look up on PATH if run: pass $(rlocationpath %s) and resolve it against the runfiles directory",
								pkg.File, r.Kind, r.Name, fn, target, p, target))
						}
					}
				}
			}
		}
	}
	return problems
}

// expansionPaths returns the paths a location expansion of l gives, as the
// root-relative path ("rootpath") or, for exec, the execution-root path
// (generated files live under bazel-out/).
func expansionPaths(ws *Workspace, l Label, exec bool, seen map[Label]bool) ([]string, error) {
	if seen[l] {
		return nil, nil
	}
	seen[l] = true
	t, err := ws.Resolve(l)
	if err != nil {
		return nil, err
	}
	if t.File != "" {
		return []string{t.File}, nil
	}
	generated := func(name string) []string {
		p := path.Join(l.Pkg, name)
		if exec {
			p = path.Join("bazel-out/k8-fastbuild/bin", p)
		}
		return []string{p}
	}
	r := t.Rule
	if t.Output {
		return generated(l.Name), nil
	}
	if r.Name != l.Name {
		// rules_oci's "[name].digest" writes "[name].json.sha256".
		return generated(strings.TrimSuffix(l.Name, ".digest") + ".json.sha256"), nil
	}
	switch r.Kind {
	case "filegroup":
		var out []string
		for _, s := range r.Attrs["srcs"].Strings() {
			sub, err := ParseLabel(s, r.Pkg.Path)
			if err != nil || sub.Repo != "" {
				continue
			}
			p, err := expansionPaths(ws, sub, exec, seen)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
		}
		return out, nil
	case "go_binary", "kubeopencode_go_binary", "go_test":
		// rules_go writes <pkg>/<name>_/<name>.
		return generated(r.Name + "_/" + r.Name), nil
	case "oci_push":
		return generated("push_" + r.Name + ".sh"), nil
	}
	var outs []string
	for _, attr := range outputAttrs {
		outs = append(outs, r.Attrs[attr].Strings()...)
	}
	if len(outs) == 0 {
		outs = []string{r.Name}
	}
	var out []string
	for _, o := range outs {
		out = append(out, generated(o)...)
	}
	return out, nil
}
