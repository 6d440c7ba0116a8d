package imagebuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// BusyboxApplets are the commands the agent image links to busybox: the
// shell and the utilities a coding agent's shell commands expect. Each is
// an applet of Debian's busybox build (a test checks the list against
// `busybox --list`).
var BusyboxApplets = []string{
	"[", "ash", "awk", "base64", "basename", "bunzip2", "bzcat", "bzip2", "cat", "chmod", "clear", "cmp", "cp",
	"cut", "date", "dd", "df", "diff", "dirname", "du", "echo", "egrep", "env", "expand", "expr", "false",
	"fgrep", "find", "fold", "getopt", "grep", "gunzip", "gzip", "head", "hexdump", "hostname", "id", "kill",
	"less", "ln", "ls", "md5sum", "mkdir", "mktemp", "more", "mv", "nl", "nproc", "od", "paste", "patch",
	"printf", "ps", "pwd", "readlink", "realpath", "rev", "rm", "rmdir", "sed", "seq", "sh", "sha1sum",
	"sha256sum", "sha512sum", "sleep", "sort", "stat", "strings", "tac", "tail", "tar", "tee", "test", "time",
	"timeout", "touch", "tr", "true", "truncate", "tty", "uname", "uniq", "unlink", "unxz", "unzip", "uptime",
	"vi", "wc", "wget", "which", "whoami", "xargs", "xxd", "xz", "xzcat", "yes", "zcat",
}

// openCodeGitignore is what OpenCode would write into its configuration
// directory on first start; the image ships it because that directory is
// read-only.
const openCodeGitignore = "node_modules\npackage.json\nbun.lock\n.gitignore\n"

// agentLayer is one layer of an agent image with its history line.
type agentLayer struct {
	entries   []entry
	createdBy string
}

// Inputs provides the pinned inputs of the agent image, each checked
// against its pin: Fetcher downloads them, Files reads them from disk.
type Inputs interface {
	Deb(ctx context.Context, p images.DebianPackage, arch string) ([]byte, error)
	NPM(ctx context.Context, p images.NPMPackage) ([]byte, error)
}

// LayerTar is one layer of the agent image as an uncompressed tar stream.
type LayerTar struct {
	// Name is a short name for the file it is written to: "debian",
	// "opencode" or "config".
	Name      string
	CreatedBy string
	Data      []byte
}

// AgentLayerTars returns the layers an agent image carries between its base
// and its launcher binary, as tar streams with every timestamp set to epoch.
// The Bazel pipeline writes them with cmd/agentlayers and stacks them like
// the Go-native builder does.
func AgentLayerTars(ctx context.Context, in Inputs, p images.Platform, epoch time.Time) ([]LayerTar, error) {
	layers, err := agentLayers(ctx, in, p)
	if err != nil {
		return nil, err
	}
	var out []LayerTar
	for i, l := range layers {
		data, err := layerTar(l.entries, epoch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.createdBy, err)
		}
		out = append(out, LayerTar{Name: []string{"debian", "opencode", "config"}[i], CreatedBy: l.createdBy, Data: data})
	}
	return out, nil
}

// agentLayers builds the layers an agent image carries between its base
// and its launcher binary: the Debian packages, OpenCode, its configuration.
func agentLayers(ctx context.Context, f Inputs, p images.Platform) ([]agentLayer, error) {
	pkgs, ok := images.AgentDebianPackages[p.Arch]
	if !ok {
		return nil, fmt.Errorf("no Debian packages are pinned for %s", p)
	}
	npm, ok := images.OpenCodeNPM[p.Arch]
	if !ok {
		return nil, fmt.Errorf("OpenCode has no npm package pinned for %s", p)
	}

	debs := newEntrySet()
	var names []string
	for _, pkg := range pkgs {
		deb, err := f.Deb(ctx, pkg, p.Arch)
		if err != nil {
			return nil, err
		}
		files, err := debFiles(pkg.Name, deb)
		if err != nil {
			return nil, err
		}
		for _, e := range files {
			if err := debs.add(e); err != nil {
				return nil, fmt.Errorf("Debian package %s: %w", pkg.Name, err)
			}
		}
		names = append(names, pkg.Name+"="+pkg.Version)
	}
	for _, e := range mergedUsrLinks() {
		if err := debs.add(e); err != nil {
			return nil, err
		}
	}
	if !debs.has("usr/bin/busybox") {
		return nil, errors.New("the pinned packages hold no usr/bin/busybox: the agent image needs it for sh")
	}
	for _, a := range BusyboxApplets {
		p := "usr/bin/" + a
		if !debs.has(p) {
			_ = debs.add(entry{Path: p, Type: tar.TypeSymlink, Mode: 0o777, Link: "busybox"})
		}
	}

	tgz, err := f.NPM(ctx, npm)
	if err != nil {
		return nil, err
	}
	bin, err := npmFile(tgz, "package/bin/opencode")
	if err != nil {
		return nil, fmt.Errorf("npm package %s: %w", npm.Spec(), err)
	}
	ocPath := images.OpenCodeBinary[1:]
	opencode := append(parents(ocPath), file(ocPath, 0o755, bin))

	cfgDir := images.AgentConfigDir[1:] + "/opencode"
	config := append(parents(cfgDir+"/x"),
		file(cfgDir+"/opencode.json", 0o644, []byte(images.AgentOpenCodeConfig)),
		file(cfgDir+"/.gitignore", 0o644, []byte(openCodeGitignore)),
	)

	return []agentLayer{
		{entries: debs.list(), createdBy: "kubeopencode imagebuilder: Debian packages " + strings.Join(names, " ")},
		{entries: opencode, createdBy: "kubeopencode imagebuilder: OpenCode " + npm.Spec() + " (" + npm.Integrity + ")"},
		{entries: config, createdBy: "kubeopencode imagebuilder: OpenCode configuration"},
	}, nil
}

// appendAgentLayers adds the agent layers and environment to base.
func (b *Builder) appendAgentLayers(ctx context.Context, base v1.Image, p images.Platform) (v1.Image, error) {
	var in Inputs = &Fetcher{}
	if b.Fetcher != nil {
		in = b.Fetcher
	}
	layers, err := agentLayers(ctx, in, p)
	if err != nil {
		return nil, err
	}
	img := base
	for _, l := range layers {
		layer, err := newLayerLevel(l.entries, b.Epoch, gzip.BestSpeed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.createdBy, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: b.Epoch}, CreatedBy: l.createdBy},
		}); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env = append(cfg.Config.Env, images.AgentEnv...)
	return mutate.ConfigFile(img, cfg)
}

// npmFile returns one file of an npm package tarball.
func npmFile(tgz []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the tarball has no %s", name)
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(h.Name) == name && h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// entrySet merges the files of several packages: a directory may come from
// many, a file only from one unless every copy is identical.
type entrySet struct {
	byPath map[string]int
	items  []entry
}

func newEntrySet() *entrySet { return &entrySet{byPath: map[string]int{}} }

func (s *entrySet) has(p string) bool { _, ok := s.byPath[p]; return ok }

func (s *entrySet) add(e entry) error {
	for _, d := range parents(e.Path) {
		if !s.has(d.Path) {
			s.byPath[d.Path] = len(s.items)
			s.items = append(s.items, d)
		}
	}
	if i, ok := s.byPath[e.Path]; ok {
		old := s.items[i]
		switch {
		case old.Type == tar.TypeDir && e.Type == tar.TypeDir:
			return nil
		case old.Type == e.Type && old.Mode == e.Mode && bytes.Equal(old.Data, e.Data) && old.Link == e.Link:
			return nil
		}
		return fmt.Errorf("%s is shipped twice with different contents", e.Path)
	}
	s.byPath[e.Path] = len(s.items)
	s.items = append(s.items, e)
	return nil
}

// list returns the entries. Regular files with the same contents and mode
// (git ships several programs twice, in usr/bin and usr/lib/git-core) become
// hard links to the first of them in path order, which the layer writes
// first: the bytes are stored once.
func (s *entrySet) list() []entry {
	out := append([]entry(nil), s.items...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	type key struct {
		sum  [sha256.Size]byte
		mode int64
	}
	first := map[key]string{}
	for i, e := range out {
		if e.Type != tar.TypeReg || len(e.Data) < 4096 {
			continue
		}
		k := key{sha256.Sum256(e.Data), e.Mode}
		if p, ok := first[k]; ok {
			out[i] = entry{Path: e.Path, Type: tar.TypeLink, Mode: e.Mode, Link: p}
			continue
		}
		first[k] = e.Path
	}
	return out
}
