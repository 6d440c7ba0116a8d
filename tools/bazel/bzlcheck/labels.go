package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/bazelbuild/buildtools/build"

	"github.com/kubeopencode/kubeopencode/tools/bazel/bzlmod"
)

// labelAttrs are the attributes that hold labels in the rules this
// repository uses (rules_go, rules_pkg, rules_oci, aspect_bazel_lib,
// rules_shell, native rules). Attributes that hold plain strings (name,
// importpath, args, cmd, outs, template lines, ...) are not listed.
var labelAttrs = []string{"srcs", "data", "deps", "embed", "tools", "tars", "image", "images", "base", "labels", "actual"}

// locationRE matches the location expansions of args, cmd and env.
var locationRE = regexp.MustCompile(`\$\((location|locations|rootpath|rootpaths|execpath|execpaths|rlocationpath|rlocationpaths)\s+([^)\s]+)\)`)

// GoRepoResolver answers for labels into the repositories go_deps creates.
type GoRepoResolver struct {
	Repos    map[string]bzlmod.GoRepo // by repository name
	Versions map[string]string        // go.mod version by module path
	// ModuleDir returns the directory of a Go module version.
	ModuleDir func(path, version string) (string, error)
	// RuleSetDir returns the source directory of a Bazel module that is
	// also a Go module (rules_go, gazelle) at its bazel_dep version; known
	// is false for other repositories.
	RuleSetDir func(repo string) (dir string, known bool, err error)
}

// CheckLabels reports every label of a BUILD file that names nothing, or
// names a target its user may not see, and every location expansion whose
// label is not a prerequisite of its rule: the failures of Bazel's loading
// and analysis phases.
func CheckLabels(ws *Workspace, goRepos *GoRepoResolver) []string {
	problems := append([]string(nil), ws.Problems...)
	for _, pkg := range sortedPackages(ws) {
		for _, ld := range pkg.Loads {
			if p := checkLoad(ws, goRepos, pkg, ld); p != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: load(%q): %s", pkg.File, ld.Line, ld.Module, p))
			}
		}
		for _, r := range sortedRules(pkg) {
			where := fmt.Sprintf("%s: %s %s", pkg.File, r.Kind, r.Name)
			declared := map[Label]bool{}
			for _, attr := range labelAttrs {
				for _, s := range r.Attrs[attr].Strings() {
					l, err := ParseLabel(s, pkg.Path)
					if err != nil {
						problems = append(problems, fmt.Sprintf("%s: %s: %v", where, attr, err))
						continue
					}
					declared[l] = true
					if p := checkLabel(ws, goRepos, l, pkg.Path); p != "" {
						problems = append(problems, fmt.Sprintf("%s: %s: %s", where, attr, p))
					}
				}
			}
			for _, attr := range []string{"args", "cmd", "env"} {
				v := r.Attrs[attr]
				texts := v.Strings()
				for _, val := range v.Dict {
					texts = append(texts, val)
				}
				for _, text := range texts {
					for _, m := range locationRE.FindAllStringSubmatch(text, -1) {
						l, err := ParseLabel(m[2], pkg.Path)
						if err != nil {
							problems = append(problems, fmt.Sprintf("%s: %s: %v", where, attr, err))
							continue
						}
						if !declared[l] {
							problems = append(problems, fmt.Sprintf("%s: %s: $(%s %s) names a label that is not in srcs, data, deps or tools: Bazel refuses it", where, attr, m[1], m[2]))
						}
					}
				}
			}
		}
	}
	return problems
}

// checkLoad returns why a load() of a BUILD file fails, or "": the .bzl
// file must exist (in its package) and define every symbol loaded, publicly.
// External .bzl files are checked where their source is known.
func checkLoad(ws *Workspace, goRepos *GoRepoResolver, pkg *Package, ld Load) string {
	l, err := ParseLabel(ld.Module, pkg.Path)
	if err != nil {
		return err.Error()
	}
	var file string
	if l.Repo == "" {
		if _, ok := ws.Packages[l.Pkg]; !ok {
			return fmt.Sprintf("no package //%s", l.Pkg)
		}
		file = filepath.Join(ws.Root, filepath.FromSlash(path.Join(l.Pkg, l.Name)))
	} else {
		if goRepos == nil || goRepos.RuleSetDir == nil {
			return ""
		}
		dir, known, err := goRepos.RuleSetDir(l.Repo)
		if err != nil {
			return err.Error()
		}
		if !known {
			return ""
		}
		file = filepath.Join(dir, filepath.FromSlash(path.Join(l.Pkg, l.Name)))
	}
	names, err := bzlNames(file)
	if err != nil {
		return err.Error()
	}
	var missing []string
	for _, sym := range ld.Symbols {
		if strings.HasPrefix(sym, "_") || !names[sym] {
			missing = append(missing, sym)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("%s does not define %s", l, strings.Join(missing, ", "))
	}
	return ""
}

// bzlNames lists the top-level names a .bzl file defines.
func bzlNames(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	f, err := build.ParseBzl(file, data)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, stmt := range f.Stmt {
		switch stmt := stmt.(type) {
		case *build.DefStmt:
			names[stmt.Name] = true
		case *build.AssignExpr:
			if id, ok := stmt.LHS.(*build.Ident); ok {
				names[id.Name] = true
			}
		case *build.LoadStmt:
			for _, to := range stmt.To {
				names[to.Name] = true
			}
		}
	}
	return names, nil
}

// checkLabel returns why l cannot be used from package from, or "".
func checkLabel(ws *Workspace, goRepos *GoRepoResolver, l Label, from string) string {
	if l.Repo != "" {
		if goRepos == nil {
			return ""
		}
		return goRepos.check(l)
	}
	t, err := ws.Resolve(l)
	if err != nil {
		return err.Error()
	}
	if !Visible(t.Visibility, l.Pkg, from) {
		what := "rule"
		fix := "add //" + from + ":__pkg__ to its visibility"
		if t.File != "" {
			what = "file"
			fix = fmt.Sprintf("export it with exports_files([%q], visibility = [\"//%s:__pkg__\"]) in //%s", l.Name, from, l.Pkg)
		}
		return fmt.Sprintf("%s %s is not visible to //%s: %s", what, l, from, fix)
	}
	return ""
}

// check verifies a label into a go_deps repository. Only what can be known
// without Bazel is checked: the package directory exists in the module at
// the go.mod version, and the target name is one the repository has — from
// the module's own BUILD file when go_deps keeps it (a root BUILD file and
// build_file_generation "auto"), or else by the naming convention Gazelle
// generates the repository with.
func (g *GoRepoResolver) check(l Label) string {
	repo, ok := g.Repos[l.Repo]
	if !ok {
		return "" // not a go_deps repository: rules, toolchains, pulled images
	}
	dir, err := g.ModuleDir(repo.ModulePath, g.Versions[repo.ModulePath])
	if err != nil {
		return err.Error()
	}
	pkgDir := filepath.Join(dir, filepath.FromSlash(l.Pkg))
	if info, err := os.Stat(pkgDir); err != nil || !info.IsDir() {
		return fmt.Sprintf("%s: %s@%s has no directory %q", l, repo.ModulePath, g.Versions[repo.ModulePath], l.Pkg)
	}
	ownBuild := repo.BuildFileGeneration == "auto" && (exists(filepath.Join(dir, "BUILD.bazel")) || exists(filepath.Join(dir, "BUILD")))
	if repo.BuildFileGeneration == "off" {
		ownBuild = true
	}
	if ownBuild {
		names, err := ruleNames(pkgDir)
		if err != nil {
			return fmt.Sprintf("%s: %s keeps its own BUILD files, and %v", l, repo.ModulePath, err)
		}
		if !names[l.Name] {
			var have []string
			for n := range names {
				have = append(have, ":"+n)
			}
			sort.Strings(have)
			return fmt.Sprintf("%s: %s keeps its own BUILD files (go_deps does not run Gazelle there), and %s declares no %q; it has %s",
				l, repo.ModulePath, path.Join(l.Pkg, "BUILD.bazel"), l.Name, strings.Join(have, ", "))
		}
		return ""
	}
	importPath := path.Join(repo.ModulePath, l.Pkg)
	importName := importNameOf(importPath)
	switch repo.NamingConvention {
	case "go_default_library":
		if l.Name != "go_default_library" {
			return fmt.Sprintf("%s: go_deps generates %s with go_naming_convention go_default_library: the library is :go_default_library", l, repo.ModulePath)
		}
	case "import":
		if l.Name != importName {
			return fmt.Sprintf("%s: go_deps generates %s with go_naming_convention import: the library is :%s", l, repo.ModulePath, importName)
		}
	default: // import_alias: both names exist
		if l.Name != importName && l.Name != "go_default_library" {
			return fmt.Sprintf("%s: the library Gazelle generates for %s is :%s", l, importPath, importName)
		}
	}
	return ""
}

// importNameOf is the library name Gazelle's import convention gives an
// import path: its last element, or the one before a major version suffix.
func importNameOf(importPath string) string {
	base := path.Base(importPath)
	if regexp.MustCompile(`^v[0-9]+$`).MatchString(base) && path.Dir(importPath) != "." {
		base = path.Base(path.Dir(importPath))
	}
	return strings.ReplaceAll(base, ".", "_")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ruleNames lists the names declared in the BUILD file of a directory.
func ruleNames(dir string) (map[string]bool, error) {
	for _, name := range []string{"BUILD.bazel", "BUILD"} {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f, err := build.ParseBuild(p, data)
		if err != nil {
			return nil, err
		}
		names := map[string]bool{}
		for _, r := range f.Rules("") {
			if n := r.Name(); n != "" {
				names[n] = true
			}
		}
		return names, nil
	}
	return nil, fmt.Errorf("%s has no BUILD file", dir)
}

func sortedPackages(ws *Workspace) []*Package {
	var out []*Package
	for _, p := range ws.Packages {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func sortedRules(p *Package) []*Rule {
	var out []*Rule
	for _, r := range p.Rules {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
