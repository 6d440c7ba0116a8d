package imagebuilder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// Fetcher gets the pinned inputs of the agent image (npm and Debian
// packages) through the package managers' own clients, npm and apt-get,
// which honour the machine's registry, mirror and proxy settings; on a
// machine without them, from the public URLs the pins name (as Bazel
// does). It checks each file against the checksum images pins it by and
// caches it under that checksum, so that each file is downloaded once per
// machine and a file that does not match its pin is never used.
type Fetcher struct {
	// CacheDir holds verified files by checksum; DefaultCacheDir when empty.
	CacheDir string
	// Progress receives a line per download; nil for none.
	Progress io.Writer
	// Client downloads from the public URLs when npm or apt-get is
	// missing; http.DefaultClient when nil.
	Client *http.Client
	// NoClients skips npm and apt-get and always downloads by URL.
	NoClients bool
}

// useClient says whether to fetch with the named package manager.
func (f *Fetcher) useClient(name string) bool {
	if f.NoClients {
		return false
	}
	_, err := exec.LookPath(name)
	return err == nil
}

// download writes the body of url into dir.
func (f *Fetcher) download(ctx context.Context, dir, url string) error {
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out, err := os.Create(filepath.Join(dir, path.Base(url)))
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return out.Close()
}

// DefaultCacheDir is $XDG_CACHE_HOME/kubeopencode/inputs, or
// ~/.cache/kubeopencode/inputs.
func DefaultCacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "kubeopencode", "inputs")
}

func (f *Fetcher) cacheDir() string {
	if f.CacheDir != "" {
		return f.CacheDir
	}
	return DefaultCacheDir()
}

func (f *Fetcher) progress(format string, args ...any) {
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, format+"\n", args...)
	}
}

// NPM returns the tarball of p after checking it against p.Integrity.
func (f *Fetcher) NPM(ctx context.Context, p images.NPMPackage) ([]byte, error) {
	algo, want, ok := strings.Cut(p.Integrity, "-")
	if !ok || algo != "sha512" {
		return nil, fmt.Errorf("npm package %s: integrity %q is not sha512-<base64>", p.Spec(), p.Integrity)
	}
	sum, err := base64.StdEncoding.DecodeString(want)
	if err != nil || len(sum) != sha512.Size {
		return nil, fmt.Errorf("npm package %s: integrity %q is not sha512-<base64>", p.Spec(), p.Integrity)
	}
	check := func(data []byte) error {
		got := sha512.Sum512(data)
		if !bytes.Equal(got[:], sum) {
			return fmt.Errorf("npm package %s: the tarball's integrity is sha512-%s, the pin says %s: refusing it", p.Spec(), base64.StdEncoding.EncodeToString(got[:]), p.Integrity)
		}
		return nil
	}
	path := filepath.Join(f.cacheDir(), "sha512", hex.EncodeToString(sum)+".tgz")
	return f.cached(path, check, func(dir string) error {
		if !f.useClient("npm") {
			f.progress("fetching npm package %s from %s", p.Spec(), p.TarballURL())
			return f.download(ctx, dir, p.TarballURL())
		}
		f.progress("fetching npm package %s (npm pack)", p.Spec())
		return run(ctx, dir, "npm", "pack", "--silent", p.Spec())
	}, "npm package "+p.Spec())
}

// Deb returns the .deb of p for arch after checking it against p.SHA256.
func (f *Fetcher) Deb(ctx context.Context, p images.DebianPackage, arch string) ([]byte, error) {
	sum, err := hex.DecodeString(p.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("Debian package %s %s: SHA256 %q is not 64 hex digits", p.Name, p.Version, p.SHA256)
	}
	check := func(data []byte) error {
		got := sha256.Sum256(data)
		if !bytes.Equal(got[:], sum) {
			return fmt.Errorf("Debian package %s %s (%s): the file's SHA256 is %x, the pin says %s: refusing it", p.Name, p.Version, arch, got, p.SHA256)
		}
		return nil
	}
	path := filepath.Join(f.cacheDir(), "sha256", p.SHA256+".deb")
	return f.cached(path, check, func(dir string) error {
		if !f.useClient("apt-get") {
			f.progress("fetching Debian package %s %s (%s) from %s", p.Name, p.Version, arch, p.URL())
			return f.download(ctx, dir, p.URL())
		}
		f.progress("fetching Debian package %s:%s=%s (apt-get download)", p.Name, arch, p.Version)
		err := run(ctx, dir, "apt-get", "download", "-q", p.Name+":"+arch+"="+p.Version)
		if err != nil && arch != hostDebArch() {
			return fmt.Errorf("%w\n(for another architecture apt needs it enabled: dpkg --add-architecture %s && apt-get update)", err, arch)
		}
		return err
	}, fmt.Sprintf("Debian package %s %s (%s)", p.Name, p.Version, arch))
}

// cached returns the verified file at path, or runs download in an empty
// directory, takes the one file it leaves there, verifies it and stores it.
func (f *Fetcher) cached(path string, check func([]byte) error, download func(dir string) error, what string) ([]byte, error) {
	if data, err := os.ReadFile(path); err == nil {
		if err := check(data); err == nil {
			return data, nil
		}
		// A corrupt cache entry is replaced, never used.
		_ = os.Remove(path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), "download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := download(dir); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, fmt.Errorf("%s: the download left %d files, want 1", what, len(files))
	}
	data, err := os.ReadFile(filepath.Join(dir, files[0].Name()))
	if err != nil {
		return nil, err
	}
	if err := check(data); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(dir, files[0].Name()), path); err != nil {
		return nil, err
	}
	return data, nil
}

func run(ctx context.Context, dir, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s is needed to fetch the agent image's pinned inputs: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// hostDebArch is the Debian architecture of this machine's apt.
func hostDebArch() string {
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Files provides the agent image's inputs from files already downloaded
// (by Bazel's http_file, for example): each file is matched to its pin by
// checksum, so a file that matches no pin is never used.
type Files struct {
	byDigest map[string][]byte
}

// ReadFiles reads the files and indexes them by SHA256 and SHA512.
func ReadFiles(paths []string) (*Files, error) {
	f := &Files{byDigest: map[string][]byte{}}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		s256 := sha256.Sum256(data)
		s512 := sha512.Sum512(data)
		f.byDigest["sha256:"+hex.EncodeToString(s256[:])] = data
		f.byDigest["sha512-"+base64.StdEncoding.EncodeToString(s512[:])] = data
	}
	return f, nil
}

// Deb implements Inputs.
func (f *Files) Deb(_ context.Context, p images.DebianPackage, arch string) ([]byte, error) {
	if data, ok := f.byDigest["sha256:"+p.SHA256]; ok {
		return data, nil
	}
	return nil, fmt.Errorf("no file given matches Debian package %s %s (%s), SHA256 %s", p.Name, p.Version, arch, p.SHA256)
}

// NPM implements Inputs.
func (f *Files) NPM(_ context.Context, p images.NPMPackage) ([]byte, error) {
	if data, ok := f.byDigest[p.Integrity]; ok {
		return data, nil
	}
	return nil, fmt.Errorf("no file given matches npm package %s, integrity %s", p.Spec(), p.Integrity)
}
