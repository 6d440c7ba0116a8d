package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bazelbuild/buildtools/build"
)

// Workspace is the main repository as Bazel's loading phase sees it: its
// packages (directories with a BUILD file), their rules, exported files and
// default visibility, with globs expanded the way Bazel expands them.
type Workspace struct {
	Root     string
	Packages map[string]*Package // keyed by package path ("" is the root)
	// Problems found while loading: globs matching nothing, expressions
	// the loader cannot evaluate.
	Problems []string
}

// Package is one BUILD file.
type Package struct {
	Path              string // slash-separated, relative to the root
	File              string // the BUILD file, relative to the root
	DefaultVisibility []string
	Rules             map[string]*Rule
	// Exported maps a file name exported with exports_files to its visibility.
	Exported map[string][]string
	// Loads are the load() statements of the BUILD file.
	Loads []Load
}

// Load is one load() statement.
type Load struct {
	Module  string   // the .bzl label as written
	Symbols []string // the names it imports
	Line    int
}

// Rule is one target-declaring call (a rule or a macro) in a BUILD file.
type Rule struct {
	Pkg   *Package
	Kind  string
	Name  string
	Attrs map[string]Value
}

// Label returns the rule's label.
func (r *Rule) Label() Label { return Label{Pkg: r.Pkg.Path, Name: r.Name} }

// Tags returns the rule's tags.
func (r *Rule) Tags() []string { return r.Attrs["tags"].Strings() }

// HasTag says whether the rule carries the tag.
func (r *Rule) HasTag(tag string) bool {
	for _, t := range r.Tags() {
		if t == tag {
			return true
		}
	}
	return false
}

// Visibility is the rule's visibility, the package default when unset.
func (r *Rule) Visibility() []string {
	if v, ok := r.Attrs["visibility"]; ok {
		return v.Strings()
	}
	return r.Pkg.DefaultVisibility
}

// Value is an evaluated attribute: a string, a list of strings or a dict.
type Value struct {
	Str  *string
	List []string
	Dict map[string]string
}

// Strings returns the value as a list of strings.
func (v Value) Strings() []string {
	if v.Str != nil {
		return []string{*v.Str}
	}
	return v.List
}

// LoadWorkspace reads every BUILD file under root, skipping what Bazel
// skips: hidden directories, bazel-* convenience symlinks and directories
// excluded by a .bazelignore file.
func LoadWorkspace(root string) (*Workspace, error) {
	ws := &Workspace{Root: root, Packages: map[string]*Package{}}
	ignored := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(root, ".bazelignore")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ignored[strings.Trim(line, "/")] = true
			}
		}
	}
	var buildFiles []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "bazel-") || ignored[rel]) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "BUILD.bazel" || d.Name() == "BUILD" {
			// BUILD.bazel wins when both exist, as in Bazel.
			if d.Name() == "BUILD" {
				if _, err := os.Stat(filepath.Join(filepath.Dir(p), "BUILD.bazel")); err == nil {
					return nil
				}
			}
			buildFiles = append(buildFiles, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range buildFiles {
		pkg := path.Dir(f)
		if pkg == "." {
			pkg = ""
		}
		ws.Packages[pkg] = &Package{Path: pkg, File: f, Rules: map[string]*Rule{}, Exported: map[string][]string{}}
	}
	for _, f := range buildFiles {
		if err := ws.loadPackage(f); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

func (ws *Workspace) loadPackage(buildFile string) error {
	data, err := os.ReadFile(filepath.Join(ws.Root, filepath.FromSlash(buildFile)))
	if err != nil {
		return err
	}
	f, err := build.ParseBuild(buildFile, data)
	if err != nil {
		return err
	}
	pkgPath := path.Dir(buildFile)
	if pkgPath == "." {
		pkgPath = ""
	}
	pkg := ws.Packages[pkgPath]
	ev := &evaluator{ws: ws, pkg: pkg, vars: map[string]build.Expr{}}
	for _, stmt := range f.Stmt {
		switch stmt := stmt.(type) {
		case *build.AssignExpr:
			ev.vars[build.FormatString(stmt.LHS)] = stmt.RHS
		case *build.LoadStmt:
			ld := Load{Module: stmt.Module.Value, Line: lineOf(stmt)}
			for _, from := range stmt.From {
				ld.Symbols = append(ld.Symbols, from.Name)
			}
			pkg.Loads = append(pkg.Loads, ld)
		case *build.CallExpr:
			kind := build.FormatString(stmt.X)
			switch kind {
			case "package":
				for _, a := range stmt.List {
					if kw, ok := a.(*build.AssignExpr); ok && build.FormatString(kw.LHS) == "default_visibility" {
						pkg.DefaultVisibility = ev.eval(kw.RHS).Strings()
					}
				}
				continue
			case "exports_files":
				var files, vis []string
				vis = []string{"//visibility:public"}
				for i, a := range stmt.List {
					if kw, ok := a.(*build.AssignExpr); ok {
						if build.FormatString(kw.LHS) == "visibility" {
							vis = ev.eval(kw.RHS).Strings()
						}
					} else if i == 0 {
						files = ev.eval(a).Strings()
					}
				}
				for _, name := range files {
					pkg.Exported[name] = vis
				}
				continue
			}
			r := &Rule{Pkg: pkg, Kind: kind, Attrs: map[string]Value{}}
			for _, a := range stmt.List {
				if kw, ok := a.(*build.AssignExpr); ok {
					r.Attrs[build.FormatString(kw.LHS)] = ev.eval(kw.RHS)
				}
			}
			name := r.Attrs["name"]
			if name.Str == nil {
				continue // a macro call without a name declares no target we can know
			}
			r.Name = *name.Str
			pkg.Rules[r.Name] = r
		}
	}
	return nil
}

type evaluator struct {
	ws   *Workspace
	pkg  *Package
	vars map[string]build.Expr
}

func (ev *evaluator) problem(format string, args ...any) {
	ev.ws.Problems = append(ev.ws.Problems, fmt.Sprintf("%s: ", ev.pkg.File)+fmt.Sprintf(format, args...))
}

func str(s string) Value { return Value{Str: &s} }

// eval evaluates the literal subset of Starlark BUILD files use: strings,
// lists, dicts, "+", top-level constants, glob(), select() (every branch)
// and "sep".join(list).
func (ev *evaluator) eval(x build.Expr) Value {
	switch x := x.(type) {
	case *build.StringExpr:
		return str(x.Value)
	case *build.Ident:
		if x.Name == "True" || x.Name == "False" || x.Name == "None" {
			return Value{}
		}
		if v, ok := ev.vars[x.Name]; ok {
			return ev.eval(v)
		}
		ev.problem("line %d: %s is not defined in this file", x.NamePos.Line, x.Name)
		return Value{}
	case *build.LiteralExpr:
		return str(x.Token)
	case *build.ListExpr:
		var out []string
		for _, e := range x.List {
			out = append(out, ev.eval(e).Strings()...)
		}
		return Value{List: out}
	case *build.DictExpr:
		out := map[string]string{}
		for _, kv := range x.List {
			k, v := ev.eval(kv.Key), ev.eval(kv.Value)
			if k.Str != nil && v.Str != nil {
				out[*k.Str] = *v.Str
			}
		}
		return Value{Dict: out}
	case *build.BinaryExpr:
		l, r := ev.eval(x.X), ev.eval(x.Y)
		if x.Op == "+" {
			if l.Str != nil && r.Str != nil {
				return str(*l.Str + *r.Str)
			}
			if l.Dict != nil || r.Dict != nil {
				break
			}
			return Value{List: append(append([]string(nil), l.Strings()...), r.Strings()...)}
		}
	case *build.CallExpr:
		fn := build.FormatString(x.X)
		switch {
		case fn == "glob":
			return ev.glob(x)
		case fn == "select":
			var out []string
			if len(x.List) > 0 {
				if d, ok := x.List[0].(*build.DictExpr); ok {
					for _, kv := range d.List {
						out = append(out, ev.eval(kv.Value).Strings()...)
					}
				}
			}
			return Value{List: out}
		case strings.HasSuffix(fn, ".join"):
			if dot, ok := x.X.(*build.DotExpr); ok && len(x.List) == 1 {
				sep := ev.eval(dot.X)
				if sep.Str != nil {
					return str(strings.Join(ev.eval(x.List[0]).Strings(), *sep.Str))
				}
			}
		}
	}
	ev.problem("line %d: cannot evaluate %s", lineOf(x), build.FormatString(x))
	return Value{}
}

func lineOf(x build.Expr) int {
	start, _ := x.Span()
	return start.Line
}

// glob expands like Bazel: files only, never crossing into a subpackage,
// "**" matching any number of directories, excludes applied; an empty result
// is an error unless allow_empty = True (Bazel 8's default,
// --incompatible_disallow_empty_glob).
func (ev *evaluator) glob(call *build.CallExpr) Value {
	var include, exclude []string
	allowEmpty := false
	for i, a := range call.List {
		if kw, ok := a.(*build.AssignExpr); ok {
			switch build.FormatString(kw.LHS) {
			case "include":
				include = ev.eval(kw.RHS).Strings()
			case "exclude":
				exclude = ev.eval(kw.RHS).Strings()
			case "allow_empty":
				allowEmpty = build.FormatString(kw.RHS) == "True"
			}
			continue
		}
		switch i {
		case 0:
			include = ev.eval(a).Strings()
		case 1:
			exclude = ev.eval(a).Strings()
		}
	}
	files, err := ev.ws.PackageFiles(ev.pkg.Path)
	if err != nil {
		ev.problem("glob: %v", err)
		return Value{}
	}
	var out []string
	for _, f := range files {
		if matchAny(include, f) && !matchAny(exclude, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 && !allowEmpty {
		ev.problem("line %d: glob(%s) matches no file: Bazel 8 fails on an empty glob (add allow_empty = True or fix the pattern)", lineOf(call), strings.Join(include, ", "))
	}
	return Value{List: out}
}

func matchAny(patterns []string, f string) bool {
	for _, p := range patterns {
		if globMatch(strings.Split(p, "/"), strings.Split(f, "/")) {
			return true
		}
	}
	return false
}

func globMatch(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if globMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], name[0])
	return err == nil && ok && globMatch(pat[1:], name[1:])
}

// PackageFiles lists the files of a package relative to its directory,
// leaving out subpackages (directories with their own BUILD file).
func (ws *Workspace) PackageFiles(pkg string) ([]string, error) {
	dir := filepath.Join(ws.Root, filepath.FromSlash(pkg))
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if strings.HasPrefix(d.Name(), "bazel-") && pkg == "" || d.Name() == ".git" {
				return filepath.SkipDir
			}
			if _, sub := ws.Packages[path.Join(pkg, rel)]; sub {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "BUILD.bazel" || d.Name() == "BUILD" {
			// A package's own BUILD file is a file of the package too.
			out = append(out, rel)
			return nil
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Label is a parsed label of the main repository or of an external one.
type Label struct {
	Repo string // "" for the main repository
	Pkg  string
	Name string
}

func (l Label) String() string {
	s := "//" + l.Pkg + ":" + l.Name
	if l.Repo != "" {
		s = "@" + l.Repo + s
	}
	return s
}

// ParseLabel parses s relative to package pkg.
func ParseLabel(s, pkg string) (Label, error) {
	orig := s
	var l Label
	if strings.HasPrefix(s, "@") {
		s = strings.TrimLeft(s, "@")
		repo, rest, ok := strings.Cut(s, "//")
		if !ok {
			// "@repo" is "@repo//:repo".
			return Label{Repo: repo, Name: repo}, nil
		}
		l.Repo = repo
		s = "//" + rest
	}
	switch {
	case strings.HasPrefix(s, "//"):
		p, name, ok := strings.Cut(s[2:], ":")
		if !ok {
			name = path.Base(p)
		}
		l.Pkg, l.Name = p, name
	case strings.HasPrefix(s, ":"):
		l.Pkg, l.Name = pkg, s[1:]
	default:
		l.Pkg, l.Name = pkg, s
	}
	if l.Name == "" || strings.Contains(l.Pkg, ":") {
		return l, fmt.Errorf("%q is not a label", orig)
	}
	return l, nil
}

// Target is what a label of the main repository names.
type Target struct {
	Label Label
	// Rule is the rule, for a rule target.
	Rule *Rule
	// File is the source file (relative to the root), for a file target.
	File string
	// Output is set when the target is a file a rule generates.
	Output bool
	// Visibility of the target.
	Visibility []string
}

var errNoTarget = errors.New("no such target")

// implicitTargets are the targets macros declare besides their name, as the
// pinned rules define them (rules_oci oci/defs.bzl: "[name].digest").
var implicitTargets = map[string][]string{
	"oci_image":       {".digest"},
	"oci_image_index": {".digest"},
}

// outputAttrs are rule attributes that declare output files.
var outputAttrs = []string{"outs", "out"}

// Resolve finds the target a main-repository label names.
func (ws *Workspace) Resolve(l Label) (*Target, error) {
	pkg, ok := ws.Packages[l.Pkg]
	if !ok {
		return nil, fmt.Errorf("%s: no package %q (no BUILD file in %s/)", l, l.Pkg, l.Pkg)
	}
	if r, ok := pkg.Rules[l.Name]; ok {
		return &Target{Label: l, Rule: r, Visibility: r.Visibility()}, nil
	}
	for _, r := range pkg.Rules {
		for _, suffix := range implicitTargets[r.Kind] {
			if r.Name+suffix == l.Name {
				return &Target{Label: l, Rule: r, Visibility: r.Visibility()}, nil
			}
		}
		for _, attr := range outputAttrs {
			for _, out := range r.Attrs[attr].Strings() {
				if out == l.Name {
					return &Target{Label: l, Rule: r, Output: true, Visibility: r.Visibility()}, nil
				}
			}
		}
	}
	file := path.Join(l.Pkg, l.Name)
	if info, err := os.Stat(filepath.Join(ws.Root, filepath.FromSlash(file))); err == nil && !info.IsDir() {
		// The file must belong to this package, not to a subpackage.
		owner := ws.OwningPackage(file)
		if owner != l.Pkg {
			return nil, fmt.Errorf("%s: %s belongs to package //%s, not //%s", l, file, owner, l.Pkg)
		}
		// A file not named by exports_files is visible to its own package
		// only. (While --incompatible_no_implicit_file_export is off, Bazel
		// also lets the package's default_visibility apply; relying on that
		// breaks when the flag flips, so it does not count here.)
		vis := pkg.Exported[l.Name]
		return &Target{Label: l, File: file, Visibility: vis}, nil
	}
	return nil, fmt.Errorf("%s: %w: package //%s declares no rule %q and has no file %s", l, errNoTarget, l.Pkg, l.Name, file)
}

// OwningPackage is the package a file belongs to: the closest directory at
// or above it with a BUILD file.
func (ws *Workspace) OwningPackage(file string) string {
	dir := path.Dir(file)
	for {
		if dir == "." {
			dir = ""
		}
		if _, ok := ws.Packages[dir]; ok {
			return dir
		}
		if dir == "" {
			return ""
		}
		dir = path.Dir(dir)
	}
}

// Visible says whether a target with visibility vis in package owner may be
// used from package from.
func Visible(vis []string, owner, from string) bool {
	if owner == from {
		return true
	}
	for _, v := range vis {
		l, err := ParseLabel(v, owner)
		if err != nil || l.Repo != "" {
			continue
		}
		switch {
		case v == "//visibility:public":
			return true
		case l.Name == "__pkg__" && l.Pkg == from:
			return true
		case l.Name == "__subpackages__" && (l.Pkg == "" || from == l.Pkg || strings.HasPrefix(from, l.Pkg+"/")):
			return true
		}
	}
	return false
}
