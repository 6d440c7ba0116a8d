package imagebuilder_test

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.txt from the images built now")

const (
	// helloPackage stands in for an image's main package while that package
	// is not in the tree yet, and proves the base with --selfcheck.
	helloPackage = images.Module + "/tools/imagebuilder/testdata/hello"
	testVersion  = "v0.0.0-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

var testEpoch = time.Unix(1700000000, 0).UTC()

func moduleDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	require.NoError(t, err)
	return dir
}

// helloPackages builds every image from the hello stand-in, so the tests of
// the builder itself do not depend on the state of the real binaries.
func helloPackages() map[string]string {
	out := map[string]string{}
	for _, img := range images.All {
		out[img.Name] = helloPackage
	}
	return out
}

func newBuilder(t testing.TB) *imagebuilder.Builder {
	t.Helper()
	b := &imagebuilder.Builder{
		ModuleDir: moduleDir(t),
		Epoch:     testEpoch,
		Version:   testVersion,
		Revision:  testRevision,
	}
	zip, err := b.ZoneInfoZip(context.Background())
	require.NoError(t, err)
	b.Base = &imagebuilder.BuiltBase{Epoch: testEpoch, ZoneInfoZip: zip}
	return b
}

var (
	allOnce  sync.Once
	allBuilt map[string]*imagebuilder.Built
	allErr   error
)

// buildAll builds the three images once for every test that inspects them.
func buildAll(t *testing.T) map[string]*imagebuilder.Built {
	t.Helper()
	allOnce.Do(func() {
		b := newBuilder(t)
		b.MainPackages = helloPackages()
		allBuilt = map[string]*imagebuilder.Built{}
		for _, img := range images.All {
			built, err := b.Build(context.Background(), img)
			if err != nil {
				allErr = err
				return
			}
			allBuilt[img.Name] = built
		}
	})
	require.NoError(t, allErr)
	return allBuilt
}

func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://") + "/kubeopencode"
}

func TestImagesPushedPulledAndStarted(t *testing.T) {
	requireRoot(t)
	built := buildAll(t)
	prefix := startRegistry(t)

	var baseLayer v1.Hash
	for _, img := range images.All {
		t.Run(img.Name, func(t *testing.T) {
			ref, err := imagebuilder.Push(context.Background(), img.Repository(prefix), built[img.Name], []string{testVersion}, nil)
			require.NoError(t, err)
			assert.Equal(t, img.Repository(prefix)+"@"+built[img.Name].Digest.String(), ref)

			// Pull back by tag: the tag must resolve to the pushed digest.
			tag, err := name.NewTag(img.Repository(prefix) + ":" + testVersion)
			require.NoError(t, err)
			idx, err := remote.Index(tag)
			require.NoError(t, err)
			got, err := idx.Digest()
			require.NoError(t, err)
			assert.Equal(t, built[img.Name].Digest, got, "the tag points at another index")

			mt, err := idx.MediaType()
			require.NoError(t, err)
			assert.Equal(t, types.OCIImageIndex, mt)
			im, err := idx.IndexManifest()
			require.NoError(t, err)
			var platforms []string
			for _, m := range im.Manifests {
				require.NotNil(t, m.Platform, "index entry %s has no platform", m.Digest)
				platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
				assert.Equal(t, types.OCIManifestSchema1, m.MediaType)

				one, err := idx.Image(m.Digest)
				require.NoError(t, err)
				cfg, err := one.ConfigFile()
				require.NoError(t, err)
				assert.Equal(t, "65532", cfg.Config.User)
				assert.Equal(t, img.Entrypoint(), cfg.Config.Entrypoint)
				assert.Empty(t, cfg.Config.Cmd)
				assert.Equal(t, m.Platform.Architecture, cfg.Architecture)
				assert.Equal(t, testEpoch, cfg.Created.Time.UTC())
				assert.Equal(t, img.Labels(testVersion, testRevision), cfg.Config.Labels)

				layers, err := one.Layers()
				require.NoError(t, err)
				require.Len(t, layers, 2, "an image holds the base and one binary layer")
				for _, l := range layers {
					lmt, err := l.MediaType()
					require.NoError(t, err)
					assert.Equal(t, types.OCILayer, lmt)
				}
				d, err := layers[0].Digest()
				require.NoError(t, err)
				if baseLayer == (v1.Hash{}) {
					baseLayer = d
				}
				assert.Equal(t, baseLayer, d, "every image and platform shares one base layer")

				if m.Platform.Architecture == "amd64" {
					out, err := runAsImageUser(t, extract(t, one), cfg, "--version")
					require.NoError(t, err, "%s --version as %s failed: %s", img.BinaryPath(), cfg.Config.User, out)
					assert.Equal(t, testVersion, strings.TrimSpace(out), "the binary prints the version the builder stamped")
				}
			}
			assert.ElementsMatch(t, []string{"linux/amd64", "linux/arm64"}, platforms)
		})
	}
}

// TestRealBinariesStartInTheirImages builds each image from its real main
// package (linux/amd64 only, to keep the test short) and runs its entrypoint
// with --version as the image user, chrooted into a read-only view of the
// image: the binary starts on the base and carries the stamped version.
func TestRealBinariesStartInTheirImages(t *testing.T) {
	requireRoot(t)
	for _, img := range images.All {
		t.Run(img.Name, func(t *testing.T) {
			b := newBuilder(t)
			b.Platforms = []images.Platform{{OS: "linux", Arch: "amd64"}}
			built, err := b.Build(context.Background(), img)
			require.NoError(t, err)
			one := firstImage(t, built.Index)
			cfg, err := one.ConfigFile()
			require.NoError(t, err)
			out, err := runAsImageUser(t, extract(t, one), cfg, "--version")
			require.NoError(t, err, "%s must accept --version and exit 0 (print %s): %s", img.MainPackage, images.VersionSymbol, out)
			assert.Equal(t, testVersion, strings.TrimSpace(out), "%s --version must print the version the builder stamped", img.MainPackage)

			if img.Name == images.Controller.Name {
				// The Deployment hands the controller one flag per init image.
				usage, _ := runAsImageUser(t, extract(t, one), cfg, "--help")
				for _, other := range images.All {
					if other.ControllerFlag != "" {
						assert.Contains(t, usage, "-"+other.ControllerFlag+" ", "the controller must accept --%s, which the Deployment passes", other.ControllerFlag)
					}
				}
			}
		})
	}
}

func TestBaseGivesGoProgramsWhatTheyNeed(t *testing.T) {
	requireRoot(t)
	b := newBuilder(t)
	b.Platforms = []images.Platform{{OS: "linux", Arch: "amd64"}}
	b.MainPackages = map[string]string{images.Controller.Name: helloPackage}
	built, err := b.Build(context.Background(), images.Controller)
	require.NoError(t, err)
	img := firstImage(t, built.Index)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)

	root := extract(t, img)
	out, err := runAsImageUser(t, root, cfg, "--selfcheck")
	require.NoError(t, err, out)
	assert.Contains(t, out, "selfcheck: ok")
}

func TestBuildsAreReproducible(t *testing.T) {
	build := func(epoch time.Time, env ...string) *imagebuilder.Built {
		b := newBuilder(t)
		b.Epoch = epoch
		b.Env = env
		b.Base = &imagebuilder.BuiltBase{Epoch: epoch, ZoneInfoZip: b.Base.(*imagebuilder.BuiltBase).ZoneInfoZip}
		b.Platforms = []images.Platform{{OS: "linux", Arch: "arm64"}}
		b.MainPackages = map[string]string{images.GitInit.Name: helloPackage}
		built, err := b.Build(context.Background(), images.GitInit)
		require.NoError(t, err)
		return built
	}
	first := build(testEpoch)
	// The second build compiles everything again in an empty build cache, so
	// a cached artefact cannot hide a difference.
	second := build(testEpoch, "GOCACHE="+t.TempDir())
	assert.Equal(t, first.Digest, second.Digest, "two builds of the same sources differ")

	dir1, dir2 := t.TempDir(), t.TempDir()
	_, err := imagebuilder.WriteLayout(dir1, first)
	require.NoError(t, err)
	_, err = imagebuilder.WriteLayout(dir2, second)
	require.NoError(t, err)
	d1, err := os.ReadFile(filepath.Join(dir1, "git-init.digest"))
	require.NoError(t, err)
	d2, err := os.ReadFile(filepath.Join(dir2, "git-init.digest"))
	require.NoError(t, err)
	assert.Equal(t, string(d1), string(d2))

	later := build(testEpoch.Add(time.Hour))
	assert.NotEqual(t, first.Digest, later.Digest, "SOURCE_DATE_EPOCH must reach the image")
}

func TestWriteLayoutMatchesRulesOCI(t *testing.T) {
	built := buildAll(t)[images.ContextInit.Name]
	dir := t.TempDir()
	p, err := imagebuilder.WriteLayout(dir, built)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "context-init"), p)

	digest, err := os.ReadFile(filepath.Join(dir, "context-init.digest"))
	require.NoError(t, err)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}\n$`, string(digest))
	assert.Equal(t, built.Digest.String(), strings.TrimSpace(string(digest)))

	// Like rules_oci, the layout's index.json lists one entry: the image index.
	lp, err := layout.ImageIndexFromPath(p)
	require.NoError(t, err)
	top, err := lp.IndexManifest()
	require.NoError(t, err)
	require.Len(t, top.Manifests, 1)
	assert.Equal(t, built.Digest, top.Manifests[0].Digest)
	child, err := lp.ImageIndex(built.Digest)
	require.NoError(t, err)
	cm, err := child.IndexManifest()
	require.NoError(t, err)
	assert.Len(t, cm.Manifests, len(images.Platforms))

	// Writing again over an old layout leaves no stale blobs behind.
	_, err = imagebuilder.WriteLayout(dir, built)
	require.NoError(t, err)
	blobs, err := os.ReadDir(filepath.Join(p, "blobs", "sha256"))
	require.NoError(t, err)
	// index + per platform (manifest, config, base layer shared, binary layer)
	assert.Len(t, blobs, 1+len(images.Platforms)*3+1)
}

func TestRemoteBaseByDigest(t *testing.T) {
	prefix := startRegistry(t)
	ctx := context.Background()

	// Publish a base the way distroless is published: a multi-platform index.
	b := newBuilder(t)
	baseIdx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range images.Platforms {
		img, err := b.Base.Image(ctx, p)
		require.NoError(t, err)
		baseIdx = mutate.AppendManifests(baseIdx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}}})
	}
	baseRef, err := imagebuilder.Push(ctx, prefix+"/static", &imagebuilder.Built{Image: images.Image{Name: "static"}, Index: baseIdx, Digest: must(baseIdx.Digest())}, nil, nil)
	require.NoError(t, err)

	_, err = imagebuilder.NewRemoteBase(prefix + "/static:nonroot")
	require.ErrorContains(t, err, "must be pinned by digest")

	rb, err := imagebuilder.NewRemoteBase(baseRef, remote.WithContext(ctx))
	require.NoError(t, err)
	b.Base = rb
	b.Platforms = []images.Platform{{OS: "linux", Arch: "arm64"}}
	b.MainPackages = map[string]string{images.Controller.Name: helloPackage}
	built, err := b.Build(ctx, images.Controller)
	require.NoError(t, err)

	img := firstImage(t, built.Index)
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 2)
	wantBase, err := must(baseIdx.Image(must(baseIdx.IndexManifest()).Manifests[1].Digest)).Layers()
	require.NoError(t, err)
	assert.Equal(t, must(wantBase[0].Digest()), must(layers[0].Digest()), "the pulled base layer is reused byte for byte")
	m, err := img.Manifest()
	require.NoError(t, err)
	assert.Equal(t, prefix+"/static", m.Annotations["org.opencontainers.image.base.name"])
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "65532", cfg.Config.User)
	assert.Equal(t, "/home/nonroot", cfg.Config.WorkingDir, "the base's working directory is kept")
}

func TestSourceDateEpoch(t *testing.T) {
	ctx := context.Background()
	t.Setenv("SOURCE_DATE_EPOCH", "1234567890")
	got, err := imagebuilder.SourceDateEpoch(ctx, moduleDir(t))
	require.NoError(t, err)
	assert.Equal(t, time.Unix(1234567890, 0).UTC(), got)

	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	_, err = imagebuilder.SourceDateEpoch(ctx, moduleDir(t))
	require.ErrorContains(t, err, "SOURCE_DATE_EPOCH")

	t.Setenv("SOURCE_DATE_EPOCH", "")
	out, err := exec.Command("git", "-C", moduleDir(t), "log", "-1", "--format=%ct").Output()
	require.NoError(t, err)
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	require.NoError(t, err)
	got, err = imagebuilder.SourceDateEpoch(ctx, moduleDir(t))
	require.NoError(t, err)
	assert.Equal(t, time.Unix(sec, 0).UTC(), got, "without SOURCE_DATE_EPOCH the commit time of HEAD is used")

	got, err = imagebuilder.SourceDateEpoch(ctx, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, time.Unix(0, 0).UTC(), got, "outside Git the epoch is 0")
}

func firstImage(t *testing.T, idx v1.ImageIndex) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.NotEmpty(t, im.Manifests)
	img, err := idx.Image(im.Manifests[0].Digest)
	require.NoError(t, err)
	return img
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running an image's entrypoint as uid 65532 in a chroot needs root")
	}
}

// extract unpacks the image's flattened file system with the owners and
// modes the layers record.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		p := filepath.Join(root, filepath.FromSlash(hdr.Name))
		require.True(t, strings.HasPrefix(p, root+string(os.PathSeparator)), "entry %q escapes the root", hdr.Name)
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, 0o755))
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
			require.NoError(t, err)
			_, err = io.Copy(f, tr)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		case tar.TypeSymlink:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.Symlink(hdr.Linkname, p))
		default:
			t.Fatalf("entry %q has unexpected type %q", hdr.Name, hdr.Typeflag)
		}
		require.NoError(t, os.Lchown(p, hdr.Uid, hdr.Gid))
	}
	// Directory modes last: a 0700 directory must still take its children.
	for _, d := range dirs {
		require.NoError(t, os.Chmod(d.path, d.mode&(os.ModePerm|os.ModeSticky)))
	}
	require.NoError(t, os.Chmod(root, 0o755))
	return root
}

// runAsImageUser runs the image's entrypoint the way a container runtime
// would: chrooted into a read-only view of its root file system, as the
// image's user, with the image's environment and working directory. /tmp
// stays writable as a tmpfs, as Kubernetes gives with an emptyDir.
func runAsImageUser(t *testing.T, root string, cfg *v1.ConfigFile, args ...string) (string, error) {
	t.Helper()
	uid, err := strconv.ParseUint(cfg.Config.User, 10, 32)
	require.NoError(t, err, "image user %q must be numeric", cfg.Config.User)

	view := t.TempDir()
	require.NoError(t, syscall.Mount(root, view, "", syscall.MS_BIND, ""))
	t.Cleanup(func() { _ = syscall.Unmount(view, syscall.MNT_DETACH) })
	require.NoError(t, syscall.Mount("", view, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""))
	tmp := filepath.Join(view, "tmp")
	require.NoError(t, syscall.Mount("tmpfs", tmp, "tmpfs", 0, "mode=1777,size=1m"))
	t.Cleanup(func() { _ = syscall.Unmount(tmp, syscall.MNT_DETACH) })

	require.NotEmpty(t, cfg.Config.Entrypoint)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.Config.Entrypoint[0], append(cfg.Config.Entrypoint[1:], args...)...)
	cmd.Env = cfg.Config.Env
	cmd.Dir = cfg.Config.WorkingDir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     view,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%v: %w", cmd.Args, err)
	}
	return string(out), nil
}
