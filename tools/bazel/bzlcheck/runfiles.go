package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// StrictPath is the PATH of every Bazel action and test under
// --incompatible_strict_action_env (set in .bazelrc): Bazel's
// BazelRuleClassProvider.pathOrDefault on Linux and macOS.
const StrictPath = "/bin:/usr/bin:/usr/local/bin"

// MainRepo is the runfiles directory name of the main repository under
// Bzlmod.
const MainRepo = "_main"

// TestTimeout is Bazel's timeout for a test of the default size (medium:
// "moderate", 300 s).
const TestTimeout = 300 * time.Second

// RunfilesOptions say how go_test targets are run.
type RunfilesOptions struct {
	// Work is a directory for binaries and runfiles trees.
	Work string
	// Parallel is how many tests run at once.
	Parallel int
	// HostTools are commands a test may only run when tagged
	// "requires-<tool>": they are hidden from PATH otherwise, as on a
	// machine that lacks them.
	HostTools []string
	// Only restricts the check to these test labels (all when empty).
	Only []string
	// Log receives progress lines.
	Log io.Writer
	// Cache, when set, keeps each compiled test binary under a key of the
	// compiled packages it links (their export data in the Go build cache),
	// so an unchanged test is not linked again. Entries this run did not
	// use are removed.
	Cache string
}

// GoTest is a go_test target and the files Bazel gives it at run time.
type GoTest struct {
	Rule *Rule
	// Runfiles are root-relative source files.
	Runfiles []string
	// Binaries are go_binary targets in the runfiles.
	Binaries []*Rule
}

// RunfilesTests lists every go_test not tagged manual, with its runfiles:
// its data, the data of what it embeds and, transitively, of the Go
// libraries it depends on; filegroups and exported files of other packages
// expanded (rules_go's _collect_runfiles; srcs are not runfiles).
func RunfilesTests(ws *Workspace) ([]GoTest, []string) {
	var tests []GoTest
	var problems []string
	for _, pkg := range sortedPackages(ws) {
		for _, r := range sortedRules(pkg) {
			if r.Kind != "go_test" || r.HasTag("manual") {
				continue
			}
			c := &collector{ws: ws, seen: map[Label]bool{}, files: map[string]bool{}}
			c.rule(r)
			t := GoTest{Rule: r, Binaries: c.binaries}
			for f := range c.files {
				t.Runfiles = append(t.Runfiles, f)
			}
			sort.Strings(t.Runfiles)
			for _, p := range c.problems {
				problems = append(problems, fmt.Sprintf("%s: go_test %s: %s", pkg.File, r.Name, p))
			}
			tests = append(tests, t)
		}
	}
	return tests, problems
}

type collector struct {
	ws       *Workspace
	seen     map[Label]bool
	files    map[string]bool
	binaries []*Rule
	problems []string
}

func (c *collector) rule(r *Rule) {
	for _, attr := range []string{"data", "embed", "deps"} {
		for _, s := range r.Attrs[attr].Strings() {
			l, err := ParseLabel(s, r.Pkg.Path)
			if err != nil {
				c.problems = append(c.problems, err.Error())
				continue
			}
			if l.Repo != "" {
				continue // external libraries bring no files of this repository
			}
			c.label(l, attr == "data")
		}
	}
}

func (c *collector) label(l Label, isData bool) {
	if c.seen[l] {
		return
	}
	c.seen[l] = true
	t, err := c.ws.Resolve(l)
	if err != nil {
		c.problems = append(c.problems, err.Error())
		return
	}
	if t.File != "" {
		if isData {
			c.files[t.File] = true
		}
		return
	}
	r := t.Rule
	switch {
	case r.Kind == "filegroup":
		for _, attr := range []string{"srcs", "data"} {
			for _, s := range r.Attrs[attr].Strings() {
				sub, err := ParseLabel(s, r.Pkg.Path)
				if err == nil && sub.Repo == "" {
					c.label(sub, true)
				}
			}
		}
	case r.Kind == "go_library" || r.Kind == "go_test":
		c.rule(r)
	case r.Kind == "go_binary" || r.Kind == "kubeopencode_go_binary":
		if isData {
			c.binaries = append(c.binaries, r)
		}
		c.rule(r)
	default:
		if isData {
			c.problems = append(c.problems, fmt.Sprintf("data %s is a %s: this check cannot build it without Bazel; use a filegroup, a file or a go_binary", l, r.Kind))
		}
	}
}

// CheckRunfiles compiles every go_test not tagged manual and runs it the way
// `bazel test` would: from its package directory inside a runfiles tree that
// holds only the files Bazel gives it, with Bazel's test environment and the
// strict action PATH. A test that reads an undeclared file, looks for go.mod,
// or runs a host tool it is not tagged for fails here as it would in Bazel.
func CheckRunfiles(ws *Workspace, opts RunfilesOptions) []string {
	tests, problems := RunfilesTests(ws)
	if len(opts.Only) > 0 {
		keep := map[string]bool{}
		for _, o := range opts.Only {
			keep[o] = true
		}
		var sel []GoTest
		for _, t := range tests {
			if keep[t.Rule.Label().String()] {
				sel = append(sel, t)
			}
		}
		tests = sel
	}
	if opts.Parallel < 1 {
		opts.Parallel = 1
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, opts.Parallel)
	)
	for i, t := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			p := runTest(ws, t, filepath.Join(opts.Work, fmt.Sprint(i)), opts)
			mu.Lock()
			defer mu.Unlock()
			status := "ok"
			if p != "" {
				status = "FAIL"
				problems = append(problems, p)
			}
			fmt.Fprintf(opts.Log, "%-4s %s (%.1fs)\n", status, t.Rule.Label(), time.Since(start).Seconds())
		}()
	}
	wg.Wait()
	if opts.Cache != "" {
		pruneCache(opts.Cache, used)
	}
	sort.Strings(problems)
	return problems
}

var (
	usedMu sync.Mutex
	used   = map[string]bool{}
)

// testBinaryKey names a test binary by everything linked into it: the
// export data of each package (content-addressed files of the Go build
// cache), the Go version and the environment that changes builds.
func testBinaryKey(root, pkg string) (string, error) {
	out, err := goCmd(root, "list", "-test", "-deps", "-export", "-f", "{{.ImportPath}} {{.Export}}", "./"+pkg)
	if err != nil {
		return "", fmt.Errorf("go list -export ./%s: %v\n%s", pkg, err, out)
	}
	ver, err := goCmd(root, "env", "GOVERSION", "GOOS", "GOARCH", "GOFLAGS", "CGO_ENABLED", "GOEXPERIMENT")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(ver)
	h.Write(out)
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// compileTest writes the test binary of pkg to bin, from the cache when it
// holds one for the same key.
func compileTest(root, pkg, bin, cache string) error {
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	var cached string
	if cache != "" {
		key, err := testBinaryKey(root, pkg)
		if err != nil {
			return err
		}
		cached = filepath.Join(cache, key)
		usedMu.Lock()
		used[key] = true
		usedMu.Unlock()
		if err := copyExecutable(cached, bin); err == nil {
			return nil
		}
	}
	if out, err := goCmd(root, "test", "-c", "-o", bin, "./"+pkg); err != nil {
		return fmt.Errorf("go test -c ./%s: %v\n%s", pkg, err, out)
	}
	if cached != "" {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return err
		}
		// Another checkout may fill the same entry at the same time: write
		// a file of our own and rename it into place.
		tmp, err := os.CreateTemp(cache, "partial-*")
		if err != nil {
			return err
		}
		tmp.Close()
		if err := copyExecutable(bin, tmp.Name()); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		return os.Rename(tmp.Name(), cached)
	}
	return nil
}

func copyExecutable(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

func pruneCache(dir string, keep map[string]bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if strings.HasPrefix(e.Name(), "partial-") {
			// Possibly being written by a concurrent run.
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Hour {
				continue
			}
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

func runTest(ws *Workspace, t GoTest, work string, opts RunfilesOptions) string {
	r := t.Rule
	where := fmt.Sprintf("%s: go_test %s", r.Pkg.File, r.Name)
	runfiles := filepath.Join(work, r.Name+".runfiles")
	main := filepath.Join(runfiles, MainRepo)
	for _, f := range t.Runfiles {
		if err := copyFile(filepath.Join(ws.Root, filepath.FromSlash(f)), filepath.Join(main, filepath.FromSlash(f))); err != nil {
			return fmt.Sprintf("%s: runfile %s: %v", where, f, err)
		}
	}
	// rules_go puts the test binary at <pkg>/<name>_/<name> in the runfiles
	// and runs it from <pkg>.
	binRel := path.Join(r.Pkg.Path, r.Name+"_", r.Name)
	bin := filepath.Join(main, filepath.FromSlash(binRel))
	if err := compileTest(ws.Root, r.Pkg.Path, bin, opts.Cache); err != nil {
		return fmt.Sprintf("%s: %v", where, err)
	}
	for _, b := range t.Binaries {
		rel := path.Join(b.Pkg.Path, b.Name+"_", b.Name)
		if out, err := goCmd(ws.Root, "build", "-o", filepath.Join(main, filepath.FromSlash(rel)), "./"+b.Pkg.Path); err != nil {
			return fmt.Sprintf("%s: data %s: go build: %v\n%s", where, b.Label(), err, out)
		}
	}
	tmp := filepath.Join(work, "tmp")
	undeclared := filepath.Join(work, "undeclared")
	for _, d := range []string{tmp, undeclared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err.Error()
		}
	}
	pathEnv := StrictPath
	var hidden []string
	for _, tool := range opts.HostTools {
		if !r.HasTag("requires-" + tool) {
			hidden = append(hidden, tool)
		}
	}
	if len(hidden) > 0 {
		dir := filepath.Join(work, "path")
		if err := shadowPath(dir, StrictPath, hidden); err != nil {
			return err.Error()
		}
		pathEnv = dir
	}
	env := []string{
		"PATH=" + pathEnv,
		"TEST_SRCDIR=" + runfiles,
		"RUNFILES_DIR=" + runfiles,
		"TEST_WORKSPACE=" + MainRepo,
		"TEST_TMPDIR=" + tmp,
		"HOME=" + tmp,
		"TEST_TARGET=" + r.Label().String(),
		"TEST_BINARY=" + binRel,
		"TEST_SIZE=medium",
		"TEST_TIMEOUT=300",
		"TEST_UNDECLARED_OUTPUTS_DIR=" + undeclared,
		"XML_OUTPUT_FILE=" + filepath.Join(work, "test.xml"),
		"TZ=UTC",
		"USER=" + os.Getenv("USER"),
		"GO_TEST_RUN_FROM_BAZEL=1",
	}
	ctx, cancel := context.WithTimeout(context.Background(), TestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = filepath.Join(main, filepath.FromSlash(r.Pkg.Path))
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("%s fails as Bazel would run it (from %s/%s in its runfiles, PATH=%s", where, MainRepo, r.Pkg.Path, StrictPath)
		if len(hidden) > 0 {
			msg += " without " + strings.Join(hidden, ", ")
		}
		msg += fmt.Sprintf("): %v; declare the files it reads in data, or tag it (manual, requires-<tool>) and say so in README.md\n%s", err, tail(out.String(), 40))
		return msg
	}
	return ""
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// Runfiles are read-only in Bazel's sandbox.
	return os.WriteFile(dst, data, info.Mode().Perm()&^0o222)
}

// shadowPath fills dir with links to every command of the directories of
// pathList except the hidden ones (and their "<tool>-*" helpers).
func shadowPath(dir, pathList string, hidden []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range filepath.SplitList(pathList) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			skip := false
			for _, h := range hidden {
				if name == h || strings.HasPrefix(name, h+"-") {
					skip = true
				}
			}
			if skip {
				continue
			}
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err == nil {
				continue // the first directory on PATH wins
			}
			if err := os.Symlink(filepath.Join(d, name), link); err != nil {
				return err
			}
		}
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
