package imagebuilder

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// BaseSource provides the base image for one platform.
type BaseSource interface {
	// Image returns the base for the platform.
	Image(ctx context.Context, p images.Platform) (v1.Image, error)
	// Name describes the base for logs and the base.name annotation.
	Name() string
}

// Paths of the built base that other code (tests, the runtime) relies on.
const (
	CACertificatesPath = "etc/ssl/certs/ca-certificates.crt"
	ZoneInfoDir        = "usr/share/zoneinfo"
	HomeDir            = "home/nonroot"
)

// BaseEnv is the environment of the built base, the same as distroless static.
var BaseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/" + CACertificatesPath,
}

// BuiltBase is a base assembled here from the recipe of distroless static
// (nonroot): the same accounts, directories, CA certificates and time zone
// database, built from inputs pinned by this repository rather than pulled.
// It is equivalent in function, not identical in bytes.
type BuiltBase struct {
	// Epoch is the timestamp of every file.
	Epoch time.Time
	// ZoneInfoZip is Go's zoneinfo.zip ($GOROOT/lib/time/zoneinfo.zip). It
	// is pinned by the Go toolchain version, so the time zone files are the
	// same on every machine that builds with that toolchain.
	ZoneInfoZip []byte

	layer v1.Layer
}

// Name implements BaseSource.
func (b *BuiltBase) Name() string { return "built distroless-static-equivalent (nonroot)" }

// Image implements BaseSource. The base layer holds no binaries, so one layer
// serves every platform.
func (b *BuiltBase) Image(_ context.Context, p images.Platform) (v1.Image, error) {
	if b.layer == nil {
		entries, err := b.entries()
		if err != nil {
			return nil, err
		}
		if b.layer, err = newLayer(entries, b.Epoch); err != nil {
			return nil, fmt.Errorf("base layer: %w", err)
		}
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{
		Layer:     b.layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: b.Epoch},
			CreatedBy: "kubeopencode imagebuilder: distroless-static-equivalent base",
			Comment:   "accounts root, nobody and nonroot (65532); CA certificates; time zone data",
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Arch
	cfg.Created = v1.Time{Time: b.Epoch}
	cfg.Config.Env = append([]string(nil), BaseEnv...)
	cfg.Config.User = images.User
	cfg.Config.WorkingDir = "/" + HomeDir
	return mutate.ConfigFile(img, cfg)
}

// The account files follow distroless: root, nobody and the nonroot user
// 65532, none with a login shell.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
	// Go's resolver reads nsswitch.conf to decide between /etc/hosts and DNS.
	nsswitch  = "hosts: files dns\n"
	osRelease = "PRETTY_NAME=\"KubeOpenCode static (distroless-static equivalent)\"\n" +
		"NAME=\"KubeOpenCode static\"\n" +
		"ID=kubeopencode-static\n" +
		"HOME_URL=\"" + images.SourceURL + "\"\n"
)

func (b *BuiltBase) entries() ([]entry, error) {
	certs, err := caBundle()
	if err != nil {
		return nil, err
	}
	zones, err := zoneInfo(b.ZoneInfoZip)
	if err != nil {
		return nil, err
	}
	home := dir(HomeDir, 0o700)
	home.UID, home.GID = images.UserID, images.UserID
	out := []entry{
		dir("etc", 0o755),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		file("etc/nsswitch.conf", 0o644, []byte(nsswitch)),
		file("etc/os-release", 0o644, []byte(osRelease)),
		dir("etc/ssl", 0o755),
		dir("etc/ssl/certs", 0o755),
		file(CACertificatesPath, 0o644, certs),
		dir("home", 0o755),
		home,
		dir("root", 0o700),
		dir("tmp", 0o1777),
		dir("usr", 0o755),
		dir("usr/share", 0o755),
		dir(ZoneInfoDir, 0o755),
	}
	return append(out, zones...), nil
}

// caBundle renders the Mozilla root set that golang.org/x/crypto/x509roots/fallback
// embeds as a PEM file. The module version in go.mod pins the set, so the file is
// the same on every machine, unlike the build host's /etc/ssl. Roots that carry
// a constraint (a distrust date) are left out: a PEM file cannot express the
// constraint and trusting them without it would be wider than intended.
func caBundle() ([]byte, error) {
	var buf bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("the x509roots fallback bundle holds no unconstrained root: update golang.org/x/crypto/x509roots/fallback")
	}
	return buf.Bytes(), nil
}

// zoneInfo unpacks Go's zoneinfo.zip into usr/share/zoneinfo, which is where
// Go (and every libc) looks for zone files on Linux.
func zoneInfo(zipData []byte) ([]entry, error) {
	if len(zipData) == 0 {
		return nil, fmt.Errorf("no time zone data: pass the contents of $GOROOT/lib/time/zoneinfo.zip")
	}
	zr, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
	if err != nil {
		return nil, fmt.Errorf("reading zoneinfo.zip: %w", err)
	}
	dirs := map[string]bool{}
	var out []entry
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		name := strings.TrimPrefix(f.Name, "/")
		if name == "" || strings.Contains(name, "..") {
			return nil, fmt.Errorf("zoneinfo.zip: unexpected entry %q", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("zoneinfo.zip %s: %w", f.Name, err)
		}
		p := ZoneInfoDir + "/" + name
		out = append(out, file(p, 0o644, data))
		for _, d := range parents(p) {
			if strings.HasPrefix(d.Path, ZoneInfoDir+"/") && !dirs[d.Path] {
				dirs[d.Path] = true
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// RemoteBase pulls a published base, such as distroless static itself, by
// digest. Tags are refused: a tag can move, and the images must not.
type RemoteBase struct {
	Ref     name.Digest
	Options []remote.Option

	index v1.ImageIndex
}

// NewRemoteBase checks that ref names a digest and returns a base that pulls it.
func NewRemoteBase(ref string, opts ...remote.Option) (*RemoteBase, error) {
	d, err := name.NewDigest(ref)
	if err != nil {
		return nil, fmt.Errorf("base %q must be pinned by digest (repository@sha256:...): %w", ref, err)
	}
	if len(opts) == 0 {
		opts = []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	}
	return &RemoteBase{Ref: d, Options: opts}, nil
}

// Name implements BaseSource.
func (r *RemoteBase) Name() string { return r.Ref.String() }

// Image implements BaseSource.
func (r *RemoteBase) Image(ctx context.Context, p images.Platform) (v1.Image, error) {
	if r.index == nil {
		idx, err := remote.Index(r.Ref, append([]remote.Option{remote.WithContext(ctx)}, r.Options...)...)
		if err != nil {
			return nil, fmt.Errorf("pulling base %s: %w", r.Ref, err)
		}
		r.index = idx
	}
	im, err := r.index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", r.Ref, err)
	}
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.OS == p.OS && m.Platform.Architecture == p.Arch {
			return r.index.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("base %s has no image for %s: pick a multi-platform base", r.Ref, p)
}
