package imagebuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file, directory or symbolic link of a layer. Every field that
// ends up in the tar header is set explicitly so that nothing from the build
// machine (its umask, its users, its clock) leaks into an image.
type entry struct {
	Path     string // relative, without a leading slash
	Type     byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink or tar.TypeLink
	Mode     int64  // permission bits, including the sticky bit (01000)
	UID, GID int
	Data     []byte // regular files only
	Link     string // links only
}

func dir(p string, mode int64) entry { return entry{Path: p, Type: tar.TypeDir, Mode: mode} }

func file(p string, mode int64, data []byte) entry {
	return entry{Path: p, Type: tar.TypeReg, Mode: mode, Data: data}
}

// layerTar writes entries as an uncompressed tar stream in path order, every
// timestamp set to epoch. Sorting makes the stream independent of the order
// in which entries were gathered (map iteration, directory walks).
func layerTar(entries []entry, epoch time.Time) ([]byte, error) {
	sorted := append([]entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, e := range sorted {
		if e.Path == "" || strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path {
			return nil, fmt.Errorf("layer entry %q: paths must be relative and clean", e.Path)
		}
		if seen[e.Path] {
			return nil, fmt.Errorf("layer entry %q appears twice", e.Path)
		}
		seen[e.Path] = true
		hdr := &tar.Header{
			Typeflag: e.Type,
			Name:     e.Path,
			Mode:     e.Mode,
			Uid:      e.UID,
			Gid:      e.GID,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch e.Type {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.Data))
		case tar.TypeSymlink:
			hdr.Linkname = e.Link
		case tar.TypeLink:
			// A hard link must follow its target in the stream.
			if !seen[e.Link] {
				return nil, fmt.Errorf("layer entry %q: hard link to %q, which sorts after it or is missing", e.Path, e.Link)
			}
			hdr.Linkname = e.Link
		default:
			return nil, fmt.Errorf("layer entry %q: unsupported type %q", e.Path, e.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", e.Path, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("layer entry %q: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newLayer turns entries into a gzip-compressed OCI layer. go-containerregistry
// writes gzip streams without a name or timestamp in the header, so equal
// tar bytes give equal layer digests.
func newLayer(entries []entry, epoch time.Time) (v1.Layer, error) {
	return newLayerLevel(entries, epoch, gzip.DefaultCompression)
}

// newLayerLevel is newLayer with a gzip level. The agent image's large
// layers use gzip.BestSpeed: they compress a few percent worse and several
// times faster. The level is part of what fixes the digest.
func newLayerLevel(entries []entry, epoch time.Time, level int) (v1.Layer, error) {
	data, err := layerTar(entries, epoch)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching, tarball.WithCompressionLevel(level))
}

// parents returns directory entries for every ancestor of p, owned by root
// with mode 0755, so that a layer never relies on directories it does not
// carry itself.
func parents(p string) []entry {
	var out []entry
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append(out, dir(d, 0o755))
	}
	return out
}
