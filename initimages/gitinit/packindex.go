package gitinit

import (
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
	pr, pw := io.Pipe()
	w := &packWriter{s: s, f: f, pw: pw, scanned: make(chan packScan, 1)}
	// The first pass over the pack runs while it arrives.
	go func() {
		res := scanPack(packfile.NewScanner(pr))
		// Take the rest, so that the download goes on whatever happened;
		// Close reports the error.
		_, _ = io.Copy(io.Discard, pr)
		w.scanned <- res
	}()
	return w, nil
}

// packWriter stores the pack as it arrives, hashes its whole objects on
// the way and completes the index when closed.
type packWriter struct {
	s       *packStorage
	f       *os.File
	n       int64
	pw      *io.PipeWriter
	scanned chan packScan
}

func (w *packWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, err
	}
	if _, err := w.pw.Write(p[:n]); err != nil {
		return n, err
	}
	return n, nil
}

func (w *packWriter) Close() (err error) {
	tmp := w.f.Name()
	w.pw.Close()
	scan := <-w.scanned
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if w.n == 0 {
		w.f.Close()
		return os.Remove(tmp)
	}
	idx, sum, err := indexPack(w.f, scan)
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

// packScan is the first pass over a pack: every object's offset and CRC,
// the ids of whole objects, the delta tree.
type packScan struct {
	count uint32
	objs  []packObject
	kids  map[int64][]int // base offset -> deltas on it (indexes into objs)
	sum   plumbing.Hash
	err   error
}

func scanPack(sc *packfile.Scanner) (s packScan) {
	_, s.count, s.err = sc.Header()
	if s.err != nil {
		return s
	}
	s.objs = make([]packObject, 0, min(s.count, 1<<16))
	byOff := make(map[int64]int, min(s.count, 1<<16))
	s.kids = map[int64][]int{}
	for range s.count {
		oh, err := sc.NextObjectHeader()
		if err != nil {
			s.err = err
			return s
		}
		o := packObject{off: oh.Offset, typ: oh.Type}
		switch oh.Type {
		case plumbing.REFDeltaObject:
			s.err = errThinPack
			return s
		case plumbing.OFSDeltaObject:
			o.delta, o.parent = true, oh.OffsetReference
			if _, ok := byOff[o.parent]; !ok {
				s.err = fmt.Errorf("delta at offset %d: no object at its base offset %d", o.off, o.parent)
				return s
			}
			_, o.crc, err = sc.NextObject(io.Discard)
			s.kids[o.parent] = append(s.kids[o.parent], len(s.objs))
		case plumbing.BlobObject, plumbing.TreeObject, plumbing.CommitObject, plumbing.TagObject:
			h := plumbing.NewHasher(oh.Type, oh.Length)
			_, o.crc, err = sc.NextObject(h)
			o.hash = h.Sum()
		default:
			err = fmt.Errorf("object at offset %d has type %v", oh.Offset, oh.Type)
		}
		if err != nil {
			s.err = err
			return s
		}
		byOff[o.off] = len(s.objs)
		s.objs = append(s.objs, o)
	}
	s.sum, s.err = sc.Checksum()
	return s
}

// indexPack builds the index of the pack in f from the first pass over it.
func indexPack(f *os.File, scan packScan) (*idxfile.MemoryIndex, plumbing.Hash, error) {
	if errors.Is(scan.err, errThinPack) {
		return parserIndex(f)
	}
	if scan.err != nil {
		return nil, scan.sum, scan.err
	}
	ix := &indexer{rd: newObjectReader(f), objs: scan.objs, kids: scan.kids}
	for i := range ix.objs {
		o := ix.objs[i]
		if o.delta || len(ix.kids[o.off]) == 0 {
			continue
		}
		data, err := ix.read(o.off)
		if err != nil {
			return nil, scan.sum, err
		}
		if err := ix.resolve(o.typ, data, ix.kids[o.off], 1); err != nil {
			return nil, scan.sum, err
		}
	}
	w := new(idxfile.Writer)
	if err := w.OnHeader(scan.count); err != nil {
		return nil, scan.sum, err
	}
	for _, o := range ix.objs {
		if o.hash.IsZero() {
			return nil, scan.sum, fmt.Errorf("delta at offset %d has no base in the pack", o.off)
		}
		w.Add(o.hash, uint64(o.off), o.crc)
	}
	if err := w.OnFooter(scan.sum); err != nil {
		return nil, scan.sum, err
	}
	idx, err := w.Index()
	return idx, scan.sum, err
}

// parserIndex indexes the pack in f with go-git's parser.
func parserIndex(f *os.File) (*idxfile.MemoryIndex, plumbing.Hash, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, plumbing.ZeroHash, err
	}
	w := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	sum, err := p.Parse()
	if err != nil {
		return nil, sum, err
	}
	idx, err := w.Index()
	return idx, sum, err
}

type indexer struct {
	rd   *objectReader
	objs []packObject
	kids map[int64][]int
}

// read inflates the object at off into a buffer of its exact size.
func (ix *indexer) read(off int64) ([]byte, error) {
	_, data, err := ix.rd.object(off)
	return data, err
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
