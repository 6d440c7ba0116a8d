package imagebuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// debFiles returns the files of a .deb's data archive as layer entries.
//
// A .deb is an ar archive (the common format: a global header, then per
// member a 60-byte header and the data padded to an even length) whose
// data.tar.{xz,zst,gz} holds the files. The format is small and fixed, so
// it is read here rather than through a dependency.
//
// Paths are laid out as Debian 12 installs them, with /usr merged: bin,
// sbin and lib* of a package land under usr/, and the image links the
// top-level names to them (mergedUsrLinks). Documentation, manual pages,
// translations and lintian overrides are left out: nothing runs them.
// Every file is owned by root; set-user-ID and set-group-ID bits are dropped (the mode keeps the permission and sticky bits).
func debFiles(pkg string, deb []byte) ([]entry, error) {
	data, name, err := arMember(deb, "data.tar")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkg, err)
	}
	var r io.Reader
	switch path.Ext(name) {
	case ".xz":
		if r, err = xz.NewReader(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", pkg, name, err)
		}
	case ".zst":
		d, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", pkg, name, err)
		}
		defer d.Close()
		r = d
	case ".gz":
		if r, err = gzip.NewReader(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", pkg, name, err)
		}
	case ".tar":
		r = bytes.NewReader(data)
	default:
		return nil, fmt.Errorf("%s: unsupported data member %s", pkg, name)
	}
	var out []entry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", pkg, name, err)
		}
		p := debPath(h.Name)
		if p == "" || skipDebPath(p) {
			continue
		}
		e := entry{Path: p, Mode: h.Mode & 0o1777}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = tar.TypeDir
		case tar.TypeReg:
			e.Type = tar.TypeReg
			if e.Data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", pkg, h.Name, err)
			}
		case tar.TypeSymlink:
			e.Type, e.Link = tar.TypeSymlink, h.Linkname
		case tar.TypeLink:
			e.Type, e.Link = tar.TypeLink, debPath(h.Linkname)
		default:
			return nil, fmt.Errorf("%s: %s: unsupported entry type %q", pkg, h.Name, h.Typeflag)
		}
		out = append(out, e)
	}
}

// mergedTop are the top-level directories Debian 12 keeps under /usr.
var mergedTop = map[string]bool{"bin": true, "sbin": true, "lib": true, "lib32": true, "lib64": true, "libx32": true}

// mergedUsrLinks are the top-level links of a merged-/usr system.
func mergedUsrLinks() []entry {
	var out []entry
	for _, d := range []string{"bin", "lib", "lib64", "sbin"} {
		out = append(out, entry{Path: d, Type: tar.TypeSymlink, Mode: 0o777, Link: "usr/" + d})
	}
	return out
}

// debPath cleans a path of a data archive ("./usr/bin/git") and moves it
// under usr/ when the system merges /usr.
func debPath(name string) string {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		return ""
	}
	top, _, _ := strings.Cut(p, "/")
	if mergedTop[top] {
		p = "usr/" + p
	}
	return p
}

func skipDebPath(p string) bool {
	for _, prefix := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug", "usr/share/initramfs-tools", "usr/share/bash-completion", "usr/share/gitweb", "etc/cron.d"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// arMember returns the first member of an ar archive whose name starts
// with prefix, and its full name.
func arMember(ar []byte, prefix string) ([]byte, string, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(ar, []byte(magic)) {
		return nil, "", errors.New("not a .deb (ar) archive")
	}
	rest := ar[len(magic):]
	for len(rest) >= 60 {
		hdr := rest[:60]
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 || int64(len(rest)-60) < size {
			return nil, "", fmt.Errorf("ar member %q: bad size", name)
		}
		body := rest[60 : 60+size]
		if strings.HasPrefix(name, prefix) {
			return body, name, nil
		}
		next := 60 + size
		if next%2 == 1 {
			next++
		}
		if next > int64(len(rest)) {
			break
		}
		rest = rest[next:]
	}
	return nil, "", fmt.Errorf("no %s* member", prefix)
}
