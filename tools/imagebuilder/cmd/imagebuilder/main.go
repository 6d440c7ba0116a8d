// Command imagebuilder builds the KubeOpenCode images without Docker and
// writes each as an OCI layout with a .digest file; with --push it uploads
// them and prints their digest-pinned references.
//
//	go run ./tools/imagebuilder/cmd/imagebuilder --out out/images
//	go run ./tools/imagebuilder/cmd/imagebuilder --push ghcr.io/kubeopencode --tag v0.3.0
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuilder:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imagebuilder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out       = fs.String("out", "out/images", "directory for the OCI layouts (<dir>/<image>/) and digest files (<dir>/<image>.digest)")
		module    = fs.String("module", ".", "directory of the Go module to build from")
		only      = fs.String("images", strings.Join(names(), ","), "comma-separated images to build")
		platforms = fs.String("platforms", platformList(images.Platforms), "comma-separated os/arch platforms")
		version   = fs.String("version", "", "version stamped into binaries and labels (default: git describe --tags --always)")
		revision  = fs.String("revision", "", "commit for the revision label (default: git rev-parse HEAD)")
		base      = fs.String("base", "", "pull this base by digest (repository@sha256:...) instead of building the distroless-equivalent base")
		pullBase  = fs.Bool("pull-base", false, "pull "+images.DistrolessStatic.Reference()+" ("+images.DistrolessStatic.Repository+":"+images.DistrolessStatic.Tag+") as the base")
		push      = fs.String("push", "", "push every image to <repository prefix>/<image>, for example ghcr.io/kubeopencode")
		insecure  = fs.Bool("insecure", false, "allow plain HTTP to the --push and --base registries")
		mains     listFlag
		tags      listFlag
	)
	fs.Var(&mains, "main", "image=importpath: build the image from another main package (repeatable)")
	fs.Var(&tags, "tag", "tag to push besides the digest (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	b := &imagebuilder.Builder{ModuleDir: *module, Version: *version, Revision: *revision, MainPackages: map[string]string{}}
	var err error
	if b.Epoch, err = imagebuilder.SourceDateEpoch(ctx, *module); err != nil {
		return err
	}
	if b.Version == "" {
		b.Version = imagebuilder.GitVersion(ctx, *module)
	}
	if b.Revision == "" {
		b.Revision = imagebuilder.GitRevision(ctx, *module)
	}
	if b.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	for _, m := range mains {
		img, pkg, ok := strings.Cut(m, "=")
		if !ok || pkg == "" {
			return fmt.Errorf("--main %q: want image=importpath, for example controller=%s", m, images.Controller.MainPackage)
		}
		if _, err := images.ByName(img); err != nil {
			return fmt.Errorf("--main %q: %w", m, err)
		}
		b.MainPackages[img] = pkg
	}
	var nameOpts []name.Option
	if *insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	remoteOpts := []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	switch {
	case *base != "" && *pullBase:
		return fmt.Errorf("--base and --pull-base both choose the base: give one")
	case *pullBase:
		*base = images.DistrolessStatic.Reference()
	}
	if *base != "" {
		d, err := name.NewDigest(*base, nameOpts...)
		if err != nil {
			return fmt.Errorf("--base %q must be pinned by digest (repository@sha256:...): %w", *base, err)
		}
		b.Base = &imagebuilder.RemoteBase{Ref: d, Options: remoteOpts}
	} else {
		zip, err := b.ZoneInfoZip(ctx)
		if err != nil {
			return err
		}
		b.Base = &imagebuilder.BuiltBase{Epoch: b.Epoch, ZoneInfoZip: zip}
	}

	var selected []images.Image
	for _, n := range strings.Split(*only, ",") {
		img, err := images.ByName(strings.TrimSpace(n))
		if err != nil {
			return fmt.Errorf("--images: %w", err)
		}
		selected = append(selected, img)
	}

	fmt.Fprintf(stderr, "building %s at %s (revision %s, SOURCE_DATE_EPOCH=%d) on %s\n",
		*only, b.Version, b.Revision, b.Epoch.Unix(), b.Base.Name())
	for _, img := range selected {
		built, err := b.Build(ctx, img)
		if err != nil {
			return err
		}
		dir, err := imagebuilder.WriteLayout(*out, built)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s: %s written to %s\n", img.Name, built.Digest, dir)
		if *push == "" {
			continue
		}
		ref, err := imagebuilder.Push(ctx, img.Repository(*push), built, tags, nameOpts, remoteOpts...)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, ref)
	}
	return nil
}

func names() []string {
	var n []string
	for _, img := range images.Buildable() {
		n = append(n, img.Name)
	}
	return n
}

func platformList(ps []images.Platform) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func parsePlatforms(s string) ([]images.Platform, error) {
	var out []images.Platform
	for _, item := range strings.Split(s, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(item), "/")
		if !ok || os == "" || arch == "" {
			return nil, fmt.Errorf("--platforms: %q is not os/arch (for example linux/arm64)", item)
		}
		out = append(out, images.Platform{OS: os, Arch: arch})
	}
	return out, nil
}
