// Package bzlmod reads what Bazel's module system would make of this
// repository without running Bazel: the bazel_dep versions of MODULE.bazel,
// and the Go repositories the go_deps extension of the pinned Gazelle creates
// for go.mod — their names, the library naming convention of each and
// whether Gazelle generates their BUILD files or the module's own are used.
//
// Gazelle's per-module defaults are read from the source of the very Gazelle
// version MODULE.bazel pins (internal/bzlmod/default_gazelle_overrides.bzl),
// fetched as a Go module, so a Gazelle upgrade brings its new defaults along.
package bzlmod

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bazelbuild/buildtools/build"
)

// GazelleModule is the Go module of Gazelle; its Bazel module is "gazelle".
const GazelleModule = "github.com/bazelbuild/bazel-gazelle"

// Module is what MODULE.bazel declares, as far as these checks need it.
type Module struct {
	// Deps maps a bazel_dep name to its version.
	Deps map[string]string
	// GoDeps is the go_deps configuration of the root module.
	GoDeps GoDepsConfig
}

// GazelleOverride is one go_deps.gazelle_override tag (or the
// gazelle_default_attributes tag).
type GazelleOverride struct {
	Directives          []string
	BuildFileGeneration string
}

// GoDepsConfig holds the root module's go_deps tags that change repositories.
type GoDepsConfig struct {
	// GazelleOverrides maps a Go module path to its gazelle_override tag.
	GazelleOverrides map[string]GazelleOverride
	// DefaultAttributes is the gazelle_default_attributes tag, if any.
	DefaultAttributes *GazelleOverride
	// RepoNames maps a Go module path to the repo_name of its module_override.
	RepoNames map[string]string
}

// ReadModule parses a MODULE.bazel file.
func ReadModule(path string) (*Module, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := build.ParseModule(path, data)
	if err != nil {
		return nil, err
	}
	m := &Module{
		Deps: map[string]string{},
		GoDeps: GoDepsConfig{
			GazelleOverrides: map[string]GazelleOverride{},
			RepoNames:        map[string]string{},
		},
	}
	goDeps := map[string]bool{} // names bound to use_extension(..., "go_deps")
	for _, stmt := range f.Stmt {
		if a, ok := stmt.(*build.AssignExpr); ok {
			if call, ok := a.RHS.(*build.CallExpr); ok && build.FormatString(call.X) == "use_extension" &&
				len(call.List) >= 2 && stringValue(call.List[1]) == "go_deps" {
				goDeps[build.FormatString(a.LHS)] = true
			}
			continue
		}
		call, ok := stmt.(*build.CallExpr)
		if !ok {
			continue
		}
		fn := build.FormatString(call.X)
		switch {
		case fn == "bazel_dep":
			m.Deps[stringValue(kwarg(call, "name"))] = stringValue(kwarg(call, "version"))
		case strings.Contains(fn, "."):
			recv, tag, _ := strings.Cut(fn, ".")
			if !goDeps[recv] {
				continue
			}
			switch tag {
			case "gazelle_override":
				m.GoDeps.GazelleOverrides[stringValue(kwarg(call, "path"))] = GazelleOverride{
					Directives:          stringList(kwarg(call, "directives")),
					BuildFileGeneration: stringValue(kwarg(call, "build_file_generation")),
				}
			case "gazelle_default_attributes":
				m.GoDeps.DefaultAttributes = &GazelleOverride{
					Directives:          stringList(kwarg(call, "directives")),
					BuildFileGeneration: stringValue(kwarg(call, "build_file_generation")),
				}
			case "module_override":
				if name := stringValue(kwarg(call, "repo_name")); name != "" {
					m.GoDeps.RepoNames[stringValue(kwarg(call, "path"))] = name
				}
			}
		}
	}
	return m, nil
}

func kwarg(call *build.CallExpr, name string) build.Expr {
	for _, arg := range call.List {
		if a, ok := arg.(*build.AssignExpr); ok && build.FormatString(a.LHS) == name {
			return a.RHS
		}
	}
	return nil
}

func stringValue(x build.Expr) string {
	if s, ok := x.(*build.StringExpr); ok {
		return s.Value
	}
	return ""
}

func stringList(x build.Expr) []string {
	l, ok := x.(*build.ListExpr)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range l.List {
		out = append(out, stringValue(e))
	}
	return out
}

// GazelleDefaults are the per-module defaults go_deps applies
// (DEFAULT_DIRECTIVES_BY_PATH and DEFAULT_BUILD_FILE_GENERATION_BY_PATH).
type GazelleDefaults struct {
	Directives          map[string][]string
	BuildFileGeneration map[string]string
}

// ParseGazelleDefaults reads default_gazelle_overrides.bzl.
func ParseGazelleDefaults(path string, data []byte) (*GazelleDefaults, error) {
	f, err := build.ParseBzl(path, data)
	if err != nil {
		return nil, err
	}
	d := &GazelleDefaults{Directives: map[string][]string{}, BuildFileGeneration: map[string]string{}}
	found := 0
	for _, stmt := range f.Stmt {
		a, ok := stmt.(*build.AssignExpr)
		if !ok {
			continue
		}
		dict, ok := a.RHS.(*build.DictExpr)
		if !ok {
			continue
		}
		switch build.FormatString(a.LHS) {
		case "DEFAULT_DIRECTIVES_BY_PATH":
			found++
			for _, kv := range dict.List {
				d.Directives[stringValue(kv.Key)] = stringList(kv.Value)
			}
		case "DEFAULT_BUILD_FILE_GENERATION_BY_PATH":
			found++
			for _, kv := range dict.List {
				d.BuildFileGeneration[stringValue(kv.Key)] = stringValue(kv.Value)
			}
		}
	}
	if found != 2 {
		return nil, fmt.Errorf("%s: DEFAULT_DIRECTIVES_BY_PATH or DEFAULT_BUILD_FILE_GENERATION_BY_PATH not found: has Gazelle moved its defaults?", path)
	}
	return d, nil
}

// GoModuleDir downloads a Go module through the module proxy (or finds it in
// the module cache) and returns its directory.
func GoModuleDir(path, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", path+"@"+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Outside any module, so that no go.mod decides what may be downloaded.
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s%s", path, version, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// LoadGazelleDefaults reads the defaults of the Gazelle version MODULE.bazel
// pins.
func LoadGazelleDefaults(m *Module) (*GazelleDefaults, error) {
	v := m.Deps["gazelle"]
	if v == "" {
		return nil, fmt.Errorf("MODULE.bazel has no bazel_dep(name = \"gazelle\")")
	}
	dir, err := GoModuleDir(GazelleModule, "v"+v)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "internal", "bzlmod", "default_gazelle_overrides.bzl")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return ParseGazelleDefaults(p, data)
}

// RepoName is the repository name go_deps gives a Go module path: the host
// reversed, then the path, joined by "_", "-" and every other character that
// is not a letter or digit replaced by "_" and letters lowercased. Each
// character is replaced on its own, as go_deps does: "a--b" becomes "a__b".
func RepoName(modulePath string) string {
	segments := strings.Split(modulePath, "/")
	host := strings.Split(segments[0], ".")
	for i, j := 0, len(host)-1; i < j; i, j = i+1, j-1 {
		host[i], host[j] = host[j], host[i]
	}
	joined := strings.Join(append(host, segments[1:]...), "_")
	var b strings.Builder
	for _, r := range joined {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r - 'A' + 'a')
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// GoRepo is one repository go_deps creates for a Go module.
type GoRepo struct {
	ModulePath string
	Name       string
	// NamingConvention is the go_naming_convention directive go_deps applies
	// ("" when none: the repository then uses import_alias).
	NamingConvention string
	// BuildFileGeneration is "auto" (Gazelle runs only if the module has no
	// root BUILD file), "on", "off" or "clean".
	BuildFileGeneration string
}

// GoRepos returns the repositories go_deps creates for the given module
// paths, in the order of modulePaths, applying the same precedence as
// go_deps: the module's gazelle_override, then gazelle_default_attributes,
// then Gazelle's defaults for the path.
func GoRepos(modulePaths []string, cfg GoDepsConfig, defaults *GazelleDefaults) []GoRepo {
	var out []GoRepo
	for _, p := range modulePaths {
		r := GoRepo{ModulePath: p, Name: RepoName(p), BuildFileGeneration: "auto"}
		if n := cfg.RepoNames[p]; n != "" {
			r.Name = n
		}
		directives := defaults.Directives[p]
		if gen := defaults.BuildFileGeneration[p]; gen != "" {
			r.BuildFileGeneration = gen
		}
		if d := cfg.DefaultAttributes; d != nil {
			if len(d.Directives) > 0 {
				directives = d.Directives
			}
			if d.BuildFileGeneration != "" {
				r.BuildFileGeneration = d.BuildFileGeneration
			}
		}
		if o, ok := cfg.GazelleOverrides[p]; ok {
			// A gazelle_override replaces every attribute, its defaults included.
			directives = o.Directives
			r.BuildFileGeneration = o.BuildFileGeneration
			if r.BuildFileGeneration == "" {
				r.BuildFileGeneration = "on"
			}
		}
		r.NamingConvention = directiveValue(directives, "go_naming_convention")
		out = append(out, r)
	}
	return out
}

// directiveValue is the value of the last "gazelle:<key> value" directive.
func directiveValue(directives []string, key string) string {
	prefix := "gazelle:" + key + " "
	value := ""
	for _, d := range directives {
		if strings.HasPrefix(d, prefix) {
			value = strings.TrimLeft(d[len(prefix):], " ")
		}
	}
	return value
}

// GoModRequires lists the module paths and versions a go.mod requires.
func GoModRequires(dir string) (map[string]string, []string, error) {
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go mod edit -json in %s: %w", dir, err)
	}
	var gm struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &gm); err != nil {
		return nil, nil, err
	}
	versions := map[string]string{}
	var paths []string
	for _, r := range gm.Require {
		versions[r.Path] = r.Version
		paths = append(paths, r.Path)
	}
	sort.Strings(paths)
	return versions, paths, nil
}
