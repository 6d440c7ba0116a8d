package gitinit

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // Git's object names are SHA-1; this only recomputes them.
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// The worktree is written by git-init itself rather than by go-git's
// Worktree.Checkout, which re-roots absolute symlink targets, refuses names
// that Windows reserves (aux.c, con.txt) on every OS, ignores cancellation,
// slows down quadratically with the depth of the tree and writes through a
// string-checked path. Here every entry is written through an os.Root
// opened on its own directory (confined, and one path component per
// system call whatever the depth), every blob is hashed as it is written
// and compared with the object name in the tree, and the index is written
// from the stat data of the files just created, so that `git status` is
// clean at once.

// largeBlob is the size from which the checkout collects garbage after
// writing a blob.
const largeBlob = 8 << 20

// maxSymlinkTarget is Linux's PATH_MAX: symlink(2) refuses longer targets.
const maxSymlinkTarget = 4096

// submodule is a gitlink entry of the checked-out tree.
type submodule struct {
	Path   string
	Commit plumbing.Hash
}

// checkoutError is a tree entry git-init cannot or must not write; it is
// never retried.
type checkoutError struct{ msg string }

func (e *checkoutError) Error() string { return e.msg }

// treeWriter writes one commit's tree below a directory.
type treeWriter struct {
	ctx     context.Context
	objects storer.EncodedObjectStorer
	// packs, when set, decodes blobs instead of go-git (see packReader);
	// while pre runs, it is pre's.
	packs  *packReader
	pre    *prefetcher
	commit plumbing.Hash
	// maxBlob is the largest blob that may be decoded (0: no limit); see
	// memoryLimit.
	maxBlob    int64
	memLimit   int64
	entries    []*index.Entry
	submodules []submodule
	buf        []byte
	files      int
	bytes      int64
}

// writeTree checks out tree into root, which must hold nothing but .git,
// and collects the index entries (sorted) and the gitlinks it met.
func (w *treeWriter) writeTree(root *os.Root, tree plumbing.Hash) error {
	w.buf = make([]byte, 256<<10)
	if w.packs != nil {
		readers := []*packReader{w.packs}
		if runtime.GOMAXPROCS(0) > 1 {
			if second, err := w.packs.fork(); err == nil {
				defer second.Close()
				readers = append(readers, second)
			}
		}
		w.pre = startPrefetch(w.ctx, readers, blobOrder(w.objects, tree), w.maxBlob)
		defer w.stopPrefetch()
	}
	if _, err := w.dir(root, "", tree); err != nil {
		return err
	}
	sort.Slice(w.entries, func(i, j int) bool { return w.entries[i].Name < w.entries[j].Name })
	return nil
}

// dir writes the entries of tree into root (the directory prefix) and
// reports whether it wrote anything: like git, an empty tree leaves no
// directory behind.
func (w *treeWriter) dir(root *os.Root, prefix string, treeHash plumbing.Hash) (bool, error) {
	tree, err := object.GetTree(w.objects, treeHash)
	if err != nil {
		return false, fmt.Errorf("cannot read tree %s (%s): %w", treeHash, quotePath(prefix), err)
	}
	wrote := false
	for _, e := range tree.Entries {
		if err := w.ctx.Err(); err != nil {
			return false, err
		}
		p := prefix + e.Name
		if err := w.verify(p, e); err != nil {
			return false, err
		}
		switch e.Mode {
		case filemode.Dir:
			ok, err := w.subdir(root, p, e)
			if err != nil {
				return false, err
			}
			wrote = wrote || ok
		case filemode.Symlink:
			if err := w.symlink(root, p, e); err != nil {
				return false, err
			}
			wrote = true
		case filemode.Submodule:
			if err := root.Mkdir(e.Name, 0o777); err != nil {
				return false, w.writeErr(p, err)
			}
			w.submodules = append(w.submodules, submodule{Path: p, Commit: e.Hash})
			w.entries = append(w.entries, &index.Entry{Name: p, Hash: e.Hash, Mode: filemode.Submodule})
			wrote = true
		default:
			// Like git, any 100xxx mode is a regular file, executable
			// when the owner may execute it (old trees carry 100664).
			if !isRegularFile(e.Mode) {
				return false, &checkoutError{fmt.Sprintf("commit %s has entry %s with mode %o, which git does not check out", w.commit, quotePath(p), uint32(e.Mode))}
			}
			if err := w.file(root, p, e); err != nil {
				return false, err
			}
			wrote = true
		}
	}
	return wrote, nil
}

// verify refuses the entries git refuses, with the path in the message.
func (w *treeWriter) verify(p string, e object.TreeEntry) error {
	reason := ""
	switch {
	case e.Name == "" || e.Name == "." || e.Name == "..":
		reason = "a \".\", \"..\" or empty name"
	case containsByte(e.Name, '/'):
		reason = "a name containing \"/\""
	case !verifyPath(p, e.Mode == filemode.Symlink):
		reason = "a name git refuses to check out (\".git\" in some spelling, or a \".gitmodules\" symlink)"
	default:
		return nil
	}
	return &checkoutError{fmt.Sprintf("commit %s has a tree entry %s with %s: the git CLI refuses to check it out too; fix the repository", w.commit, quotePath(p), reason)}
}

// isRegularFile: like git, any 100xxx mode is a regular file.
func isRegularFile(m filemode.FileMode) bool { return uint32(m)&0o170000 == 0o100000 }

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

func (w *treeWriter) subdir(root *os.Root, p string, e object.TreeEntry) (bool, error) {
	if err := root.Mkdir(e.Name, 0o777); err != nil {
		return false, w.writeErr(p, err)
	}
	sub, err := root.OpenRoot(e.Name)
	if err != nil {
		return false, w.writeErr(p, err)
	}
	wrote, err := w.dir(sub, p+"/", e.Hash)
	sub.Close()
	if err != nil {
		return false, err
	}
	if !wrote {
		// git keeps no empty directories.
		if err := root.Remove(e.Name); err != nil {
			return false, w.writeErr(p, err)
		}
	}
	return wrote, nil
}

func (w *treeWriter) stopPrefetch() {
	if w.pre != nil {
		w.pre.stop()
		w.pre = nil
	}
}

// blob opens a blob for reading after checking that decoding it fits in
// memory.
func (w *treeWriter) blob(p string, h plumbing.Hash) (io.ReadCloser, int64, error) {
	if w.pre != nil {
		d, ok := w.pre.next(h)
		switch {
		case !ok:
			// Out of step (or cancelled): decode here from now on.
			w.stopPrefetch()
		case d.skipped:
		case d.err == nil:
			return &prefetched{Reader: bytes.NewReader(d.data), p: w.pre, size: d.size}, d.size, nil
		case !errors.Is(d.err, errNotInPack):
			return nil, 0, fmt.Errorf("cannot read blob %s of %s: %w", h, quotePath(p), d.err)
		}
	}
	obj, err := w.objects.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read blob %s of %s: %w", h, quotePath(p), err)
	}
	size := obj.Size()
	if w.maxBlob > 0 && size > w.maxBlob {
		return nil, 0, &checkoutError{fmt.Sprintf("file %s of commit %s is %s; decoding it needs up to %s of memory but git-init's memory limit is %s: raise the memory limit of the git-init container or leave the file out of the repository", quotePath(p), w.commit, humanBytes(size), humanBytes(size*blobMemoryFactor), humanBytes(w.memLimit))}
	}
	if w.packs != nil && w.pre == nil {
		data, err := w.packs.blob(h)
		if err == nil {
			return io.NopCloser(bytes.NewReader(data)), size, nil
		}
		if !errors.Is(err, errNotInPack) {
			return nil, 0, fmt.Errorf("cannot read blob %s of %s: %w", h, quotePath(p), err)
		}
	}
	rd, err := obj.Reader()
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read blob %s of %s: %w", h, quotePath(p), err)
	}
	return &closeOnce{ReadCloser: rd}, size, nil
}

// closeOnce makes a second Close do nothing: go-git's object readers give
// their zlib reader back to a shared pool on every Close, and a second
// Close would hand the same one to two later readers.
type closeOnce struct {
	io.ReadCloser
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.ReadCloser.Close() })
	return c.err
}

// prefetched is a decoded blob; closing it gives its memory back to the
// prefetcher's budget.
type prefetched struct {
	*bytes.Reader
	p    *prefetcher
	size int64
	once sync.Once
}

func (b *prefetched) Close() error {
	b.once.Do(func() {
		b.Reader = nil
		if b.size >= largeBlob {
			// Hand the memory back before a decoder may take it again,
			// so that peaks do not add up.
			runtime.GC()
		}
		b.p.release(b.size)
	})
	return nil
}

// copyVerified copies a blob of size bytes from rd to dst and checks that
// what it copied is the blob named want: a decoder bug can never produce a
// silently wrong file.
func (w *treeWriter) copyVerified(dst io.Writer, rd io.Reader, size int64, p string, want plumbing.Hash) error {
	h := sha1.New() //nolint:gosec
	h.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	n, err := io.CopyBuffer(io.MultiWriter(dst, h), rd, w.buf)
	if err != nil {
		return err
	}
	var got plumbing.Hash
	copy(got[:], h.Sum(nil))
	if n != size || got != want {
		return &checkoutError{fmt.Sprintf("file %s of commit %s decoded to %d bytes with object name %s instead of %d bytes of blob %s: refusing a corrupt checkout (a bug in the pack decoder; please report it)", quotePath(p), w.commit, n, got, size, want)}
	}
	return nil
}

func (w *treeWriter) file(root *os.Root, p string, e object.TreeEntry) error {
	rd, size, err := w.blob(p, e.Hash)
	if err != nil {
		return err
	}
	defer rd.Close()
	perm := fs.FileMode(0o666)
	mode := filemode.Regular
	if uint32(e.Mode)&0o100 != 0 {
		perm, mode = 0o777, filemode.Executable
	}
	f, err := root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return w.writeErr(p, err)
	}
	if err := w.copyVerified(f, rd, size, p, e.Hash); err != nil {
		f.Close()
		var ce *checkoutError
		if errors.As(err, &ce) {
			return err
		}
		return w.writeErr(p, err)
	}
	info, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return w.writeErr(p, err)
	}
	w.files++
	w.bytes += size
	w.entries = append(w.entries, indexEntry(p, e.Hash, mode, info))
	if _, ok := rd.(*prefetched); !ok && size >= largeBlob {
		// Hand the memory of a large blob back before the next one, so
		// that peaks do not add up (a prefetched blob does on Close).
		rd.Close()
		runtime.GC()
	}
	return nil
}

func (w *treeWriter) symlink(root *os.Root, p string, e object.TreeEntry) error {
	rd, size, err := w.blob(p, e.Hash)
	if err != nil {
		return err
	}
	defer rd.Close()
	if size > maxSymlinkTarget {
		return &checkoutError{fmt.Sprintf("symlink %s of commit %s has a target of %d bytes, longer than Linux allows (%d): the git CLI cannot check it out either", quotePath(p), w.commit, size, maxSymlinkTarget)}
	}
	var target bytesWriter
	if err := w.copyVerified(&target, rd, size, p, e.Hash); err != nil {
		return err
	}
	// The target is written exactly as committed, absolute or dangling:
	// os.Root confines what git-init writes, not what the link names.
	if err := root.Symlink(string(target), e.Name); err != nil {
		return w.writeErr(p, err)
	}
	info, err := root.Lstat(e.Name)
	if err != nil {
		return w.writeErr(p, err)
	}
	w.files++
	w.entries = append(w.entries, indexEntry(p, e.Hash, filemode.Symlink, info))
	return nil
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// writeErr names the path and keeps the reason (for example "file name too
// long") even when the path is very long.
func (w *treeWriter) writeErr(p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &checkoutError{fmt.Sprintf("cannot write %s: %v: the volume is full; give it more space (emptyDir sizeLimit or node disk) or use a smaller depth", quotePath(p), err)}
	}
	return &checkoutError{fmt.Sprintf("cannot write %s: %v", quotePath(p), err)}
}

// indexEntry records a written file with its stat data, as git would.
func indexEntry(p string, h plumbing.Hash, mode filemode.FileMode, info fs.FileInfo) *index.Entry {
	e := &index.Entry{Name: p, Hash: h, Mode: mode, Size: uint32(info.Size()), ModifiedAt: info.ModTime()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		e.CreatedAt = time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)) //nolint:unconvert // int32 on some platforms
		e.Dev, e.Inode = uint32(st.Dev), uint32(st.Ino)
		e.UID, e.GID = st.Uid, st.Gid
	}
	return e
}

// quotePath quotes a path from a tree for a message: control characters are
// escaped, and a very long path is shortened in the middle so that the
// reason after it still fits in the termination message.
func quotePath(p string) string {
	const keep = 120
	if len(p) > 2*keep {
		return strconv.Quote(p[:keep]) + "…" + strconv.Quote(p[len(p)-keep:]) + " (" + strconv.Itoa(len(p)) + " bytes)"
	}
	return strconv.Quote(p)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
