package images_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bazelbuild/buildtools/build"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// The Bazel pipeline declares the images again in Starlark. These tests parse
// the BUILD files and fail when a Bazel target disagrees with the Go
// definition the Go-native builder uses: binary, entrypoint, user, labels,
// platforms and base.

// repoRoot is the repository root both under `go test` (the package
// directory) and under `bazel test` (the package directory in the runfiles).
const repoRoot = "../.."

// starlark is a parsed BUILD, .bzl or MODULE.bazel file with just enough
// evaluation for literal attributes and top-level constants.
type starlark struct {
	t    *testing.T
	file *build.File
	vars map[string]build.Expr
}

func parse(t *testing.T, rel string) *starlark {
	t.Helper()
	p := filepath.Join(repoRoot, filepath.FromSlash(rel))
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	var f *build.File
	switch {
	case strings.HasSuffix(rel, ".bzl"):
		f, err = build.ParseBzl(p, data)
	case strings.HasSuffix(rel, "MODULE.bazel"):
		f, err = build.ParseModule(p, data)
	default:
		f, err = build.ParseBuild(p, data)
	}
	require.NoError(t, err)
	s := &starlark{t: t, file: f, vars: map[string]build.Expr{}}
	for _, stmt := range f.Stmt {
		if a, ok := stmt.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok {
				s.vars[id.Name] = a.RHS
			}
		}
	}
	return s
}

// eval turns a literal expression into Go values: strings, []any and
// map[string]any; identifiers are looked up among top-level assignments and
// "+" concatenates strings and lists.
func (s *starlark) eval(x build.Expr) any {
	switch x := x.(type) {
	case *build.StringExpr:
		return x.Value
	case *build.Ident:
		if v, ok := s.vars[x.Name]; ok {
			return s.eval(v)
		}
		return "<" + x.Name + ">"
	case *build.ListExpr:
		var out []any
		for _, e := range x.List {
			out = append(out, s.eval(e))
		}
		return out
	case *build.DictExpr:
		out := map[string]any{}
		for _, kv := range x.List {
			out[fmt.Sprint(s.eval(kv.Key))] = s.eval(kv.Value)
		}
		return out
	case *build.BinaryExpr:
		l, r := s.eval(x.X), s.eval(x.Y)
		if x.Op == "+" {
			if ls, ok := l.(string); ok {
				return ls + fmt.Sprint(r)
			}
			if ll, ok := l.([]any); ok {
				rl, _ := r.([]any)
				return append(append([]any(nil), ll...), rl...)
			}
		}
	case *build.CallExpr:
		// " ".join([...]) in genrule commands.
		if dot, ok := x.X.(*build.DotExpr); ok && dot.Name == "join" && len(x.List) == 1 {
			var parts []string
			for _, p := range s.eval(x.List[0]).([]any) {
				parts = append(parts, fmt.Sprint(p))
			}
			return strings.Join(parts, fmt.Sprint(s.eval(dot.X)))
		}
	}
	s.t.Fatalf("%s: cannot evaluate %s", s.file.Path, build.FormatString(x))
	return nil
}

// rules returns the calls of the named kind (or, for extension tags like
// "oci.pull", dotted calls), keyed by their name attribute.
func (s *starlark) rules(kind string) map[string]*build.CallExpr {
	out := map[string]*build.CallExpr{}
	for _, stmt := range s.file.Stmt {
		call, ok := stmt.(*build.CallExpr)
		if !ok || build.FormatString(call.X) != kind {
			continue
		}
		out[fmt.Sprint(s.attr(call, "name"))] = call
	}
	return out
}

func (s *starlark) attr(call *build.CallExpr, name string) any {
	for _, arg := range call.List {
		if a, ok := arg.(*build.AssignExpr); ok {
			if id, ok := a.LHS.(*build.Ident); ok && id.Name == name {
				return s.eval(a.RHS)
			}
		}
	}
	return nil
}

func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// packageDir is the directory of a main package inside the repository.
func packageDir(img images.Image) string {
	return strings.TrimPrefix(img.MainPackage, images.Module+"/")
}

func TestBazelImagesMatchDefinitions(t *testing.T) {
	root := parse(t, "BUILD.bazel")
	tars := root.rules("pkg_tar")
	labels := root.rules("expand_template")
	ociImages := root.rules("oci_image")
	indexes := root.rules("oci_image_index")
	pushes := root.rules("oci_push")

	var wantPlatforms []string
	for _, p := range images.Platforms {
		wantPlatforms = append(wantPlatforms, p.BazelPlatform())
	}

	for _, img := range images.All {
		t.Run(img.Name, func(t *testing.T) {
			binLabel := "//" + packageDir(img)

			layer := tars[img.Name+"_layer"]
			require.NotNil(t, layer, "BUILD.bazel: no pkg_tar %s_layer", img.Name)
			assert.Equal(t, []string{binLabel}, strs(root.attr(layer, "srcs")),
				"%s_layer must hold exactly the binary of %s", img.Name, img.MainPackage)
			assert.Equal(t, images.BinaryDir, root.attr(layer, "package_dir"))
			assert.Nil(t, root.attr(layer, "files"), "pkg_tar's files attribute is obsolete")
			// pkg_tar names the file after the go_binary, which Gazelle names
			// after the directory: that name must be the image name.
			assert.Equal(t, img.Name, path.Base(packageDir(img)), "the binary of %s would land at %s/%s, not %s",
				img.Name, images.BinaryDir, path.Base(packageDir(img)), img.BinaryPath())
			assert.Equal(t, "0755", root.attr(layer, "mode"))
			assert.Equal(t, "0.0", root.attr(layer, "owner"))

			image := ociImages[img.Name+"_image"]
			require.NotNil(t, image, "BUILD.bazel: no oci_image %s_image", img.Name)
			assert.Equal(t, "@"+images.DistrolessStatic.BazelRepo, root.attr(image, "base"))
			assert.Equal(t, img.Entrypoint(), strs(root.attr(image, "entrypoint")))
			assert.Equal(t, images.User, root.attr(image, "user"))
			assert.Equal(t, []string{":" + img.Name + "_layer"}, strs(root.attr(image, "tars")), "an image holds the base and one binary layer")
			assert.Equal(t, ":"+img.Name+"_labels", root.attr(image, "labels"))

			lbl := labels[img.Name+"_labels"]
			require.NotNil(t, lbl, "BUILD.bazel: no expand_template %s_labels", img.Name)
			got := map[string]string{}
			for _, line := range strs(root.attr(lbl, "template")) {
				k, v, ok := strings.Cut(line, "=")
				require.True(t, ok, "label line %q is not key=value", line)
				got[k] = v
			}
			assert.Equal(t, img.Labels("0.0.0-dev", "unknown-revision"), got)
			assert.Equal(t, map[string]any{"0.0.0-dev": "{{STABLE_VERSION}}", "unknown-revision": "{{STABLE_GIT_COMMIT}}"}, root.attr(lbl, "stamp_substitutions"))

			index := indexes[img.Name+"_index"]
			require.NotNil(t, index, "BUILD.bazel: no oci_image_index %s_index", img.Name)
			assert.Equal(t, []string{":" + img.Name + "_image"}, strs(root.attr(index, "images")))
			assert.Equal(t, wantPlatforms, strs(root.attr(index, "platforms")))

			push := pushes[img.Name+"_push"]
			require.NotNil(t, push, "BUILD.bazel: no oci_push %s_push", img.Name)
			assert.Equal(t, ":"+img.Name+"_index", root.attr(push, "image"))
			assert.True(t, strings.HasSuffix(fmt.Sprint(root.attr(push, "repository")), "/"+img.Name))

			// The binary target is the Gazelle-generated one in the main package.
			pkg := parse(t, packageDir(img)+"/BUILD.bazel")
			bin := pkg.rules("kubeopencode_go_binary")[path.Base(packageDir(img))]
			require.NotNil(t, bin, "%s/BUILD.bazel: no kubeopencode_go_binary %s; run tools/bazel/update.sh", packageDir(img), path.Base(packageDir(img)))
			embeds := strs(pkg.attr(bin, "embed"))
			require.Len(t, embeds, 1)
			lib := pkg.rules("go_library")[strings.TrimPrefix(embeds[0], ":")]
			require.NotNil(t, lib, "%s: the binary embeds %s, which is not a go_library there", packageDir(img), embeds[0])
			assert.Equal(t, img.MainPackage, pkg.attr(lib, "importpath"))
		})
	}

	// No image is declared in Bazel that tools/images does not know.
	for name := range ociImages {
		_, err := images.ByName(strings.TrimSuffix(name, "_image"))
		assert.NoError(t, err, "BUILD.bazel: oci_image %s has no definition in tools/images", name)
	}
	assert.Len(t, indexes, len(images.Buildable()))
}

// TestBazelAgentImageMatchesDefinition: the agent image's Bazel target has
// the launcher, entrypoint, user, environment, labels and platforms of
// tools/images. (Its pinned inputs are generated from tools/images by
// tools/bazel/agentinputs, which tools/bazel/check.sh runs with -check.)
func TestBazelAgentImageMatchesDefinition(t *testing.T) {
	root := parse(t, "BUILD.bazel")
	img := images.AgentOpenCode
	image := root.rules("oci_image")[img.Name+"_image"]
	require.NotNil(t, image, "BUILD.bazel: no oci_image %s_image", img.Name)
	assert.Equal(t, "@"+images.DistrolessStatic.BazelRepo, root.attr(image, "base"))
	assert.Equal(t, img.Entrypoint(), strs(root.attr(image, "entrypoint")))
	assert.Equal(t, images.User, root.attr(image, "user"))
	want := map[string]any{}
	for _, e := range images.AgentEnv {
		k, v, _ := strings.Cut(e, "=")
		want[k] = v
	}
	assert.Equal(t, want, root.attr(image, "env"))

	layer := root.rules("pkg_tar")[img.Name+"_layer"]
	require.NotNil(t, layer)
	assert.Equal(t, []string{"//" + packageDir(img)}, strs(root.attr(layer, "srcs")))
	assert.Equal(t, images.BinaryDir, root.attr(layer, "package_dir"))

	lbl := root.rules("expand_template")[img.Name+"_labels"]
	require.NotNil(t, lbl)
	got := map[string]string{}
	for _, line := range strs(root.attr(lbl, "template")) {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	assert.Equal(t, img.Labels("0.0.0-dev", "unknown-revision"), got)

	index := root.rules("oci_image_index")[img.Name+"_index"]
	require.NotNil(t, index)
	var wantPlatforms []string
	for _, p := range images.Platforms {
		wantPlatforms = append(wantPlatforms, p.BazelPlatform())
		assert.Contains(t, images.OpenCodeNPM, p.Arch, "OpenCode is pinned for %s", p)
		assert.NotEmpty(t, images.AgentDebianPackages[p.Arch], "Debian packages are pinned for %s", p)
	}
	assert.Equal(t, wantPlatforms, strs(root.attr(index, "platforms")))
	push := root.rules("oci_push")[img.Name+"_push"]
	require.NotNil(t, push)
	assert.True(t, strings.HasSuffix(fmt.Sprint(root.attr(push, "repository")), "/"+img.Name))
}

func TestBazelBinariesArePureStaticAndStamped(t *testing.T) {
	defs := parse(t, "tools/bazel/defs.bzl")
	var binary *build.CallExpr
	build.Walk(defs.file, func(x build.Expr, _ []build.Expr) {
		if c, ok := x.(*build.CallExpr); ok && build.FormatString(c.X) == "go_binary" {
			binary = c
		}
	})
	require.NotNil(t, binary, "tools/bazel/defs.bzl: kubeopencode_go_binary must call go_binary")
	assert.Equal(t, "on", defs.attr(binary, "pure"), "binaries run on a base without libc: pure = \"on\"")
	assert.Equal(t, "on", defs.attr(binary, "static"))
	assert.Equal(t, map[string]any{images.VersionSymbol: "{STABLE_VERSION}"}, defs.attr(binary, "x_defs"),
		"the Bazel binaries stamp the variable the Go-native builder stamps")

	root, err := os.ReadFile(filepath.Join(repoRoot, "BUILD.bazel"))
	require.NoError(t, err)
	assert.Contains(t, string(root), "# gazelle:map_kind go_binary kubeopencode_go_binary //tools/bazel:defs.bzl",
		"Gazelle must write kubeopencode_go_binary so every image binary is pure and static")
}

func TestBazelBaseMatchesDefinition(t *testing.T) {
	mod := parse(t, "MODULE.bazel")
	pulls := mod.rules("oci.pull")
	pull := pulls[images.DistrolessStatic.BazelRepo]
	require.NotNil(t, pull, "MODULE.bazel: no oci.pull named %s", images.DistrolessStatic.BazelRepo)
	assert.Equal(t, images.DistrolessStatic.Repository, mod.attr(pull, "image"))
	assert.Equal(t, images.DistrolessStatic.Digest, mod.attr(pull, "digest"), "pin the base by digest, the same one tools/images uses")
	assert.Nil(t, mod.attr(pull, "tag"), "a tag can move: keep it only in the comment")

	var platforms []string
	for _, p := range strs(mod.attr(pull, "platforms")) {
		platforms = append(platforms, strings.Join(strings.Split(p, "/")[:2], "/"))
	}
	var want []string
	for _, p := range images.Platforms {
		want = append(want, p.String())
	}
	sort.Strings(platforms)
	assert.Equal(t, want, platforms)

	data, err := os.ReadFile(filepath.Join(repoRoot, "MODULE.bazel"))
	require.NoError(t, err)
	assert.Contains(t, string(data), "# "+images.DistrolessStatic.Repository+":"+images.DistrolessStatic.Tag,
		"keep the tag the digest was taken from in a comment beside it")

	var used []string
	for _, stmt := range mod.file.Stmt {
		if c, ok := stmt.(*build.CallExpr); ok && build.FormatString(c.X) == "use_repo" && build.FormatString(c.List[0]) == "oci" {
			for _, a := range c.List[1:] {
				used = append(used, fmt.Sprint(mod.eval(a)))
			}
		}
	}
	assert.Contains(t, used, images.DistrolessStatic.BazelRepo)
	for _, p := range strs(mod.attr(pull, "platforms")) {
		assert.Contains(t, used, images.DistrolessStatic.BazelRepo+"_"+strings.ReplaceAll(p, "/", "_"),
			"use_repo(oci, ...) must list the per-platform repository of %s", p)
	}
}

func TestBazelManifestsPinEveryImage(t *testing.T) {
	root := parse(t, "BUILD.bazel")
	gen := root.rules("genrule")["manifests"]
	require.NotNil(t, gen, "BUILD.bazel: no genrule manifests")
	cmd := fmt.Sprint(root.attr(gen, "cmd"))
	srcs := strs(root.attr(gen, "srcs"))
	for _, img := range images.All {
		assert.Contains(t, cmd, "--digest="+img.Name+"=$(execpath :"+img.Name+"_index.digest)")
		assert.Contains(t, srcs, ":"+img.Name+"_index.digest")
	}

	deploy := root.rules("sh_binary")["deploy"]
	require.NotNil(t, deploy, "BUILD.bazel: no sh_binary deploy")
	args := strs(root.attr(deploy, "args"))
	var want []string
	want = append(want, "$(rlocationpath //tools/render/cmd/render)")
	for _, img := range images.All {
		want = append(want, "$(rlocationpath :"+img.Name+"_push)")
	}
	for _, img := range images.All {
		want = append(want, "$(rlocationpath :"+img.Name+"_index.digest)")
	}
	require.GreaterOrEqual(t, len(args), len(want))
	assert.Equal(t, want, args[:len(want)], "tools/bazel/deploy.sh reads the renderer, the pushes and the digests in this order")
}
