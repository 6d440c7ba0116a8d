// Package images holds the helper images the controller puts into every Job
// and resolves KubeOpenCodeConfig's registry and tag to digests.
//
// Every image a Job runs besides the agent's own is named here, passed to
// the controller as one flag each, and must be pinned by digest: a Job is
// never created with a mutable tag.
package images

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// Images are the helper images, pinned by digest (repository@sha256:...).
type Images struct {
	// GitInit clones Git contexts (flag --git-init-image).
	GitInit string
	// ContextInit writes task.md and the context files (flag --context-init-image).
	ContextInit string
}

// Validate names every image that is missing or not pinned by digest.
func (i Images) Validate() error {
	var errs []error
	for _, f := range []struct{ flag, ref string }{
		{"--git-init-image", i.GitInit},
		{"--context-init-image", i.ContextInit},
	} {
		switch {
		case f.ref == "":
			errs = append(errs, fmt.Errorf("%s is not set: pass the image as repository@sha256:<digest>", f.flag))
		case !IsPinned(f.ref):
			errs = append(errs, fmt.Errorf("%s %q is not pinned by digest: pass repository@sha256:<digest> (the build writes it into the Deployment)", f.flag, f.ref))
		}
	}
	return errors.Join(errs...)
}

// IsPinned reports whether ref names an image by a sha256 digest.
func IsPinned(ref string) bool {
	_, err := name.NewDigest(ref)
	return err == nil && strings.Contains(ref, "@sha256:")
}

// Resolver turns KubeOpenCodeConfig's spec.systemImage into pinned images.
// Tag lookups are cached for TTL, so a burst of Tasks costs one registry
// round trip per image.
type Resolver struct {
	Defaults Images
	// Version is the controller's release, the tag used when systemImage
	// names only a registry.
	Version  string
	Keychain authn.Keychain
	TTL      time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	digest  string
	err     error
	expires time.Time
}

// Select returns the pinned images for the given system image settings.
func (r *Resolver) Select(ctx context.Context, sys *v1alpha1.SystemImage) (Images, error) {
	if sys == nil || (sys.Registry == "" && sys.Tag == "") {
		return r.Defaults, nil
	}
	tag := sys.Tag
	if tag == "" {
		tag = r.Version
	}
	if tag == "" || tag == "dev" {
		return Images{}, errors.New("KubeOpenCodeConfig cluster: spec.systemImage.tag is empty and this controller has no release version to default to: set spec.systemImage.tag")
	}
	var out Images
	var err error
	if out.GitInit, err = r.pin(ctx, sys.Registry, r.Defaults.GitInit, tag); err != nil {
		return Images{}, err
	}
	if out.ContextInit, err = r.pin(ctx, sys.Registry, r.Defaults.ContextInit, tag); err != nil {
		return Images{}, err
	}
	return out, nil
}

// pin resolves <registry>/<image>:<tag>, where <image> is the last path
// element of the default reference, so a mirror keeps the image names.
func (r *Resolver) pin(ctx context.Context, registry, def, tag string) (string, error) {
	d, err := name.NewDigest(def)
	if err != nil {
		return "", fmt.Errorf("default image %q: %w", def, err)
	}
	repo := d.Context().Name()
	base := repo[strings.LastIndex(repo, "/")+1:]
	if registry == "" {
		registry = repo[:strings.LastIndex(repo, "/")]
	}
	ref := strings.TrimSuffix(registry, "/") + "/" + base + ":" + tag
	digest, err := r.lookup(ctx, ref)
	if err != nil {
		return "", err
	}
	t, _ := name.NewTag(ref)
	return t.Context().Name() + "@" + digest, nil
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) lookup(ctx context.Context, ref string) (string, error) {
	r.mu.Lock()
	if c, ok := r.cache[ref]; ok && r.now().Before(c.expires) {
		r.mu.Unlock()
		return c.digest, c.err
	}
	r.mu.Unlock()

	digest, err := r.head(ctx, ref)
	ttl := r.TTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	if err != nil {
		// Failures are remembered briefly, so a burst of Tasks does not
		// hammer a registry that is down, but a fix is noticed soon.
		ttl = min(ttl, 10*time.Second)
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache = map[string]cached{}
	}
	r.cache[ref] = cached{digest: digest, err: err, expires: r.now().Add(ttl)}
	r.mu.Unlock()
	return digest, err
}

func (r *Resolver) head(ctx context.Context, ref string) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("KubeOpenCodeConfig cluster: spec.systemImage gives the image %q, which is not a valid reference: %v", ref, err)
	}
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	desc, err := remote.Head(tag, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return "", fmt.Errorf("cannot resolve %s to a digest: %v (check KubeOpenCodeConfig cluster spec.systemImage, that the tag is pushed, and the controller's registry credentials)", ref, err)
	}
	return desc.Digest.String(), nil
}
