package gitinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// packStorage is the repository's storage with git-init's own pack
// indexer. go-git's (packfile.Parser) inflates every object twice, applies
// every delta twice and holds a delta's base three times over (its read
// buffer, its cache and a copy per child) while it computes object ids:
// for a 64 MiB file stored as a delta that is more than twice the git
// CLI's peak memory, before the checkout has started. This indexer reads
// the pack once to hash the whole objects, then walks every delta tree
// from its base, as git's index-pack does: a delta that is itself a base
// is rebuilt in memory, any other is hashed as the delta is applied,
// without building its content. The parser is kept for packs with deltas
// against objects named by hash (thin packs), which servers send only to
// clients that do not ask for offset deltas.
type packStorage struct {
	*filesystem.Storage
	packDir string
}

func (s *packStorage) PackfileWriter() (io.WriteCloser, error) {
	if err := os.MkdirAll(s.packDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.packDir, "tmp_pack_")
	if err != nil {
		return nil, err
	}
	return &packWriter{s: s, f: f}, nil
}

// packWriter stores the pack as it arrives and indexes it when closed.
type packWriter struct {
	s *packStorage
	f *os.File
	n int64
}

func (w *packWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *packWriter) Close() (err error) {
	tmp := w.f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if w.n == 0 {
		w.f.Close()
		return os.Remove(tmp)
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		w.f.Close()
		return err
	}
	idx, sum, err := indexPack(w.f)
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot index the fetched pack: %w", err)
	}
	base := filepath.Join(w.s.packDir, "pack-"+sum.String())
	f, err := os.OpenFile(base+".idx", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return err
	}
	if _, err := idxfile.NewEncoder(f).Encode(idx); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, base+".pack"); err != nil {
		return err
	}
	// The storage lists its packs once; it must see the new one.
	w.s.Reindex()
	return nil
}

// packObject is what the indexer knows of one object of the pack.
type packObject struct {
	off    int64
	parent int64 // offset of the base of an offset delta
	delta  bool
	crc    uint32
	typ    plumbing.ObjectType
	hash   plumbing.Hash
}

var errThinPack = errors.New("pack has deltas against objects named by hash")

// indexPack builds the index of the pack in f.
func indexPack(f *os.File) (*idxfile.MemoryIndex, plumbing.Hash, error) {
	idx, sum, err := indexOwn(f)
	if !errors.Is(err, errThinPack) {
		return idx, sum, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, sum, err
	}
	w := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return nil, sum, err
	}
	if sum, err = p.Parse(); err != nil {
		return nil, sum, err
	}
	idx, err = w.Index()
	return idx, sum, err
}

func indexOwn(f *os.File) (*idxfile.MemoryIndex, plumbing.Hash, error) {
	var sum plumbing.Hash
	sc := packfile.NewScanner(f)
	_, count, err := sc.Header()
	if err != nil {
		return nil, sum, err
	}
	objs := make([]packObject, 0, min(count, 1<<16))
	byOff := make(map[int64]int, min(count, 1<<16))
	kids := map[int64][]int{}
	for range count {
		oh, err := sc.NextObjectHeader()
		if err != nil {
			return nil, sum, err
		}
		o := packObject{off: oh.Offset, typ: oh.Type}
		switch oh.Type {
		case plumbing.REFDeltaObject:
			return nil, sum, errThinPack
		case plumbing.OFSDeltaObject:
			o.delta, o.parent = true, oh.OffsetReference
			if _, ok := byOff[o.parent]; !ok {
				return nil, sum, fmt.Errorf("delta at offset %d: no object at its base offset %d", o.off, o.parent)
			}
			if _, o.crc, err = sc.NextObject(io.Discard); err != nil {
				return nil, sum, err
			}
			kids[o.parent] = append(kids[o.parent], len(objs))
		case plumbing.BlobObject, plumbing.TreeObject, plumbing.CommitObject, plumbing.TagObject:
			h := plumbing.NewHasher(oh.Type, oh.Length)
			if _, o.crc, err = sc.NextObject(h); err != nil {
				return nil, sum, err
			}
			o.hash = h.Sum()
		default:
			return nil, sum, fmt.Errorf("object at offset %d has type %v", oh.Offset, oh.Type)
		}
		byOff[o.off] = len(objs)
		objs = append(objs, o)
	}
	if sum, err = sc.Checksum(); err != nil {
		return nil, sum, err
	}
	ix := &indexer{sc: sc, objs: objs, kids: kids}
	for i := range objs {
		o := objs[i]
		if o.delta || len(kids[o.off]) == 0 {
			continue
		}
		data, err := ix.read(o.off)
		if err != nil {
			return nil, sum, err
		}
		if err := ix.resolve(o.typ, data, kids[o.off], 1); err != nil {
			return nil, sum, err
		}
	}
	w := new(idxfile.Writer)
	if err := w.OnHeader(count); err != nil {
		return nil, sum, err
	}
	for _, o := range objs {
		if o.hash.IsZero() {
			return nil, sum, fmt.Errorf("delta at offset %d has no base in the pack", o.off)
		}
		w.Add(o.hash, uint64(o.off), o.crc)
	}
	if err := w.OnFooter(sum); err != nil {
		return nil, sum, err
	}
	idx, err := w.Index()
	return idx, sum, err
}

type indexer struct {
	sc   *packfile.Scanner
	objs []packObject
	kids map[int64][]int
}

// read inflates the object at off into a buffer of its exact size.
func (ix *indexer) read(off int64) ([]byte, error) {
	hdr, err := ix.sc.SeekObjectHeader(off)
	if err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(hdr.Length, 1<<30)))
	if _, _, err := ix.sc.NextObject(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// resolve computes the ids of the deltas children (indexes into objs)
// of base, an object of type typ, and of their own deltas.
func (ix *indexer) resolve(typ plumbing.ObjectType, base []byte, children []int, depth int) error {
	if depth > maxChain {
		return fmt.Errorf("delta chain longer than %d", maxChain)
	}
	for n, i := range children {
		o := &ix.objs[i]
		delta, err := ix.read(o.off)
		if err != nil {
			return err
		}
		o.typ = typ
		grand := ix.kids[o.off]
		if len(grand) == 0 {
			var h plumbing.Hasher
			err := patchDelta(base, delta, func(size uint64) { h = plumbing.NewHasher(typ, int64(size)) }, func(b []byte) { h.Write(b) })
			if err != nil {
				return fmt.Errorf("delta at offset %d: %w", o.off, err)
			}
			o.hash = h.Sum()
			continue
		}
		out, err := applyDelta(base, delta)
		if err != nil {
			return fmt.Errorf("delta at offset %d: %w", o.off, err)
		}
		o.hash = plumbing.ComputeHash(typ, out)
		if n == len(children)-1 {
			// The base is not needed any more: a long chain holds one
			// object at a time.
			base = nil
		}
		if err := ix.resolve(typ, out, grand, depth+1); err != nil {
			return err
		}
	}
	return nil
}
