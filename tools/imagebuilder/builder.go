// Package imagebuilder builds the KubeOpenCode images without Docker, in the
// manner of ko: each image is a base plus one layer holding one static Go
// binary, assembled with go-containerregistry into a multi-platform OCI image
// index. Every byte of the result is fixed by the sources, the Go toolchain,
// the version stamp and SOURCE_DATE_EPOCH, so two builds of one commit give
// one digest.
package imagebuilder

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// Builder builds images. The zero value is not usable: set ModuleDir, Epoch,
// Version, Revision and Base.
type Builder struct {
	// ModuleDir is the directory of the Go module the binaries come from.
	ModuleDir string
	// Go is the go command to run; "go" from PATH when empty.
	Go string
	// Env is added to the environment of the go command, for example to
	// point GOCACHE elsewhere.
	Env []string
	// Epoch is the timestamp of every file and of the image configuration.
	Epoch time.Time
	// Version is stamped into the binary and the version label.
	Version string
	// Revision is the commit the sources come from, for the revision label.
	Revision string
	// Platforms to build; images.Platforms when empty.
	Platforms []images.Platform
	// Base provides the base image per platform.
	Base BaseSource
	// Fetcher gets the pinned inputs of agent images; a Fetcher with the
	// default cache when nil.
	Fetcher Inputs
	// MainPackages overrides the Go main package of an image by image name,
	// for building an image from another package than images.Image.MainPackage.
	MainPackages map[string]string
}

// Built is a built multi-platform image.
type Built struct {
	Image images.Image
	Index v1.ImageIndex
	// Digest is the digest of Index, the reference manifests pin.
	Digest v1.Hash
}

// MainPackage is the Go package the builder compiles for img.
func (b *Builder) MainPackage(img images.Image) string {
	if p, ok := b.MainPackages[img.Name]; ok && p != "" {
		return p
	}
	return img.MainPackage
}

func (b *Builder) platforms() []images.Platform {
	if len(b.Platforms) > 0 {
		return b.Platforms
	}
	return images.Platforms
}

// Build compiles img's binary for every platform and assembles the image index.
func (b *Builder) Build(ctx context.Context, img images.Image) (*Built, error) {
	if b.Base == nil {
		return nil, fmt.Errorf("image %s: no base image configured", img.Name)
	}
	if b.Version == "" || b.Revision == "" {
		return nil, fmt.Errorf("image %s: set the version and revision to stamp", img.Name)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range b.platforms() {
		one, err := b.buildPlatform(ctx, img, p)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: one,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: p.OS, Architecture: p.Arch},
			},
		})
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	return &Built{Image: img, Index: idx, Digest: d}, nil
}

func (b *Builder) buildPlatform(ctx context.Context, img images.Image, p images.Platform) (v1.Image, error) {
	base, err := b.Base.Image(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("image %s (%s): %w", img.Name, p, err)
	}
	if img.Agent {
		if base, err = b.appendAgentLayers(ctx, base, p); err != nil {
			return nil, fmt.Errorf("image %s (%s): %w", img.Name, p, err)
		}
	}
	bin, err := b.goBuild(ctx, b.MainPackage(img), p)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	binPath := img.BinaryPath()[1:]
	entries := append(parents(binPath), file(binPath, 0o755, bin))
	layer, err := newLayer(entries, b.Epoch)
	if err != nil {
		return nil, fmt.Errorf("image %s (%s) binary layer: %w", img.Name, p, err)
	}
	withBin, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: b.Epoch},
			CreatedBy: "kubeopencode imagebuilder: go build " + b.MainPackage(img),
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := withBin.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Arch
	cfg.Created = v1.Time{Time: b.Epoch}
	cfg.Author = ""
	cfg.Config.User = images.User
	cfg.Config.Entrypoint = img.Entrypoint()
	cfg.Config.Cmd = nil
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	for k, v := range img.Labels(b.Version, b.Revision) {
		cfg.Config.Labels[k] = v
	}
	out, err := mutate.ConfigFile(withBin, cfg)
	if err != nil {
		return nil, err
	}
	// Images pulled from Docker Hub style registries may carry Docker media
	// types; the result is OCI throughout.
	out = mutate.MediaType(out, types.OCIManifestSchema1)
	out = mutate.ConfigMediaType(out, types.OCIConfigJSON)
	if rb, ok := b.Base.(*RemoteBase); ok {
		baseDigest, err := base.Digest()
		if err != nil {
			return nil, err
		}
		out = mutate.Annotations(out, map[string]string{
			"org.opencontainers.image.base.name":   rb.Ref.Context().String(),
			"org.opencontainers.image.base.digest": baseDigest.String(),
		}).(v1.Image)
	}
	return out, nil
}
