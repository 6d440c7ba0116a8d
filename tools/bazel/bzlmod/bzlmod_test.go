package bzlmod

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRepoNameMatchesGoDeps(t *testing.T) {
	for mod, want := range map[string]string{
		"github.com/google/go-containerregistry":   "com_github_google_go_containerregistry",
		"sigs.k8s.io/controller-runtime":           "io_k8s_sigs_controller_runtime",
		"github.com/go-git/go-git/v5":              "com_github_go_git_go_git_v5",
		"golang.org/x/crypto/x509roots/fallback":   "org_golang_x_crypto_x509roots_fallback",
		"github.com/Masterminds/sprig/v3":          "com_github_masterminds_sprig_v3",
		"gopkg.in/evanphx/json-patch.v4":           "in_gopkg_evanphx_json_patch_v4",
		"github.com/santhosh-tekuri/jsonschema/v6": "com_github_santhosh_tekuri_jsonschema_v6",
		// go_deps replaces character by character: runs are not collapsed.
		"github.com/foo/bar--baz": "com_github_foo_bar__baz",
		"github.com/foo/bar.-baz": "com_github_foo_bar__baz",
		"github.com/foo/x_y":      "com_github_foo_x_y",
	} {
		assert.Equal(t, want, RepoName(mod), mod)
	}
}

const defaultsBzl = `
visibility("private")

DEFAULT_BUILD_FILE_GENERATION_BY_PATH = {
    "cel.dev/expr": "on",
}

DEFAULT_DIRECTIVES_BY_PATH = {
    "github.com/google/cel-go": [
        "gazelle:go_naming_convention go_default_library",
    ],
    "k8s.io/api": [
        "gazelle:proto disable",
    ],
    "example.com/twice": [
        "gazelle:go_naming_convention import",
        "gazelle:go_naming_convention    go_default_library",
    ],
}
`

func TestGoReposApplyOverridesAsGoDepsDoes(t *testing.T) {
	defaults, err := ParseGazelleDefaults("defaults.bzl", []byte(defaultsBzl))
	require.NoError(t, err)

	dir := t.TempDir()
	module := filepath.Join(dir, "MODULE.bazel")
	require.NoError(t, os.WriteFile(module, []byte(`module(name = "x")

bazel_dep(name = "gazelle", version = "0.53.0")

deps = use_extension("@gazelle//:extensions.bzl", "go_deps")
deps.from_file(go_mod = "//:go.mod")
deps.gazelle_override(
    path = "github.com/google/cel-go",
    directives = ["gazelle:go_naming_convention import"],
)
deps.gazelle_override(
    path = "example.com/plain",
    build_file_generation = "clean",
)
deps.module_override(
    path = "example.com/renamed",
    repo_name = "renamed",
)
other = use_extension("//:other.bzl", "other")
other.gazelle_override(path = "k8s.io/api", directives = ["gazelle:go_naming_convention import"])
`), 0o644))
	m, err := ReadModule(module)
	require.NoError(t, err)
	assert.Equal(t, "0.53.0", m.Deps["gazelle"])

	repos := GoRepos([]string{"github.com/google/cel-go", "k8s.io/api", "example.com/twice", "cel.dev/expr", "example.com/plain", "example.com/renamed"}, m.GoDeps, defaults)
	assert.Equal(t, []GoRepo{
		// The root module's override wins over Gazelle's default.
		{ModulePath: "github.com/google/cel-go", Name: "com_github_google_cel_go", NamingConvention: "import", BuildFileGeneration: "on"},
		// Tags of another extension are not go_deps tags.
		{ModulePath: "k8s.io/api", Name: "io_k8s_api", BuildFileGeneration: "auto"},
		// The last directive counts, extra spaces ignored.
		{ModulePath: "example.com/twice", Name: "com_example_twice", NamingConvention: "go_default_library", BuildFileGeneration: "auto"},
		{ModulePath: "cel.dev/expr", Name: "dev_cel_expr", BuildFileGeneration: "on"},
		{ModulePath: "example.com/plain", Name: "com_example_plain", BuildFileGeneration: "clean"},
		{ModulePath: "example.com/renamed", Name: "renamed", BuildFileGeneration: "auto"},
	}, repos)

	// Without the override, Gazelle's default for cel-go applies.
	m.GoDeps.GazelleOverrides = nil
	repos = GoRepos([]string{"github.com/google/cel-go"}, m.GoDeps, defaults)
	assert.Equal(t, "go_default_library", repos[0].NamingConvention)

	// gazelle_default_attributes sits between the two.
	m.GoDeps.DefaultAttributes = &GazelleOverride{Directives: []string{"gazelle:go_naming_convention import_alias"}}
	repos = GoRepos([]string{"github.com/google/cel-go"}, m.GoDeps, defaults)
	assert.Equal(t, "import_alias", repos[0].NamingConvention)
}

func TestParseGazelleDefaultsRefusesAnUnknownLayout(t *testing.T) {
	_, err := ParseGazelleDefaults("defaults.bzl", []byte(`DEFAULTS = {}`))
	require.ErrorContains(t, err, "has Gazelle moved its defaults")
}

// TestPinnedGazelleDefaults reads the defaults of the Gazelle this
// repository pins, from its source, and checks the fact the BUILD files
// depend on: cel-go's libraries are named go_default_library.
func TestPinnedGazelleDefaults(t *testing.T) {
	m, err := ReadModule(filepath.Join("..", "..", "..", "MODULE.bazel"))
	require.NoError(t, err)
	defaults, err := LoadGazelleDefaults(m)
	require.NoError(t, err)
	repos := GoRepos([]string{"github.com/google/cel-go"}, m.GoDeps, defaults)
	assert.Equal(t, "go_default_library", repos[0].NamingConvention)
}
