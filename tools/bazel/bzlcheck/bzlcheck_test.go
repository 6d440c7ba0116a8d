package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/bazel/bzlmod"
)

// writeTree writes files (path -> content) under a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	return root
}

// assertProblems checks that every wanted fragment appears in exactly one
// problem and that there are no other problems.
func assertProblems(t *testing.T, problems []string, want ...string) {
	t.Helper()
	matched := make([]bool, len(problems))
	for _, w := range want {
		n := 0
		for i, p := range problems {
			if strings.Contains(p, w) {
				n++
				matched[i] = true
			}
		}
		assert.Equal(t, 1, n, "want one problem containing %q in:\n%s", w, strings.Join(problems, "\n"))
	}
	for i, p := range problems {
		assert.True(t, matched[i], "unexpected problem: %s", p)
	}
}

// A workspace shaped like this repository's: a root package with images
// and install manifests, Go packages, a test reading other packages' files.
var labelTree = map[string]string{
	"MODULE.bazel": `module(name = "x")`,
	"BUILD.bazel": `
exports_files(["MODULE.bazel"])

filegroup(
    name = "install_manifests",
    srcs = glob(["manifests/**/*.yaml"], exclude = ["manifests/samples/**"]),
    visibility = ["//tools/render:__pkg__"],
)

filegroup(
    name = "nothing",
    srcs = glob(["docs/*.md"]),
)

genrule(
    name = "manifests",
    srcs = [":install_manifests"],
    outs = ["kubeopencode.yaml"],
    cmd = "$(execpath //tools/render/cmd/render) $(execpaths :install_manifests) > $@",
    tools = ["//tools/render/cmd/render"],
)

genrule(
    name = "undeclared",
    outs = ["u.yaml"],
    cmd = "cat $(location :install_manifests) > $@",
)
`,
	"manifests/crd/tasks.yaml":      "kind: CustomResourceDefinition\n",
	"manifests/controller/ns.yaml":  "kind: Namespace\n",
	"manifests/samples/task.yaml":   "kind: Task\n",
	"cmd/controller/BUILD.bazel":    "load(\"//tools/bazel:defs.bzl\", \"kubeopencode_go_binary\", \"go_binary_pure\", \"_private\")\nload(\"//nope:defs.bzl\", \"x\")\ngo_binary(name = \"controller\", srcs = [\"main.go\"])\n",
	"tools/bazel/BUILD.bazel":       "",
	"tools/bazel/defs.bzl":          "load(\"@rules_go//go:def.bzl\", \"go_binary\")\n\n_private = 1\n\ndef kubeopencode_go_binary(name, **kwargs):\n    go_binary(name = name, **kwargs)\n",
	"cmd/controller/main.go":        "package main\n",
	"cmd/git-init/BUILD.bazel":      "go_binary(name = \"git-init\", srcs = [\"main.go\"])\nexports_files([\"BUILD.bazel\"], visibility = [\"//tools/images:__pkg__\"])\n",
	"cmd/git-init/main.go":          "package main\n",
	"internal/lib/BUILD.bazel":      `go_library(name = "lib", srcs = ["lib.go"], visibility = ["//internal:__subpackages__"])`,
	"internal/lib/lib.go":           "package lib\n",
	"internal/lib/data/BUILD.bazel": `filegroup(name = "data", srcs = ["x.txt"], visibility = ["//visibility:public"])`,
	"internal/lib/data/x.txt":       "x",
	"tools/render/BUILD.bazel":      `go_test(name = "render_test", srcs = ["render_test.go"], data = ["//:install_manifests"])`,
	"pub/BUILD.bazel":               "package(default_visibility = [\"//visibility:public\"])\n",
	"pub/file.txt":                  "x",
	"tools/render/render_test.go":   "package render\n",
	"tools/images/bazel_test.go":    "package images\n",
	"tools/render/cmd/render/BUILD.bazel": `
package(default_visibility = ["//visibility:public"])
go_binary(name = "render", srcs = ["main.go"])
`,
	"tools/render/cmd/render/main.go": "package main\n",
	"tools/images/BUILD.bazel": `
go_test(
    name = "images_test",
    srcs = ["bazel_test.go"],
    data = [
        "//:MODULE.bazel",
        "//:BUILD.bazel",
        "//cmd/controller:BUILD.bazel",
        "//cmd/git-init:BUILD.bazel",
        "//cmd/context-init:BUILD.bazel",
        "//internal/lib:data/x.txt",
        "//internal/lib/data",
        "//pub:file.txt",
    ],
    deps = ["//internal/lib", "//cmd/controller:missing"],
)
`,
}

func TestLabelsExistAndAreVisible(t *testing.T) {
	ws, err := LoadWorkspace(writeTree(t, labelTree))
	require.NoError(t, err)
	assertProblems(t, CheckLabels(ws, nil),
		// The private files of other packages (the images_test bug).
		`data: file //:BUILD.bazel is not visible to //tools/images`,
		`file //cmd/controller:BUILD.bazel is not visible to //tools/images: export it with exports_files(["BUILD.bazel"]`,
		// A package that does not exist.
		`//cmd/context-init:BUILD.bazel: no package "cmd/context-init"`,
		// A file that belongs to a subpackage.
		`internal/lib/data/x.txt belongs to package //internal/lib/data, not //internal/lib`,
		// A rule whose visibility leaves the user out.
		`rule //internal/lib:lib is not visible to //tools/images`,
		`//cmd/controller:missing: no such target`,
		// default_visibility does not export files (it stops doing so when
		// --incompatible_no_implicit_file_export flips).
		`file //pub:file.txt is not visible to //tools/images`,
		// load() of symbols a .bzl file does not define, or keeps private.
		`cmd/controller/BUILD.bazel:1: load("//tools/bazel:defs.bzl"): //tools/bazel:defs.bzl does not define go_binary_pure, _private`,
		`cmd/controller/BUILD.bazel:2: load("//nope:defs.bzl"): no package //nope`,
		// Bazel 8 fails on a glob that matches nothing.
		`glob(docs/*.md) matches no file`,
		// $(location) of a label the rule does not declare.
		`genrule undeclared: cmd: $(location :install_manifests) names a label that is not in srcs`,
	)
}

func TestLabelsIntoGoDepsRepositories(t *testing.T) {
	modules := writeTree(t, map[string]string{
		// A module shipping its own BUILD files, named as cel-go names them.
		"own/BUILD.bazel":        "licenses([\"notice\"])\n",
		"own/common/BUILD.bazel": "go_library(name = \"go_default_library\")\ngo_test(name = \"go_default_test\")\n",
		"own/common/c.go":        "package common\n",
		// Modules without BUILD files: Gazelle generates them.
		"gen/v5/x.go": "package gen\n",
		// rules_go's go/def.bzl re-exports its rules.
		"rules_go/go/def.bzl": "load(\"//go/private:rules.bzl\", _go_library = \"go_library\")\n\ngo_library = _go_library\n",
		"gen/v5/core/v1/x.go": "package v1\n",
		"legacy/pkg/x.go":     "package pkg\n",
	})
	resolver := &GoRepoResolver{
		Repos: map[string]bzlmod.GoRepo{
			"com_example_own":    {ModulePath: "example.com/own", Name: "com_example_own", BuildFileGeneration: "auto"},
			"com_example_gen_v5": {ModulePath: "example.com/gen/v5", Name: "com_example_gen_v5", BuildFileGeneration: "auto"},
			"com_example_legacy": {ModulePath: "example.com/legacy", Name: "com_example_legacy", BuildFileGeneration: "auto", NamingConvention: "go_default_library"},
		},
		RuleSetDir: func(repo string) (string, bool, error) {
			return filepath.Join(modules, "rules_go"), repo == "rules_go", nil
		},
		Versions: map[string]string{"example.com/own": "v1.0.0", "example.com/gen/v5": "v5.0.0", "example.com/legacy": "v1.0.0"},
		ModuleDir: func(path, version string) (string, error) {
			return filepath.Join(modules, map[string]string{"example.com/own": "own", "example.com/gen/v5": filepath.Join("gen", "v5"), "example.com/legacy": "legacy"}[path]), nil
		},
	}
	ws, err := LoadWorkspace(writeTree(t, map[string]string{
		"lib/BUILD.bazel": `
load("@rules_go//go:def.bzl", "go_library", "go_embed_data")
load("@rules_oci//oci:defs.bzl", "oci_image")

go_library(
    name = "lib",
    srcs = ["lib.go"],
    deps = [
        "@com_example_own//common",
        "@com_example_own//common:go_default_library",
        "@com_example_own//missing:go_default_library",
        "@com_example_gen_v5//:gen",
        "@com_example_gen_v5//core/v1:core",
        "@com_example_gen_v5//core/v1:go_default_library",
        "@com_example_gen_v5//core/v1",
        "@com_example_legacy//pkg",
        "@com_example_legacy//pkg:go_default_library",
        "@rules_go//go/toolchain:linux_amd64",
    ],
)
`,
		"lib/lib.go": "package lib\n",
	}))
	require.NoError(t, err)
	assertProblems(t, CheckLabels(ws, resolver),
		`lib/BUILD.bazel:2: load("@rules_go//go:def.bzl"): @rules_go//go:def.bzl does not define go_embed_data`,
		`@com_example_own//common:common: example.com/own keeps its own BUILD files (go_deps does not run Gazelle there), and common/BUILD.bazel declares no "common"; it has :go_default_library, :go_default_test`,
		`@com_example_own//missing:go_default_library: example.com/own@v1.0.0 has no directory "missing"`,
		`@com_example_gen_v5//core/v1:v1: the library Gazelle generates for example.com/gen/v5/core/v1 is :core`,
		`@com_example_legacy//pkg:pkg: go_deps generates example.com/legacy with go_naming_convention go_default_library`,
	)
}

func TestScriptsNeverGetAPathWithoutSlash(t *testing.T) {
	ws, err := LoadWorkspace(writeTree(t, map[string]string{
		"BUILD.bazel": `
oci_push(name = "controller_push", image = ":controller_index")
oci_image_index(name = "controller_index", images = [])
filegroup(name = "crds", srcs = glob(["crd/*.yaml"]))
exports_files(["gen.sh"])

sh_binary(
    name = "deploy",
    srcs = ["//tools:deploy.sh"],
    args = [
        "$(rootpath :controller_push)",
        "$(rootpath :controller_index.digest)",
        "$(rlocationpath :controller_push)",
        "$(rootpaths :crds)",
        "$(rootpath //tools/render)",
    ],
    data = [":controller_push", ":controller_index.digest", ":crds", "//tools/render"],
)

genrule(
    name = "gen",
    srcs = ["gen.sh", ":crds"],
    outs = ["out.txt"],
    cmd = "$(location gen.sh) $(execpaths :crds) > $@",
)
`,
		"gen.sh":                   "#!/bin/sh\n",
		"crd/tasks.yaml":           "kind: CustomResourceDefinition\n",
		"tools/BUILD.bazel":        `exports_files(["deploy.sh"])`,
		"tools/deploy.sh":          "#!/bin/sh\n\"$1\"\n",
		"tools/render/BUILD.bazel": `go_binary(name = "render", srcs = ["main.go"], visibility = ["//visibility:public"])`,
		"tools/render/main.go":     "package main\n",
	}))
	require.NoError(t, err)
	assertProblems(t, CheckScripts(ws),
		// The deploy bug: rules_oci's push script sits in the root package.
		`$(rootpath :controller_push) expands to "push_controller_push.sh"`,
		`$(rootpath :controller_index.digest) expands to "controller_index.json.sha256"`,
		// A source file of the root package run by a genrule.
		`genrule gen: $(location gen.sh) expands to "gen.sh"`,
	)
}

// runfilesTree is a Go module whose tests do what real tests do with files,
// environment and host tools. Each package's test passes under `go test`
// in the source tree.
var runfilesTree = map[string]string{
	"go.mod":       "module example.com/ws\n\ngo 1.26\n",
	"MODULE.bazel": `module(name = "ws")`,
	"BUILD.bazel": `
filegroup(
    name = "manifests",
    srcs = glob(["manifests/*.yaml"]),
    visibility = ["//reads:__subpackages__"],
)
`,
	"manifests/crd.yaml": "kind: CustomResourceDefinition\n",
	// Declares its testdata and another package's files: passes.
	"reads/declared/BUILD.bazel":     `go_test(name = "declared_test", srcs = ["x_test.go"], data = glob(["testdata/**"]) + ["//:manifests"])`,
	"reads/declared/testdata/in.txt": "hello\n",
	"reads/declared/x_test.go": `package declared
import ("os"; "testing")
func TestRead(t *testing.T) {
	for _, f := range []string{"testdata/in.txt", "../../manifests/crd.yaml"} {
		if _, err := os.ReadFile(f); err != nil { t.Fatal(err) }
	}
}
`,
	// Reads another package's file it does not declare: fails.
	"reads/undeclared/BUILD.bazel": `go_test(name = "undeclared_test", srcs = ["x_test.go"])`,
	"reads/undeclared/x_test.go": `package undeclared
import ("os"; "testing")
func TestRead(t *testing.T) {
	if _, err := os.ReadFile("../../manifests/crd.yaml"); err != nil { t.Fatal(err) }
}
`,
	// Finds the module root by looking for go.mod: fails, there is none.
	"findsroot/BUILD.bazel": `go_test(name = "findsroot_test", srcs = ["x_test.go"], data = ["//:manifests"])`,
	"findsroot/x_test.go": `package findsroot
import ("os"; "path/filepath"; "testing")
func TestRoot(t *testing.T) {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil { return }
		if filepath.Dir(dir) == dir { t.Fatal("go.mod not found above the test directory") }
		dir = filepath.Dir(dir)
	}
}
`,
	// Runs git without saying so: fails; the same test tagged passes.
	"git/untagged/BUILD.bazel": `go_test(name = "untagged_test", srcs = ["x_test.go"])`,
	"git/untagged/x_test.go":   gitTest("untagged"),
	"git/tagged/BUILD.bazel":   `go_test(name = "tagged_test", srcs = ["x_test.go"], tags = ["requires-git"])`,
	"git/tagged/x_test.go":     gitTest("tagged"),
	// Runs the go toolchain, which is not on Bazel's PATH: fails.
	"gotool/BUILD.bazel": `go_test(name = "gotool_test", srcs = ["x_test.go"])`,
	"gotool/x_test.go": `package gotool
import ("os/exec"; "testing")
func TestGo(t *testing.T) {
	if out, err := exec.Command("go", "version").CombinedOutput(); err != nil { t.Fatal(err, string(out)) }
}
`,
	// Manual tests are not run by bazel test //...: skipped.
	"manual/BUILD.bazel": `go_test(name = "manual_test", srcs = ["x_test.go"], tags = ["manual"])`,
	"manual/x_test.go": `package manual
import "testing"
func TestFails(t *testing.T) { t.Fatal("must not run") }
`,
	// Bazel's environment: HOME inside TEST_TMPDIR, both writable; the
	// runfiles read-only.
	"env/BUILD.bazel":     `go_test(name = "env_test", srcs = ["x_test.go"], data = ["testdata/in.txt"])`,
	"env/testdata/in.txt": "x",
	"env/x_test.go": `package env
import ("os"; "path/filepath"; "strings"; "testing")
func TestEnv(t *testing.T) {
	tmp, home := os.Getenv("TEST_TMPDIR"), os.Getenv("HOME")
	if tmp == "" || home != tmp { t.Fatalf("TEST_TMPDIR=%q HOME=%q", tmp, home) }
	if err := os.WriteFile(filepath.Join(home, "f"), []byte("x"), 0o644); err != nil { t.Fatal(err) }
	if os.Getenv("PATH") == "" || strings.Contains(os.Getenv("PATH"), "/usr/local/go/bin") { t.Fatalf("PATH=%q", os.Getenv("PATH")) }
	if !strings.HasSuffix(os.Getenv("TEST_SRCDIR"), ".runfiles") { t.Fatalf("TEST_SRCDIR=%q", os.Getenv("TEST_SRCDIR")) }
	if err := os.WriteFile("testdata/in.txt", []byte("y"), 0o644); err == nil && os.Getuid() != 0 { t.Fatal("runfiles are writable") }
}
`,
}

func gitTest(pkg string) string {
	return `package ` + pkg + `
import ("os/exec"; "testing")
func TestGit(t *testing.T) {
	if out, err := exec.Command("git", "version").CombinedOutput(); err != nil { t.Fatal(err, string(out)) }
}
`
}

func TestRunfilesRunsTestsAsBazelDoes(t *testing.T) {
	if _, err := os.Stat("/usr/bin/git"); err != nil {
		t.Fatal("this test needs git in /usr/bin (the requires-git case)")
	}
	root := writeTree(t, runfilesTree)
	ws, err := LoadWorkspace(root)
	require.NoError(t, err)
	require.Empty(t, ws.Problems)

	// Every test passes in the source tree, as `go test` runs it, except
	// that this test's own process might lack git on PATH.
	out, err := goCmd(root, "test", "-count=1", "./reads/...", "./findsroot/...", "./gotool/...")
	require.NoError(t, err, "the fixture's tests must pass under go test:\n%s", out)

	problems := CheckRunfiles(ws, RunfilesOptions{Work: t.TempDir(), Parallel: 2, HostTools: []string{"git"}})
	assertProblems(t, problems,
		"reads/undeclared/BUILD.bazel: go_test undeclared_test fails as Bazel would run it",
		"findsroot/BUILD.bazel: go_test findsroot_test fails",
		"git/untagged/BUILD.bazel: go_test untagged_test fails",
		"gotool/BUILD.bazel: go_test gotool_test fails",
	)
	for _, p := range problems {
		if strings.Contains(p, "findsroot") {
			assert.Contains(t, p, "go.mod not found above the test directory", "the test's own output explains the failure")
		}
	}
}

func TestRunfilesListsWhatRulesGoGivesATest(t *testing.T) {
	ws, err := LoadWorkspace(writeTree(t, map[string]string{
		"BUILD.bazel": `filegroup(name = "fg", srcs = ["a.txt", ":nested"], visibility = ["//visibility:public"])
filegroup(name = "nested", srcs = glob(["n/*"]))
genrule(name = "g", outs = ["g.txt"], cmd = "", visibility = ["//visibility:public"])`,
		"a.txt":   "a",
		"n/b.txt": "b",
		"lib/BUILD.bazel": `go_library(name = "lib", srcs = ["lib.go"], data = ["lib.txt"], visibility = ["//visibility:public"])
go_library(name = "emb", srcs = ["emb.go"], data = ["emb.txt"], deps = [":lib"], visibility = ["//visibility:public"])`,
		"lib/lib.txt": "l", "lib/emb.txt": "e", "lib/lib.go": "", "lib/emb.go": "",
		"t/BUILD.bazel": `go_test(name = "t_test", srcs = ["t_test.go"], data = ["//:fg", "//:g"], embed = ["//lib:emb"], deps = ["@ext//x"])`,
	}))
	require.NoError(t, err)
	tests, problems := RunfilesTests(ws)
	require.Len(t, tests, 1)
	// srcs are not runfiles; data, the embedded library's data and its
	// dependencies' data are, filegroups expanded.
	assert.Equal(t, []string{"a.txt", "lib/emb.txt", "lib/lib.txt", "n/b.txt"}, tests[0].Runfiles)
	assertProblems(t, problems, "data //:g is a genrule: this check cannot build it without Bazel")
}

// A cached test binary is reused only while nothing it links changed.
func TestTestBinaryCacheFollowsTheSources(t *testing.T) {
	root := writeTree(t, map[string]string{
		"go.mod":          "module example.com/ws\n\ngo 1.26\n",
		"lib/lib.go":      "package lib\n\nfunc Answer() int { return 42 }\n",
		"pkg/pkg_test.go": "package pkg\n\nimport (\"testing\"; \"example.com/ws/lib\")\n\nfunc TestAnswer(t *testing.T) { if lib.Answer() != 42 { t.Fatal(lib.Answer()) } }\n",
	})
	cache := t.TempDir()
	key, err := testBinaryKey(root, "pkg")
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "pkg.test")
	require.NoError(t, compileTest(root, "pkg", bin, cache))
	assert.FileExists(t, filepath.Join(cache, key))
	out, err := exec.Command(bin).CombinedOutput()
	require.NoError(t, err, string(out))

	// A change in a dependency gives another key, and a binary that sees it.
	require.NoError(t, os.WriteFile(filepath.Join(root, "lib", "lib.go"), []byte("package lib\n\nfunc Answer() int { return 41 }\n"), 0o644))
	key2, err := testBinaryKey(root, "pkg")
	require.NoError(t, err)
	assert.NotEqual(t, key, key2)
	require.NoError(t, compileTest(root, "pkg", bin, cache))
	out, err = exec.Command(bin).CombinedOutput()
	require.Error(t, err, "the relinked binary must fail: %s", out)
	assert.Contains(t, string(out), "41")
}
