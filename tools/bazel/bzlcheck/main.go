// Command bzlcheck stands in for Bazel where Bazel cannot run: it reads the
// BUILD files as Bazel's loading phase does and fails on what `bazel build`
// or `bazel test` would fail on.
//
//	bzlcheck labels    every load() finds its symbols; every label names a
//	                   target that exists and is visible to its user; location
//	                   expansions name prerequisites; globs match files; labels
//	                   into go_deps repositories name their real targets (the
//	                   module's own BUILD file, or the naming convention
//	                   go_deps generates it with)
//	bzlcheck scripts   no script argument can expand to a path without "/"
//	bzlcheck runfiles  every go_test not tagged manual passes when run as
//	                   `bazel test` runs it (see CheckRunfiles)
//
// Run from the repository root (tools/bazel/check.sh does).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kubeopencode/kubeopencode/tools/bazel/bzlmod"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bzlcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: bzlcheck labels|scripts|runfiles [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	root := fs.String("root", ".", "repository root")
	parallel := fs.Int("parallel", 2, "runfiles: tests run at once")
	only := fs.String("only", "", "runfiles: comma-separated test labels to run (all by default)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ws, err := LoadWorkspace(*root)
	if err != nil {
		return err
	}
	var problems []string
	switch args[0] {
	case "labels":
		resolver, err := goRepoResolver(*root)
		if err != nil {
			return err
		}
		problems = CheckLabels(ws, resolver)
	case "scripts":
		problems = CheckScripts(ws)
	case "runfiles":
		work, err := os.MkdirTemp("", "bzlcheck-runfiles-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		opts := RunfilesOptions{Work: work, Parallel: *parallel, HostTools: []string{"git"}, Log: os.Stdout}
		if dir, err := os.UserCacheDir(); err == nil {
			opts.Cache = filepath.Join(dir, "kubeopencode", "bzlcheck-tests")
		}
		if *only != "" {
			opts.Only = strings.Split(*only, ",")
		}
		problems = append(ws.Problems, CheckRunfiles(ws, opts)...)
	default:
		return fmt.Errorf("unknown check %q: want labels, scripts or runfiles", args[0])
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %d problem(s)", args[0], len(problems))
	}
	return nil
}

// goRepoResolver describes the go_deps repositories of the repository at
// root as the pinned Gazelle creates them.
func goRepoResolver(root string) (*GoRepoResolver, error) {
	mod, err := bzlmod.ReadModule(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		return nil, err
	}
	defaults, err := bzlmod.LoadGazelleDefaults(mod)
	if err != nil {
		return nil, err
	}
	versions, paths, err := bzlmod.GoModRequires(root)
	if err != nil {
		return nil, err
	}
	g := &GoRepoResolver{Repos: map[string]bzlmod.GoRepo{}, Versions: versions}
	for _, r := range bzlmod.GoRepos(paths, mod.GoDeps, defaults) {
		g.Repos[r.Name] = r
	}
	// Bazel modules whose source is a Go module of the same version.
	ruleSets := map[string]string{"rules_go": "github.com/bazelbuild/rules_go", "gazelle": bzlmod.GazelleModule}
	g.RuleSetDir = func(repo string) (string, bool, error) {
		mp, ok := ruleSets[repo]
		if !ok || mod.Deps[repo] == "" {
			return "", false, nil
		}
		d, err := g.ModuleDir(mp, "v"+mod.Deps[repo])
		return d, true, err
	}
	var mu sync.Mutex
	dirs := map[string]string{}
	g.ModuleDir = func(path, version string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if d, ok := dirs[path+"@"+version]; ok {
			return d, nil
		}
		d, err := bzlmod.GoModuleDir(path, version)
		if err == nil {
			dirs[path+"@"+version] = d
		}
		return d, err
	}
	return g, nil
}
