package realnode_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

// echoImageName is the echo agent's image: built like the product images
// (same base, user 65532, one static binary) from e2e/echoagent.
const echoImageName = "echo-agent"

var echoImage = images.Image{
	Name:        echoImageName,
	MainPackage: images.Module + "/e2e/echoagent",
	Description: "KubeOpenCode end-to-end tests: an agent that prints what it was given",
}

type registryServer struct {
	host string
	srv  *http.Server
}

func (r *registryServer) Close() { _ = r.srv.Close() }

// serveRegistry serves an OCI registry on 127.0.0.1, which the node's
// containerd pulls from over plain HTTP.
func serveRegistry() (*registryServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &registryServer{host: ln.Addr().String(), srv: srv}, nil
}

// buildAndPushImages builds the controller, git-init, context-init and echo
// agent images for linux/amd64 with the Go-native builder and pushes them
// under prefix. It returns each image's reference pinned by digest.
func buildAndPushImages(ctx context.Context, prefix string) (map[string]string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return nil, err
	}
	b := &imagebuilder.Builder{
		ModuleDir: root,
		Version:   imagebuilder.GitVersion(ctx, root),
		Revision:  imagebuilder.GitRevision(ctx, root),
		// The real node is this machine; containerd picks the amd64 image.
		Platforms: []images.Platform{{OS: "linux", Arch: "amd64"}},
	}
	if b.Epoch, err = imagebuilder.SourceDateEpoch(ctx, root); err != nil {
		return nil, err
	}
	zip, err := b.ZoneInfoZip(ctx)
	if err != nil {
		return nil, err
	}
	b.Base = &imagebuilder.BuiltBase{Epoch: b.Epoch, ZoneInfoZip: zip}
	refs := map[string]string{}
	for _, img := range append(append([]images.Image(nil), images.All...), echoImage) {
		built, err := b.Build(ctx, img)
		if err != nil {
			return nil, err
		}
		ref, err := imagebuilder.Push(ctx, img.Repository(prefix), built, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("pushing %s: %w", img.Name, err)
		}
		refs[img.Name] = ref
	}
	return refs, nil
}
