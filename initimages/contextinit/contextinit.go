// Package contextinit writes a Task's text and ConfigMap contexts into the
// pod's shared volumes, the work of the context-init image.
package contextinit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
)

// Options tune Apply.
type Options struct {
	// Roots are the only directories entries may be written into.
	Roots []string
	// Log receives one line per entry.
	Log io.Writer
}

// DefaultOptions are the options used in the image.
func DefaultOptions() Options {
	return Options{Roots: initutil.DefaultWriteRoots, Log: os.Stdout}
}

// Stats counts what Apply did.
type Stats struct {
	Files   int // files written
	Skipped int // optional entries whose source was missing
}

// Apply writes every entry of plan, stopping at the first that cannot be
// written: an agent must not start with part of its context missing.
func Apply(plan *contract.ContextPlan, opts Options) (Stats, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	// Directories created on the way must be group-writable too.
	initutil.SetGroupUmask()
	w := &writer{opts: opts, roots: map[string]*os.Root{}}
	defer w.close()
	for i, e := range plan.Entries {
		if err := w.entry(e); err != nil {
			name := e.Description
			if name == "" {
				name = fmt.Sprintf("context entry %d (%s)", i+1, e.Path)
			}
			return w.stats, fmt.Errorf("%s: %w", name, err)
		}
	}
	return w.stats, nil
}

type writer struct {
	opts  Options
	roots map[string]*os.Root
	stats Stats
}

func (w *writer) close() {
	for _, r := range w.roots {
		r.Close()
	}
}

// root opens a mount once. os.Root confines every later operation to it,
// so neither ".." nor a symlink planted by a cloned repository can redirect
// a write outside the volume.
func (w *writer) root(dir string) (*os.Root, error) {
	if r, ok := w.roots[dir]; ok {
		return r, nil
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s (is the volume mounted?): %w", dir, unwrapPath(err))
	}
	w.roots[dir] = r
	return r, nil
}

// FileMode is the mode context-init gives a file: 0644 when unset, and the
// group bits always equal to the owner bits.
func FileMode(m int32) fs.FileMode {
	mode := fs.FileMode(m) & fs.ModePerm
	if mode == 0 {
		mode = 0o644
	}
	return initutil.GroupMode(mode)
}

func (w *writer) entry(e contract.FileEntry) error {
	if (e.Content == nil) == (e.Source == "") {
		return fmt.Errorf("entry for %s must set exactly one of content and source", e.Path)
	}
	rootDir, rel, err := initutil.SplitUnderRoot(e.Path, w.opts.Roots, false)
	if err != nil {
		return fmt.Errorf("refusing to write: %w", err)
	}
	root, err := w.root(rootDir)
	if err != nil {
		return err
	}
	mode := FileMode(e.Mode)
	if e.Content != nil {
		if err := w.writeFile(root, rootDir, rel, strings.NewReader(*e.Content), mode); err != nil {
			return err
		}
		fmt.Fprintf(w.opts.Log, "wrote %s\n", e.Path)
		return nil
	}

	st, err := os.Stat(e.Source)
	if errors.Is(err, fs.ErrNotExist) {
		if e.Optional {
			w.stats.Skipped++
			fmt.Fprintf(w.opts.Log, "skipped %s: optional source %s does not exist\n", e.Path, e.Source)
			return nil
		}
		return fmt.Errorf("source %s does not exist: create it, or mark the context optional", e.Source)
	}
	if err != nil {
		return fmt.Errorf("cannot read source %s: %w", e.Source, unwrapPath(err))
	}
	switch {
	case st.Mode().IsRegular():
		f, err := os.Open(e.Source)
		if err != nil {
			return fmt.Errorf("cannot read source %s: %w", e.Source, unwrapPath(err))
		}
		defer f.Close()
		if err := w.writeFile(root, rootDir, rel, f, mode); err != nil {
			return err
		}
	case st.IsDir():
		keys, err := visibleEntries(e.Source)
		if err != nil {
			return err
		}
		// An optional ConfigMap that does not exist is mounted as an
		// empty directory.
		if len(keys) == 0 && e.Optional {
			w.stats.Skipped++
			fmt.Fprintf(w.opts.Log, "skipped %s: optional source %s is empty\n", e.Path, e.Source)
			return nil
		}
		if err := w.copyDir(root, rootDir, e.Source, rel, mode); err != nil {
			return err
		}
	default:
		return fmt.Errorf("source %s is neither a file nor a directory", e.Source)
	}
	fmt.Fprintf(w.opts.Log, "wrote %s from %s\n", e.Path, e.Source)
	return nil
}

// visibleEntries lists a source directory without the "..data" and
// "..<timestamp>" entries through which the kubelet swaps ConfigMap
// contents atomically; the keys themselves are symlinks into them.
func visibleEntries(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read source directory %s: %w", dir, unwrapPath(err))
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// copyDir copies the resolved files of src into rel, recursively (a
// ConfigMap item's path may contain directories).
func (w *writer) copyDir(root *os.Root, rootDir, src, rel string, mode fs.FileMode) error {
	if err := w.mkdirAll(root, rootDir, rel); err != nil {
		return err
	}
	names, err := visibleEntries(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := filepath.Join(src, name)
		st, err := os.Stat(p) // follows key -> ..data/key
		if err != nil {
			return fmt.Errorf("cannot read %s: %w", p, unwrapPath(err))
		}
		switch {
		case st.IsDir():
			if err := w.copyDir(root, rootDir, p, filepath.Join(rel, name), mode); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("cannot read %s: %w", p, unwrapPath(err))
			}
			err = w.writeFile(root, rootDir, filepath.Join(rel, name), f, mode)
			f.Close()
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("source %s is neither a file nor a directory", p)
		}
	}
	return nil
}

func (w *writer) mkdirAll(root *os.Root, rootDir, rel string) error {
	if rel == "." {
		return nil
	}
	if err := root.MkdirAll(rel, 0o775); err != nil {
		if strings.Contains(err.Error(), "escapes") {
			return fmt.Errorf("refusing to create directory %s: a symlink on the way leads outside %s", filepath.Join(rootDir, rel), rootDir)
		}
		return fmt.Errorf("cannot create directory %s: %w", filepath.Join(rootDir, rel), unwrapPath(err))
	}
	return nil
}

// writeFile writes r to rel with exactly mode, creating parent directories.
func (w *writer) writeFile(root *os.Root, rootDir, rel string, r io.Reader, mode fs.FileMode) error {
	full := filepath.Join(rootDir, rel)
	if err := w.mkdirAll(root, rootDir, filepath.Dir(rel)); err != nil {
		return err
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		if strings.Contains(err.Error(), "escapes") {
			return fmt.Errorf("refusing to write %s: a symlink on the way leads outside %s", full, rootDir)
		}
		return fmt.Errorf("cannot write %s: %w", full, unwrapPath(err))
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", full, unwrapPath(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", full, unwrapPath(err))
	}
	// The umask, or an earlier file at the same path, may have left
	// other bits.
	if err := root.Chmod(rel, mode); err != nil {
		return fmt.Errorf("cannot set mode %s on %s: %w", mode, full, unwrapPath(err))
	}
	w.stats.Files++
	return nil
}

// unwrapPath drops the *PathError wrapper whose path is relative to a root
// and would confuse the reader; callers name the full path themselves.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
