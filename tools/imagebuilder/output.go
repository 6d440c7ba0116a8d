package imagebuilder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DigestFile is the name of the file that holds the digest of an image's
// index, as rules_oci writes it for `<target>.digest`: one line, "sha256:...".
func DigestFile(imageName string) string { return imageName + ".digest" }

// WriteLayout writes the image as an OCI image layout in dir/<name>/ and its
// digest to dir/<name>.digest. The layout's index.json points at the image
// index, the same shape rules_oci's oci_image_index produces, so crane,
// skopeo and oras read either.
func WriteLayout(dir string, b *Built) (string, error) {
	p := filepath.Join(dir, b.Image.Name)
	// A stale layout would keep blobs of older builds next to the new ones.
	if err := os.RemoveAll(p); err != nil {
		return "", err
	}
	lp, err := layout.Write(p, empty.Index)
	if err != nil {
		return "", fmt.Errorf("image %s: writing OCI layout %s: %w", b.Image.Name, p, err)
	}
	if err := lp.AppendIndex(b.Index); err != nil {
		return "", fmt.Errorf("image %s: writing OCI layout %s: %w", b.Image.Name, p, err)
	}
	df := filepath.Join(dir, DigestFile(b.Image.Name))
	if err := os.WriteFile(df, []byte(b.Digest.String()+"\n"), 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// Push uploads the image index to repository (for example
// "ghcr.io/kubeopencode/controller"), by digest and under each tag, and
// returns the pinned reference "repository@sha256:...".
func Push(ctx context.Context, repository string, b *Built, tags []string, nameOpts []name.Option, opts ...remote.Option) (string, error) {
	repo, err := name.NewRepository(repository, nameOpts...)
	if err != nil {
		return "", fmt.Errorf("image %s: repository %q: %w", b.Image.Name, repository, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	pinned := repo.Digest(b.Digest.String())
	if err := remote.WriteIndex(pinned, b.Index, opts...); err != nil {
		return "", fmt.Errorf("image %s: pushing to %s: %w", b.Image.Name, repo, err)
	}
	for _, t := range tags {
		tag := repo.Tag(t)
		if err := remote.Tag(tag, b.Index, opts...); err != nil {
			return "", fmt.Errorf("image %s: tagging %s: %w", b.Image.Name, tag, err)
		}
	}
	return pinned.String(), nil
}
