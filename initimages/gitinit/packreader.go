package gitinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// packReader decodes blobs straight from the fetched pack files into one
// buffer of the blob's exact size. go-git's own decoder copies a delta's
// base and result several times over (and streams large deltas wrongly,
// see gitinit.go); this one holds a delta's base and result and
// nothing more, plus a small cache of recent bases for chains of small
// objects.
type packReader struct {
	packs []*pack
	// cached is the size of all packs' caches.
	cached int
}

type pack struct {
	idx   *idxfile.MemoryIndex
	f     *os.File
	rd    *objectReader
	cache map[int64][]byte
}

// Small objects are kept as delta bases: source files come in long chains.
const (
	baseCacheObject = 1 << 20
	baseCacheTotal  = 16 << 20
)

// openPacks opens the packs of the repository at gitDir.
func openPacks(gitDir string) (*packReader, error) {
	idxs, err := filepath.Glob(filepath.Join(gitDir, "objects", "pack", "pack-*.idx"))
	if err != nil {
		return nil, err
	}
	r := &packReader{}
	for _, p := range idxs {
		f, err := os.Open(p)
		if err != nil {
			r.Close()
			return nil, err
		}
		idx := idxfile.NewMemoryIndex()
		err = idxfile.NewDecoder(f).Decode(idx)
		f.Close()
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("cannot read %s: %w", p, err)
		}
		pf, err := os.Open(p[:len(p)-len(".idx")] + ".pack")
		if err != nil {
			r.Close()
			return nil, err
		}
		r.packs = append(r.packs, &pack{idx: idx, f: pf, rd: newObjectReader(pf), cache: map[int64][]byte{}})
	}
	return r, nil
}

// fork returns a reader of the same packs with file handles and a cache
// of its own, for another goroutine; the indexes are shared (read only).
func (r *packReader) fork() (*packReader, error) {
	out := &packReader{}
	for _, p := range r.packs {
		f, err := os.Open(p.f.Name())
		if err != nil {
			out.Close()
			return nil, err
		}
		out.packs = append(out.packs, &pack{idx: p.idx, f: f, rd: newObjectReader(f), cache: map[int64][]byte{}})
	}
	return out, nil
}

func (r *packReader) Close() {
	for _, p := range r.packs {
		p.f.Close()
	}
}

// errNotInPack sends the caller to go-git for objects not in a pack.
var errNotInPack = errors.New("object not in a pack")

// blob returns the content of the blob h.
func (r *packReader) blob(h plumbing.Hash) ([]byte, error) {
	for _, p := range r.packs {
		off, err := p.idx.FindOffset(h)
		if err != nil {
			continue
		}
		typ, data, err := r.at(p, off, 0)
		if err != nil {
			return nil, err
		}
		if typ != plumbing.BlobObject {
			return nil, fmt.Errorf("object %s is a %s, not a blob", h, typ)
		}
		return data, nil
	}
	return nil, errNotInPack
}

// maxChain bounds delta chains, as git's pack format allows (4095).
const maxChain = 10000

func (r *packReader) at(p *pack, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	if depth > maxChain {
		return 0, nil, fmt.Errorf("delta chain longer than %d at offset %d", maxChain, off)
	}
	if b, ok := p.cache[off]; ok {
		return plumbing.BlobObject, b, nil
	}
	hdr, delta, err := p.rd.object(off)
	if err != nil {
		return 0, nil, err
	}
	switch hdr.typ {
	case plumbing.BlobObject, plumbing.TreeObject, plumbing.CommitObject, plumbing.TagObject:
		if depth > 0 {
			r.keep(p, off, hdr.typ, delta)
		}
		return hdr.typ, delta, nil
	}
	var typ plumbing.ObjectType
	var base []byte
	if hdr.typ == plumbing.OFSDeltaObject {
		typ, base, err = r.at(p, hdr.base, depth+1)
	} else {
		bp, boff, ok := r.find(hdr.ref)
		if !ok {
			// A base outside the packs (a loose object): go-git reads it.
			return 0, nil, errNotInPack
		}
		typ, base, err = r.at(bp, boff, depth+1)
	}
	if err != nil {
		return 0, nil, err
	}
	out, err := applyDelta(base, delta)
	if err != nil {
		return 0, nil, fmt.Errorf("object at offset %d: %w", off, err)
	}
	if depth > 0 {
		r.keep(p, off, typ, out)
	}
	return typ, out, nil
}

func (r *packReader) find(h plumbing.Hash) (*pack, int64, bool) {
	for _, p := range r.packs {
		if off, err := p.idx.FindOffset(h); err == nil {
			return p, off, true
		}
	}
	return nil, 0, false
}

// keep caches a small blob that was needed as a delta base: the next
// delta in its chain is likely to need it too. Blobs read for themselves
// are not kept (most are no delta's base). The cache is emptied when full.
func (r *packReader) keep(p *pack, off int64, typ plumbing.ObjectType, b []byte) {
	if typ != plumbing.BlobObject || len(b) > baseCacheObject {
		return
	}
	if r.cached+len(b) > baseCacheTotal {
		for _, q := range r.packs {
			clear(q.cache)
		}
		r.cached = 0
	}
	p.cache[off] = b
	r.cached += len(b)
}

var errBadDelta = errors.New("invalid delta")

// applyDelta applies a git delta to base into a buffer of the target's
// exact size.
func applyDelta(base, delta []byte) ([]byte, error) {
	var out []byte
	err := patchDelta(base, delta, func(size uint64) { out = make([]byte, 0, size) }, func(b []byte) { out = append(out, b...) })
	return out, err
}

// patchDelta applies a git delta to base and hands the target to emit
// piece by piece, after telling start its size; with a hash as emit the
// target never exists in memory as a whole.
func patchDelta(base, delta []byte, start func(size uint64), emit func([]byte)) error {
	srcSize, delta, err := leb128(delta)
	if err != nil || srcSize != uint64(len(base)) {
		return errBadDelta
	}
	dstSize, delta, err := leb128(delta)
	if err != nil {
		return errBadDelta
	}
	start(dstSize)
	var done uint64
	for len(delta) > 0 {
		cmd := delta[0]
		delta = delta[1:]
		switch {
		case cmd&0x80 != 0:
			var off, size uint64
			for i := 0; i < 4; i++ {
				if cmd&(1<<i) != 0 {
					if len(delta) == 0 {
						return errBadDelta
					}
					off |= uint64(delta[0]) << (8 * i)
					delta = delta[1:]
				}
			}
			for i := 0; i < 3; i++ {
				if cmd&(0x10<<i) != 0 {
					if len(delta) == 0 {
						return errBadDelta
					}
					size |= uint64(delta[0]) << (8 * i)
					delta = delta[1:]
				}
			}
			if size == 0 {
				size = 0x10000
			}
			if off+size > uint64(len(base)) || done+size > dstSize {
				return errBadDelta
			}
			emit(base[off : off+size])
			done += size
		case cmd != 0:
			n := uint64(cmd)
			if uint64(len(delta)) < n || done+n > dstSize {
				return errBadDelta
			}
			emit(delta[:n])
			done += n
			delta = delta[n:]
		default:
			return errBadDelta
		}
	}
	if done != dstSize {
		return errBadDelta
	}
	return nil
}

func leb128(b []byte) (uint64, []byte, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, b[i+1:], nil
		}
	}
	return 0, nil, io.ErrUnexpectedEOF
}
