package render_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

// TestRepositoryManifestsRender renders the install manifests of this
// repository (what //:manifests and tools/bazel/deploy.sh apply) and checks
// that the controller Deployment ends up with every image pinned: its own
// and one flag per init image.
func TestRepositoryManifestsRender(t *testing.T) {
	dir := filepath.Join("..", "..", "manifests")
	files, err := render.Collect([]string{dir})
	require.NoError(t, err)
	install := render.InstallFiles(files)
	rendered, err := renderer().RenderFiles(install)
	require.NoError(t, err)
	out := string(render.Stream(rendered))

	assert.NotContains(t, out, images.PlaceholderPrefix)
	assert.Contains(t, out, "image: ghcr.io/kubeopencode/controller@"+dController)
	for _, img := range images.All {
		if img.ControllerFlag == "" {
			continue
		}
		want := "--" + img.ControllerFlag + "=ghcr.io/kubeopencode/" + img.Name + "@"
		assert.Contains(t, out, want, "the controller Deployment passes %s pinned by digest", img.Name)
	}
}
