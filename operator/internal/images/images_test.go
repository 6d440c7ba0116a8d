package images

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

const (
	pinnedGit = "ghcr.io/kubeopencode/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	pinnedCtx = "ghcr.io/kubeopencode/context-init@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func TestValidateNamesEveryBadImage(t *testing.T) {
	assert.NoError(t, Images{GitInit: pinnedGit, ContextInit: pinnedCtx}.Validate())

	err := Images{ContextInit: "ghcr.io/kubeopencode/context-init:v1"}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--git-init-image is not set")
	assert.Contains(t, err.Error(), `--context-init-image "ghcr.io/kubeopencode/context-init:v1" is not pinned by digest`)

	assert.Error(t, Images{GitInit: "ghcr.io/x@sha256:abc", ContextInit: pinnedCtx}.Validate(), "a truncated digest is not a pin")
}

// push puts a random image at ref in the registry and returns its digest.
func push(t *testing.T, ref string) v1.Hash {
	t.Helper()
	img, err := random.Image(512, 1)
	require.NoError(t, err)
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	require.NoError(t, remote.Write(tag, img))
	d, err := img.Digest()
	require.NoError(t, err)
	return d
}

func TestSelectResolvesTagsToDigests(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	gitV1 := push(t, host+"/mirror/git-init:v1.2.0")
	ctxV1 := push(t, host+"/mirror/context-init:v1.2.0")

	now := time.Unix(1_700_000_000, 0)
	r := &Resolver{Defaults: Images{GitInit: pinnedGit, ContextInit: pinnedCtx}, Version: "v1.0.0", TTL: time.Minute, Now: func() time.Time { return now }}
	ctx := context.Background()

	got, err := r.Select(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, r.Defaults, got, "without systemImage the deployed digests are used")

	sys := &v1alpha1.SystemImage{Registry: host + "/mirror", Tag: "v1.2.0"}
	got, err = r.Select(ctx, sys)
	require.NoError(t, err)
	assert.Equal(t, host+"/mirror/git-init@"+gitV1.String(), got.GitInit)
	assert.Equal(t, host+"/mirror/context-init@"+ctxV1.String(), got.ContextInit)
	assert.True(t, IsPinned(got.GitInit) && IsPinned(got.ContextInit))

	// The tag moves; within the TTL every Task keeps getting the same digest.
	gitV2 := push(t, host+"/mirror/git-init:v1.2.0")
	got, err = r.Select(ctx, sys)
	require.NoError(t, err)
	assert.Equal(t, host+"/mirror/git-init@"+gitV1.String(), got.GitInit)
	now = now.Add(2 * time.Minute)
	got, err = r.Select(ctx, sys)
	require.NoError(t, err)
	assert.Equal(t, host+"/mirror/git-init@"+gitV2.String(), got.GitInit, "after the TTL the moved tag is picked up")

	// A tag that does not exist is an error that says what to check.
	_, err = r.Select(ctx, &v1alpha1.SystemImage{Registry: host + "/mirror", Tag: "v9.9.9"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot resolve "+host+"/mirror/git-init:v9.9.9 to a digest")
	assert.Contains(t, err.Error(), "spec.systemImage")

	// Only a registry: the controller's own version is the tag.
	push(t, host+"/other/git-init:v1.0.0")
	push(t, host+"/other/context-init:v1.0.0")
	got, err = r.Select(ctx, &v1alpha1.SystemImage{Registry: host + "/other"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(got.GitInit, host+"/other/git-init@sha256:"))

	// Only a tag: the deployed registry is kept.
	dev := &Resolver{Defaults: Images{GitInit: host + "/mirror/git-init@" + gitV1.String(), ContextInit: host + "/mirror/context-init@" + ctxV1.String()}}
	got, err = dev.Select(ctx, &v1alpha1.SystemImage{Tag: "v1.2.0"})
	require.NoError(t, err)
	assert.Equal(t, host+"/mirror/context-init@"+ctxV1.String(), got.ContextInit)

	_, err = dev.Select(ctx, &v1alpha1.SystemImage{Registry: host + "/mirror"})
	require.Error(t, err, "a development build has no version to use as the tag")
	assert.Contains(t, err.Error(), "set spec.systemImage.tag")
}
