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

// TestSampleAgentRendersPinned: the sample Agent names the agent-opencode
// image by placeholder, which rendering pins by digest like the others.
func TestSampleAgentRendersPinned(t *testing.T) {
	files, err := render.Collect([]string{filepath.Join("..", "..", "manifests", "samples", "agent.yaml")})
	require.NoError(t, err)
	r := renderer()
	const dAgent = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	r.Digests[images.AgentOpenCode.Name] = dAgent
	rendered, err := r.RenderFiles(files)
	require.NoError(t, err)
	out := string(render.Stream(rendered))
	assert.Contains(t, out, "agentImage: ghcr.io/kubeopencode/agent-opencode@"+dAgent)
	assert.NotContains(t, out, images.PlaceholderPrefix)

	_, err = renderer().RenderFiles(files)
	require.Error(t, err, "without the agent image's digest the sample does not render")
	assert.Contains(t, err.Error(), "no digest for image agent-opencode")
}
