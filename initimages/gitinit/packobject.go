package gitinit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/klauspost/compress/zlib"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
)

// objectReader inflates the objects of a pack file at known offsets. It
// does what go-git's packfile.Scanner.SeekObjectHeader and NextObject do
// for the indexer and the checkout, without what they need only when a
// pack is read as a stream: go-git's scanner hands the inflater a reader
// that counts offsets and updates a CRC byte by byte, a third of a
// checkout's time. Here the inflater reads straight from a bufio.Reader
// over the file, and one zlib reader is reused for every object.
type objectReader struct {
	f  *os.File
	br *bufio.Reader
	zr io.ReadCloser
}

func newObjectReader(f *os.File) *objectReader {
	return &objectReader{f: f, br: bufio.NewReaderSize(nil, 64<<10)}
}

// objectHeader is the header of one pack entry.
type objectHeader struct {
	typ plumbing.ObjectType
	// size is the inflated size of the entry: of the object itself, or of
	// the delta for a delta.
	size int64
	// base is the offset of an offset delta's base.
	base int64
	// ref names a ref delta's base.
	ref plumbing.Hash
}

// maxObjectSize bounds the size a header may claim before anything is
// allocated for it; git's own limit for a single object is far below it.
const maxObjectSize = 1 << 40

// preallocate is the largest buffer allocated at a header's word.
const preallocate = 256 << 20

var errBadHeader = errors.New("invalid object header")

// object reads the entry at off and inflates it into a buffer of exactly
// the size its header gives, checking that the zlib stream ends there.
func (r *objectReader) object(off int64) (objectHeader, []byte, error) {
	h, err := r.headerAt(off)
	if err != nil {
		return h, nil, fmt.Errorf("object at offset %d: %w", off, err)
	}
	if r.zr == nil {
		r.zr, err = zlib.NewReader(r.br)
	} else {
		err = r.zr.(zlib.Resetter).Reset(r.br, nil)
	}
	if err != nil {
		return h, nil, fmt.Errorf("object at offset %d: %w", off, err)
	}
	var buf []byte
	if h.size <= preallocate {
		buf = make([]byte, h.size)
		_, err = io.ReadFull(r.zr, buf)
	} else {
		// A damaged header must not allocate what it claims: the buffer
		// grows with what the stream really holds.
		var b bytes.Buffer
		var n int64
		n, err = io.Copy(&b, io.LimitReader(r.zr, h.size))
		if err == nil && n < h.size {
			err = io.ErrUnexpectedEOF
		}
		buf = b.Bytes()
	}
	if err != nil {
		return h, nil, fmt.Errorf("object at offset %d: inflating %d bytes: %w", off, h.size, noEOF(err))
	}
	// The stream must end here: reading on checks its Adler-32 too.
	var one [1]byte
	if n, err := r.zr.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("more data than its header says")
		}
		return h, nil, fmt.Errorf("object at offset %d: %w", off, noEOF(err))
	}
	return h, buf, nil
}

// headerAt positions the reader at off and parses the entry's header.
func (r *objectReader) headerAt(off int64) (objectHeader, error) {
	r.br.Reset(io.NewSectionReader(r.f, off, maxObjectSize))
	return r.header(off)
}

// header parses an entry's header: its type and size, then an offset
// delta's negative base offset or a ref delta's base id.
func (r *objectReader) header(off int64) (objectHeader, error) {
	var h objectHeader
	c, err := r.br.ReadByte()
	if err != nil {
		return h, noEOF(err)
	}
	h.typ = plumbing.ObjectType((c >> 4) & 7)
	size := int64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if shift > 56 {
			return h, errBadHeader
		}
		if c, err = r.br.ReadByte(); err != nil {
			return h, noEOF(err)
		}
		size |= int64(c&0x7f) << shift
	}
	if size > maxObjectSize {
		return h, fmt.Errorf("%w: size %d", errBadHeader, size)
	}
	h.size = size
	switch h.typ {
	case plumbing.OFSDeltaObject:
		// Git's offset encoding: each continuation byte adds one before
		// shifting, so that no two encodings mean the same offset.
		if c, err = r.br.ReadByte(); err != nil {
			return h, noEOF(err)
		}
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if rel > maxObjectSize {
				return h, errBadHeader
			}
			if c, err = r.br.ReadByte(); err != nil {
				return h, noEOF(err)
			}
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		if rel <= 0 || rel > off {
			return h, fmt.Errorf("%w: base offset %d bytes back", errBadHeader, rel)
		}
		h.base = off - rel
	case plumbing.REFDeltaObject:
		if _, err := io.ReadFull(r.br, h.ref[:]); err != nil {
			return h, noEOF(err)
		}
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	default:
		return h, fmt.Errorf("%w: type %d", errBadHeader, h.typ)
	}
	return h, nil
}

// noEOF turns the end of the file inside an object into an error that
// says so.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
