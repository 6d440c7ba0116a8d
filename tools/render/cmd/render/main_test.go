package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testdata = "../../testdata"

func TestRendersTreeToDirectoryAndStream(t *testing.T) {
	out := t.TempDir()
	args := []string{"--repository", "localhost:5001/kubeopencode", "--digests", filepath.Join(testdata, "digests"), "-o", out, filepath.Join(testdata, "manifests")}
	require.NoError(t, run(args, io.Discard, io.Discard))
	got, err := os.ReadFile(filepath.Join(out, "config", "controller.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(got), "image: localhost:5001/kubeopencode/controller@sha256:")
	assert.Contains(t, string(got), "--git-init-image=localhost:5001/kubeopencode/git-init@sha256:")
	assert.FileExists(t, filepath.Join(out, "namespace.yaml"))

	// Bazel hands over single digest files named after its targets.
	var stdout bytes.Buffer
	args = []string{"--repository", "ghcr.io/kubeopencode",
		"--digest", "controller=" + filepath.Join(testdata, "digests", "controller.digest"),
		"--digest", "git-init=" + filepath.Join(testdata, "digests", "git-init.digest"),
		"--digest", "context-init=" + filepath.Join(testdata, "digests", "context-init.digest"),
		filepath.Join(testdata, "manifests", "config", "controller.yaml")}
	require.NoError(t, run(args, &stdout, io.Discard))
	assert.Equal(t, 3, strings.Count(stdout.String(), "@sha256:"))
}

func TestRefusesToLeaveAPlaceholder(t *testing.T) {
	var stdout bytes.Buffer
	args := []string{"--repository", "ghcr.io/kubeopencode",
		"--digest", "controller=" + filepath.Join(testdata, "digests", "controller.digest"),
		filepath.Join(testdata, "manifests")}
	err := run(args, &stdout, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no digest for image git-init")
	assert.Contains(t, err.Error(), "no digest for image context-init")
	assert.Empty(t, stdout.String(), "nothing is written when a placeholder is left")

	require.ErrorContains(t, run([]string{filepath.Join(testdata, "manifests")}, io.Discard, io.Discard), "--repository is required")
	require.ErrorContains(t, run([]string{"--repository", "r", "--digest", "operator=x", "m"}, io.Discard, io.Discard), `no image named "operator"`)
}
