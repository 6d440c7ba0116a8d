package gitinit

import (
	"context"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// The checkout decodes blobs on one goroutine and writes them on another,
// so that inflating the next files overlaps writing and hashing this one:
// on a repository of mostly compressed text, inflating is about half of a
// checkout's time and writing the other half. The decoder runs ahead by at
// most prefetchBudget bytes of decoded blobs (always at least one blob), so
// a large file is never held twice.
const prefetchBudget = 4 << 20

// blobJob is one blob the checkout will ask for, in the order it will.
type blobJob struct {
	hash plumbing.Hash
	// size is the blob's size, -1 if it could not be read (the writer then
	// reads it itself and reports why).
	size int64
}

type decodedBlob struct {
	blobJob
	data []byte
	// skipped: not decoded (too large for the memory limit, or size
	// unknown); the writer decides.
	skipped bool
	err     error
}

// prefetcher decodes jobs with one or more decoders, each with a pack
// reader of its own; job i goes to decoder i mod n, and the writer takes
// the results in job order. Budget is reserved in job order too, so the
// oldest job the writer waits for can always be decoded.
type prefetcher struct {
	outs []chan decodedBlob
	// taken counts the results the writer took.
	taken int

	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int64
	// ticket is the next job that may reserve budget.
	ticket  int
	stopped bool
	wg      sync.WaitGroup
}

// blobOrder lists the blobs that treeWriter.dir will read for tree, in the
// order it reads them: regular files and symlinks, depth first in tree
// order. It stops quietly at anything it cannot read; the writer reports it
// when it gets there.
func blobOrder(objects storer.EncodedObjectStorer, tree plumbing.Hash) []blobJob {
	var jobs []blobJob
	var walk func(h plumbing.Hash) bool
	walk = func(h plumbing.Hash) bool {
		t, err := object.GetTree(objects, h)
		if err != nil {
			return false
		}
		for _, e := range t.Entries {
			switch {
			case e.Mode == filemode.Dir:
				if !walk(e.Hash) {
					return false
				}
			case e.Mode == filemode.Submodule:
			case e.Mode == filemode.Symlink || isRegularFile(e.Mode):
				size := int64(-1)
				if obj, err := objects.EncodedObject(plumbing.BlobObject, e.Hash); err == nil {
					size = obj.Size()
				}
				jobs = append(jobs, blobJob{hash: e.Hash, size: size})
			default:
				return false
			}
		}
		return true
	}
	walk(tree)
	return jobs
}

// startPrefetch decodes jobs with the readers, one goroutine each; a blob
// larger than maxBlob (when set) is left to the writer.
func startPrefetch(ctx context.Context, readers []*packReader, jobs []blobJob, maxBlob int64) *prefetcher {
	p := &prefetcher{}
	p.cond = sync.NewCond(&p.mu)
	for k, packs := range readers {
		out := make(chan decodedBlob, 32)
		p.outs = append(p.outs, out)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(out)
			for i := k; i < len(jobs); i += len(readers) {
				j := jobs[i]
				d := decodedBlob{blobJob: j}
				skip := j.size < 0 || (maxBlob > 0 && j.size > maxBlob)
				if !p.reserve(i, j.size, skip) || ctx.Err() != nil {
					return
				}
				if skip {
					d.skipped = true
				} else {
					d.data, d.err = packs.blob(j.hash)
					if d.err != nil {
						p.release(j.size)
					}
				}
				select {
				case out <- d:
				case <-ctx.Done():
					return
				}
				if p.isStopped() {
					return
				}
			}
		}()
	}
	return p
}

// reserve waits until size more bytes fit in the budget (or nothing is in
// flight); false once the prefetcher is stopped.
func (p *prefetcher) reserve(job int, size int64, skip bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.stopped && (p.ticket != job || !skip && p.inFlight > 0 && p.inFlight+size > prefetchBudget) {
		p.cond.Wait()
	}
	if p.stopped {
		return false
	}
	p.ticket++
	if !skip {
		p.inFlight += size
	}
	p.cond.Broadcast()
	return true
}

func (p *prefetcher) release(size int64) {
	p.mu.Lock()
	p.inFlight -= size
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *prefetcher) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// next returns the next decoded blob if it is h; false when the
// prefetcher has nothing more or is out of step (the caller then stops it
// and decodes by itself).
func (p *prefetcher) next(h plumbing.Hash) (decodedBlob, bool) {
	d, ok := <-p.outs[p.taken%len(p.outs)]
	p.taken++
	if !ok || d.hash != h {
		if ok && !d.skipped && d.err == nil {
			p.release(d.size)
		}
		return decodedBlob{}, false
	}
	return d, true
}

// stop ends the decoder and waits for it: afterwards packs belongs to the
// caller again.
func (p *prefetcher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cond.Broadcast()
	for _, out := range p.outs {
		go func() {
			for range out {
			}
		}()
	}
	p.wg.Wait()
}
