package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/bazel/bzlmod"
)

func TestUseRepoListsExactlyTheReposBuildFilesUse(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("a/BUILD.bazel", `go_library(name = "a", deps = ["@com_github_google_go_cmp//cmp", "@rules_go//go:def.bzl"])`)
	write("b/BUILD.bazel", `go_test(name = "b", deps = ["@com_github_stretchr_testify//require", "//a"])`)
	// A nested module and convenience symlinks are not part of this module.
	write("nested/go.mod", "module example.com/nested\n")
	write("nested/BUILD.bazel", `go_library(name = "n", deps = ["@io_k8s_api//core/v1"])`)
	provided := map[string]bool{"com_github_google_go_cmp": true, "com_github_stretchr_testify": true, "io_k8s_api": true, "io_k8s_apimachinery": true}

	used, err := usedGoRepos(root, provided)
	require.NoError(t, err)
	assert.Equal(t, []string{"com_github_google_go_cmp", "com_github_stretchr_testify"}, used)

	module := []byte(`module(name = "x")

go_deps = use_extension("@gazelle//:extensions.bzl", "go_deps")
go_deps.from_file(go_mod = "//:go.mod")
use_repo(go_deps, "io_k8s_apimachinery")

oci = use_extension("@rules_oci//oci:extensions.bzl", "oci")
use_repo(oci, "distroless_static")
`)
	out, err := SetUseRepo("MODULE.bazel", module, "go_deps", used)
	require.NoError(t, err)
	assert.Contains(t, string(out), "use_repo(\n    go_deps,\n    \"com_github_google_go_cmp\",\n    \"com_github_stretchr_testify\",\n)")
	assert.NotContains(t, string(out), "io_k8s_apimachinery", "repositories no BUILD file uses are dropped")
	assert.Contains(t, string(out), `use_repo(oci, "distroless_static")`, "other extensions are left alone")

	again, err := SetUseRepo("MODULE.bazel", out, "go_deps", used)
	require.NoError(t, err)
	assert.Equal(t, string(out), string(again), "a second run changes nothing")

	_, err = SetUseRepo("MODULE.bazel", []byte(`module(name = "x")`), "go_deps", used)
	require.ErrorContains(t, err, "no use_repo(go_deps")
}

// The Gazelle update.sh and check.sh run must be the one Bazel runs.
func TestSameGazelleAsBazel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "MODULE.bazel")
	require.NoError(t, os.WriteFile(p, []byte("module(name = \"x\")\n\nbazel_dep(name = \"gazelle\", version = \"0.53.0\")\n"), 0o644))
	mod, err := bzlmod.ReadModule(p)
	require.NoError(t, err)
	err = checkSameGazelle(map[string]string{bzlmod.GazelleModule: "v0.52.2"}, mod)
	require.ErrorContains(t, err, "requires github.com/bazelbuild/bazel-gazelle v0.52.2 but MODULE.bazel has bazel_dep(name = \"gazelle\", version = \"0.53.0\")")
	require.NoError(t, checkSameGazelle(map[string]string{bzlmod.GazelleModule: "v0.53.0"}, mod))
}
