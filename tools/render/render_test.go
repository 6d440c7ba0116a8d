package render_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/render"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

const (
	dController  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dGitInit     = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	dContextInit = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func renderer() render.Renderer {
	return render.Renderer{
		Repository: "ghcr.io/kubeopencode",
		Digests:    map[string]string{"controller": dController, "git-init": dGitInit, "context-init": dContextInit},
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       render.Renderer
		in      string
		want    string
		wantErr []string
	}{
		{
			name: "container image",
			in:   "image: kubeopencode.io/image/controller\n",
			want: "image: ghcr.io/kubeopencode/controller@" + dController + "\n",
		},
		{
			name: "init image flags, plain and quoted",
			in:   "args:\n- --git-init-image=kubeopencode.io/image/git-init\n- \"--context-init-image=kubeopencode.io/image/context-init\"\n",
			want: "args:\n- --git-init-image=ghcr.io/kubeopencode/git-init@" + dGitInit + "\n- \"--context-init-image=ghcr.io/kubeopencode/context-init@" + dContextInit + "\"\n",
		},
		{
			name: "the same placeholder twice on one line",
			in:   "a: kubeopencode.io/image/git-init kubeopencode.io/image/git-init\n",
			want: "a: ghcr.io/kubeopencode/git-init@" + dGitInit + " ghcr.io/kubeopencode/git-init@" + dGitInit + "\n",
		},
		{
			name: "a local registry prefix with a port and a trailing slash",
			r:    render.Renderer{Repository: "localhost:5001/kubeopencode/", Digests: map[string]string{"controller": dController}},
			in:   "image: kubeopencode.io/image/controller",
			want: "image: localhost:5001/kubeopencode/controller@" + dController,
		},
		{
			name: "a manifest without placeholders passes unchanged",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeopencode-system\n  labels:\n    kubeopencode.io/managed: \"true\"\n",
			want: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeopencode-system\n  labels:\n    kubeopencode.io/managed: \"true\"\n",
		},
		{
			name:    "an unknown image is refused with its line",
			in:      "kind: Deployment\nimage: kubeopencode.io/image/operator\n",
			wantErr: []string{"in.yaml:2: placeholder kubeopencode.io/image/operator", `no image named "operator"`},
		},
		{
			name:    "a missing digest is refused and names the file to pass",
			r:       render.Renderer{Repository: "ghcr.io/kubeopencode", Digests: map[string]string{"controller": dController}},
			in:      "image: kubeopencode.io/image/controller\nargs: [--git-init-image=kubeopencode.io/image/git-init]\n",
			wantErr: []string{"in.yaml:2:", "no digest for image git-init", "git-init.digest"},
		},
		{
			name:    "a placeholder with a tag is refused",
			in:      "image: kubeopencode.io/image/controller:latest\n",
			wantErr: []string{"in.yaml:1:", "followed by a tag or digest"},
		},
		{
			name:    "an empty image name is refused",
			in:      "image: kubeopencode.io/image/\n",
			wantErr: []string{`no image named ""`},
		},
		{
			name:    "a prefix that makes no valid reference is refused",
			r:       render.Renderer{Repository: "GHCR.io/Upper Case", Digests: map[string]string{"controller": dController}},
			in:      "image: kubeopencode.io/image/controller\n",
			wantErr: []string{"does not make a valid reference"},
		},
		{
			name:    "every problem is reported at once",
			r:       render.Renderer{Repository: "ghcr.io/kubeopencode", Digests: map[string]string{}},
			in:      "a: kubeopencode.io/image/controller\nb: kubeopencode.io/image/context-init\n",
			wantErr: []string{"in.yaml:1:", "in.yaml:2:", "no digest for image controller", "no digest for image context-init"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			if r.Repository == "" {
				r = renderer()
			}
			got, err := r.Render("in.yaml", []byte(tc.in))
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.ErrorContains(t, err, w)
				}
				assert.Nil(t, got, "nothing is returned when a placeholder stays unresolved")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
}

func TestReadDigests(t *testing.T) {
	got, err := render.ReadDigestDir(filepath.Join("testdata", "digests"))
	require.NoError(t, err)
	assert.Len(t, got, 3)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, got["context-init"], "a file without a trailing newline, as jq -j writes it")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "controller.digest"), []byte("latest\n"), 0o644))
	_, err = render.ReadDigestDir(dir)
	require.ErrorContains(t, err, `"latest" is not a digest`)

	_, err = render.ReadDigestDir(t.TempDir())
	require.ErrorContains(t, err, "build the images first")
}

// TestGoldenTree renders testdata/manifests with the digests in
// testdata/digests, as a release does; run with -update after an intended change.
func TestGoldenTree(t *testing.T) {
	digests, err := render.ReadDigestDir(filepath.Join("testdata", "digests"))
	require.NoError(t, err)
	files, err := render.Collect([]string{filepath.Join("testdata", "manifests")})
	require.NoError(t, err)
	require.Len(t, files, 2, "only YAML files are collected")
	r := render.Renderer{Repository: "ghcr.io/kubeopencode", Digests: digests}
	rendered, err := r.RenderFiles(files)
	require.NoError(t, err)
	got := render.Stream(rendered)

	golden := filepath.Join("testdata", "golden", "kubeopencode.yaml")
	if *update {
		require.NoError(t, os.WriteFile(golden, got, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))
	assert.NotContains(t, string(got), "kubeopencode.io/image/")
}

// TestStreamInstallOrder: kubectl applies a stream in order, so the
// Namespace and the CRDs must come before any object that needs them, even
// when the input files list them later or mix them with other kinds.
func TestStreamInstallOrder(t *testing.T) {
	files := []render.File{
		{Path: "controller/deployment.yaml", Content: []byte("# the controller\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: c\n  namespace: ns\n")},
		{Path: "controller/rbac.yaml", Content: []byte("---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: ns\n---\n# comment-only part\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n---\n")},
		{Path: "crd/tasks.yaml", Content: []byte("---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: tasks.kubeopencode.io\n")},
	}
	got := string(render.Stream(files))
	want := "---\n# Source: controller/rbac.yaml\n# comment-only part\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n" +
		"---\n# Source: crd/tasks.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: tasks.kubeopencode.io\n" +
		"---\n# Source: controller/deployment.yaml\n# the controller\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: c\n  namespace: ns\n" +
		"---\n# Source: controller/rbac.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: ns\n"
	assert.Equal(t, want, got)
}
