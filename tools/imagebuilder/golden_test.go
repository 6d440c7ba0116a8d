package imagebuilder_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// TestGoldenLayerContents pins what each image holds: the base files and
// exactly one binary, with their owners and modes, and the run-time
// configuration. Run with -update after an intended change.
func TestGoldenLayerContents(t *testing.T) {
	built := buildAll(t)
	for _, img := range images.All {
		t.Run(img.Name, func(t *testing.T) {
			idx := built[img.Name].Index
			im, err := idx.IndexManifest()
			require.NoError(t, err)
			var listings []string
			for _, m := range im.Manifests {
				one, err := idx.Image(m.Digest)
				require.NoError(t, err)
				listings = append(listings, describe(t, one))
			}
			for i := range listings[1:] {
				assert.Equal(t, listings[0], listings[i+1], "platforms %s and %s differ in content", im.Manifests[0].Platform, im.Manifests[i+1].Platform)
			}

			golden := filepath.Join("testdata", "golden", img.Name+".txt")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(listings[0]), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run `go test ./tools/imagebuilder -run TestGoldenLayerContents -update` to create it")
			assert.Equal(t, string(want), listings[0], "image %s changed; if intended, rerun with -update and review the diff", img.Name)

			binaries := 0
			for _, line := range strings.Split(listings[0], "\n") {
				if strings.HasPrefix(line, "-rwx") {
					binaries++
					assert.True(t, strings.HasSuffix(line, " "+strings.TrimPrefix(img.BinaryPath(), "/")), "unexpected executable: %s", line)
				}
			}
			assert.Equal(t, 1, binaries, "an image holds exactly one executable")
		})
	}
}

// describe lists an image's configuration and, layer by layer, every entry
// as mode, owner and path. Binary contents are left out: they change with
// every commit.
func describe(t *testing.T, img v1.Image) string {
	t.Helper()
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	var b strings.Builder
	fmt.Fprintf(&b, "user: %s\nentrypoint: %q\nworkdir: %s\nenv: %q\n", cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.WorkingDir, cfg.Config.Env)
	layers, err := img.Layers()
	require.NoError(t, err)
	for i, l := range layers {
		fmt.Fprintf(&b, "layer %d:\n", i+1)
		rc, err := l.Uncompressed()
		require.NoError(t, err)
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			fmt.Fprintf(&b, "%s %d:%d %s\n", hdr.FileInfo().Mode(), hdr.Uid, hdr.Gid, strings.TrimSuffix(hdr.Name, "/"))
		}
		require.NoError(t, rc.Close())
	}
	return b.String()
}
