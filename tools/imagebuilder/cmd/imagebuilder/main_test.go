package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

const hello = images.Module + "/tools/imagebuilder/testdata/hello"

func TestPushPrintsPinnedReferencesAndWritesDigests(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	prefix := strings.TrimPrefix(srv.URL, "http://") + "/kubeopencode"
	out := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")

	var stdout, stderr bytes.Buffer
	args := []string{"--module", "../../../..", "--out", out, "--platforms", "linux/amd64",
		"--version", "v1.2.3", "--revision", "abc", "--push", prefix, "--tag", "v1.2.3",
		"--images", strings.Join(controllerImages(), ",")}
	for _, img := range images.All {
		args = append(args, "--main", img.Name+"="+hello)
	}
	require.NoError(t, run(context.Background(), args, &stdout, &stderr), stderr.String())

	lines := strings.Fields(stdout.String())
	require.Len(t, lines, len(images.All), "one pinned reference per image on stdout")
	for i, img := range images.All {
		digest, err := os.ReadFile(filepath.Join(out, img.Name+".digest"))
		require.NoError(t, err)
		assert.Equal(t, img.Repository(prefix)+"@"+strings.TrimSpace(string(digest)), lines[i])
		assert.DirExists(t, filepath.Join(out, img.Name))

		tagged, err := name.NewTag(img.Repository(prefix) + ":v1.2.3")
		require.NoError(t, err)
		desc, err := remote.Head(tagged)
		require.NoError(t, err)
		assert.Equal(t, strings.TrimSpace(string(digest)), desc.Digest.String(), "tag v1.2.3 of %s", img.Name)
	}
}

func TestRejectsUnpinnedOrUnknownInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--base", "gcr.io/distroless/static-debian12:nonroot"}, "must be pinned by digest"},
		{[]string{"--base", images.DistrolessStatic.Reference(), "--pull-base"}, "give one"},
		{[]string{"--images", "controller,operator"}, `no image named "operator"`},
		{[]string{"--main", "controller"}, "want image=importpath"},
		{[]string{"--platforms", "linux"}, "is not os/arch"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			err := run(context.Background(), append([]string{"--module", "../../../..", "--out", t.TempDir()}, tc.args...), io.Discard, io.Discard)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// controllerImages names images.All: the agent image's pinned inputs are
// tested in tools/imagebuilder.
func controllerImages() []string {
	var n []string
	for _, img := range images.All {
		n = append(n, img.Name)
	}
	return n
}
