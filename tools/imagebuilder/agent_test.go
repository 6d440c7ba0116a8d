package imagebuilder_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

// agentBuilder builds the agent image for this machine's architecture from
// the inputs pinned in tools/images (fetched once per machine into the
// default cache, verified on every use).
func agentBuilder(t *testing.T) *imagebuilder.Builder {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the agent image's inputs are fetched with apt-get and npm on Linux")
	}
	b := &imagebuilder.Builder{
		ModuleDir: "../..",
		Epoch:     testEpoch,
		Version:   "v1.2.3",
		Revision:  "abc",
		Platforms: []images.Platform{{OS: "linux", Arch: runtime.GOARCH}},
	}
	zip, err := b.ZoneInfoZip(context.Background())
	require.NoError(t, err)
	b.Base = &imagebuilder.BuiltBase{Epoch: testEpoch, ZoneInfoZip: zip}
	return b
}

// TestAgentImageIsReproducible: two builds of the agent image from the same
// pinned inputs give the same digest.
func TestAgentImageIsReproducible(t *testing.T) {
	ctx := context.Background()
	first, err := agentBuilder(t).Build(ctx, images.AgentOpenCode)
	require.NoError(t, err)
	second, err := agentBuilder(t).Build(ctx, images.AgentOpenCode)
	require.NoError(t, err)
	assert.Equal(t, first.Digest, second.Digest)

	img := platformImage(t, first)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, images.User, cfg.Config.User)
	assert.Equal(t, images.AgentOpenCode.Entrypoint(), cfg.Config.Entrypoint)
	for _, e := range images.AgentEnv {
		assert.Contains(t, cfg.Config.Env, e)
	}
	layers, err := img.Layers()
	require.NoError(t, err)
	var sizes []string
	for i, l := range layers {
		n, err := l.Size()
		require.NoError(t, err)
		sizes = append(sizes, cfg.History[i].CreatedBy[:min(60, len(cfg.History[i].CreatedBy))]+": "+byteSize(n))
	}
	t.Logf("compressed layers of %s:\n  %s", images.AgentOpenCode.Name, strings.Join(sizes, "\n  "))
}

func byteSize(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func platformImage(t *testing.T, b *imagebuilder.Built) v1.Image {
	t.Helper()
	im, err := b.Index.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, 1)
	img, err := b.Index.Image(im.Manifests[0].Digest)
	require.NoError(t, err)
	return img
}

// TestAgentImageTools unpacks the agent image and runs its programs as its
// user (65532) in a chroot: the shell and the busybox utilities, git (a
// clone, a commit and a push), ripgrep and OpenCode.
func TestAgentImageTools(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running the image's programs in a chroot needs root")
	}
	built, err := agentBuilder(t).Build(context.Background(), images.AgentOpenCode)
	require.NoError(t, err)
	img := platformImage(t, built)
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	root := t.TempDir()
	require.NoError(t, os.Chmod(root, 0o755))
	unpack(t, img, root)
	// A container runtime gives a container /proc and /dev; OpenCode's
	// runtime (Bun) needs /proc. Device files are bound one by one, never
	// the host's /dev directory, which a failed unmount would leave to the
	// temporary directory's removal.
	mount := func(src, dst, fstype string, flags uintptr) {
		t.Helper()
		require.NoError(t, syscall.Mount(src, dst, fstype, flags, ""), "mounting %s on %s", src, dst)
		t.Cleanup(func() { assert.NoError(t, syscall.Unmount(dst, syscall.MNT_DETACH)) })
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "proc"), 0o555))
	mount("proc", filepath.Join(root, "proc"), "proc", 0)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "dev"), 0o755))
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		dst := filepath.Join(root, "dev", d)
		require.NoError(t, os.WriteFile(dst, nil, 0o666))
		mount("/dev/"+d, dst, "", syscall.MS_BIND)
	}

	runIn := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Path = args[0]
		cmd.Dir = dir
		cmd.Env = cfg.Config.Env
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: images.UserID, Gid: images.UserID}}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		return string(out)
	}
	sh := func(script string) string { t.Helper(); return runIn("/tmp", "/bin/sh", "-c", script) }

	assert.Equal(t, "3\n", sh("echo $((1 + 2))"))
	applets := strings.Fields(runIn("/", "/usr/bin/busybox", "--list"))
	for _, a := range imagebuilder.BusyboxApplets {
		assert.Contains(t, applets, a, "busybox has the applet %s that the image links", a)
	}
	assert.Equal(t, "b\na\n", sh("printf 'a\\nb\\n' | sort -r | head -n 2"))

	assert.Contains(t, runIn("/", "/usr/bin/rg", "--version"), "ripgrep 13.0.0")
	assert.Equal(t, images.OpenCodeVersion+"\n", runIn("/tmp", images.OpenCodeBinary, "--version"))
	assert.Equal(t, "65532\n"+images.AgentHome+"\n", sh("id -u; echo $HOME"))

	// A coding agent's Git round trip: clone, commit, push, as 65532.
	out := sh(`set -e
export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.com GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.com
git init -q --bare -b main /tmp/origin.git
git clone -q /tmp/origin.git /tmp/work 2>/dev/null
cd /tmp/work
echo hello > README.md
git add README.md
git commit -q -m "first commit"
git push -q origin HEAD:main
git -C /tmp/origin.git log --format=%s main
git -C /tmp/origin.git cat-file -p main:README.md
git --version`)
	assert.Equal(t, "first commit\nhello\ngit version 2.39.5\n", out)
}

// unpack writes the image's file system (its layers flattened) under root.
func unpack(t *testing.T, img v1.Image, root string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type link struct{ path, target string }
	var hard []link
	var dirs []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, 0o755))
			require.NoError(t, os.Chmod(p, os.FileMode(h.Mode).Perm()|modeSticky(h.Mode)))
			require.NoError(t, os.Lchown(p, h.Uid, h.Gid))
			dirs = append(dirs, p)
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			require.NoError(t, err)
			_, err = io.Copy(f, tr)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			require.NoError(t, os.Chmod(p, os.FileMode(h.Mode).Perm()))
		case tar.TypeSymlink:
			require.NoError(t, os.Symlink(h.Linkname, p))
		case tar.TypeLink:
			hard = append(hard, link{p, filepath.Join(root, filepath.FromSlash(h.Linkname))})
		}
	}
	for _, l := range hard {
		require.NoError(t, os.Link(l.target, l.path))
	}
	sort.Strings(dirs)
}

func modeSticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// TestAgentLayersFromFiles: the Bazel pipeline hands the builder the files
// its http_file repositories fetched (imagebuilder.Files); the layers are
// byte for byte those of the Go-native pipeline, and a missing input is
// named.
func TestAgentLayersFromFiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the agent image's inputs are fetched with apt-get and npm on Linux")
	}
	ctx := context.Background()
	p := images.Platform{OS: "linux", Arch: runtime.GOARCH}
	fetched := &imagebuilder.Fetcher{}
	dir := t.TempDir()
	var paths []string
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		paths = append(paths, p)
	}
	tgz, err := fetched.NPM(ctx, images.OpenCodeNPM[p.Arch])
	require.NoError(t, err)
	write("opencode.tgz", tgz)
	for _, d := range images.AgentDebianPackages[p.Arch] {
		deb, err := fetched.Deb(ctx, d, p.Arch)
		require.NoError(t, err)
		write(d.Name+".deb", deb)
	}

	want, err := imagebuilder.AgentLayerTars(ctx, fetched, p, testEpoch)
	require.NoError(t, err)
	files, err := imagebuilder.ReadFiles(paths)
	require.NoError(t, err)
	got, err := imagebuilder.AgentLayerTars(ctx, files, p, testEpoch)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i := range want {
		assert.Equal(t, want[i].Name, got[i].Name)
		assert.Equal(t, sha256.Sum256(want[i].Data), sha256.Sum256(got[i].Data), "layer %s", want[i].Name)
	}

	withoutNPM, err := imagebuilder.ReadFiles(paths[1:])
	require.NoError(t, err)
	_, err = imagebuilder.AgentLayerTars(ctx, withoutNPM, p, testEpoch)
	require.ErrorContains(t, err, "no file given matches npm package "+images.OpenCodeNPM[p.Arch].Spec())
}

// roundTrip serves fixed bodies by URL, standing in for the public hosts.
type roundTrip map[string][]byte

func (rt roundTrip) RoundTrip(r *http.Request) (*http.Response, error) {
	body, ok := rt[r.URL.String()]
	status := http.StatusOK
	if !ok {
		status = http.StatusNotFound
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

// TestFetcherByURL: without npm and apt-get, the inputs come from the
// public URLs the pins name; a body that does not match its pin is refused
// and not cached.
func TestFetcherByURL(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reference files are fetched with apt-get on Linux")
	}
	ctx := context.Background()
	arch := runtime.GOARCH
	var deb images.DebianPackage
	for _, d := range images.AgentDebianPackages[arch] {
		if d.Name == "libkeyutils1" {
			deb = d
		}
	}
	require.NotEmpty(t, deb.Name)
	good, err := (&imagebuilder.Fetcher{}).Deb(ctx, deb, arch)
	require.NoError(t, err)

	npm := images.OpenCodeNPM[arch]
	rt := roundTrip{deb.URL(): good, npm.TarballURL(): []byte("not the package")}
	f := &imagebuilder.Fetcher{CacheDir: t.TempDir(), NoClients: true, Client: &http.Client{Transport: rt}}
	got, err := f.Deb(ctx, deb, arch)
	require.NoError(t, err)
	assert.Equal(t, good, got)
	cached, err := os.ReadFile(filepath.Join(f.CacheDir, "sha256", deb.SHA256+".deb"))
	require.NoError(t, err, "kept in the cache by checksum")
	assert.Equal(t, good, cached)

	_, err = f.NPM(ctx, npm)
	require.ErrorContains(t, err, "refusing it")
	entries, _ := os.ReadDir(filepath.Join(f.CacheDir, "sha512"))
	for _, e := range entries {
		assert.True(t, strings.HasPrefix(e.Name(), "download-"), "nothing but the download directory may be left: %s", e.Name())
	}
	var none []string
	files, _ := filepath.Glob(filepath.Join(f.CacheDir, "sha512", "*.tgz"))
	assert.Equal(t, none, files, "a file that does not match its pin is not cached")
}
