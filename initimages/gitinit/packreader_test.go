package gitinit

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// gitPack writes every object of the conformance repository into one pack
// as `git gc --aggressive` would (offset deltas, chains up to 50), moves it
// into a .git/objects/pack of its own and returns that .git directory and
// the ids of its blobs with their sizes, as `git cat-file` reports them.
func gitPack(t *testing.T) (string, []blobJob) {
	r := getRealistic(t)
	dot := filepath.Join(t.TempDir(), ".git")
	packDir := filepath.Join(dot, "objects", "pack")
	require.NoError(t, os.MkdirAll(packDir, 0o755))
	gittest.Git(t, r.bare, "pack-objects", "--all", "-q", "--delta-base-offset", "--depth=50", "--window=250", filepath.Join(packDir, "pack"))
	var jobs []blobJob
	for _, line := range strings.Split(gittest.Git(t, r.bare, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectname) %(objectsize)"), "\n") {
		var typ, id string
		var size int64
		if _, err := fmt.Sscan(line, &typ, &id, &size); err != nil || typ != "blob" {
			continue
		}
		jobs = append(jobs, blobJob{hash: plumbing.NewHash(id), size: size})
	}
	require.Greater(t, len(jobs), 500)
	return dot, jobs
}

// TestPackReaderDecodesEveryBlob decodes every blob of a pack git wrote
// (deltas against deltas, backward and forward copies, files up to 4 MiB)
// and checks each against its object id, then does it again with two
// decoders at once, as the checkout does.
func TestPackReaderDecodesEveryBlob(t *testing.T) {
	dot, jobs := gitPack(t)
	packs, err := openPacks(dot)
	require.NoError(t, err)
	defer packs.Close()
	deltas := 0
	for _, j := range jobs {
		data, err := packs.blob(j.hash)
		require.NoError(t, err)
		require.Equal(t, j.hash, plumbing.ComputeHash(plumbing.BlobObject, data), "blob %s", j.hash)
		require.EqualValues(t, j.size, len(data))
		off, err := packs.packs[0].idx.FindOffset(j.hash)
		require.NoError(t, err)
		if h, err := packs.packs[0].rd.headerAt(off); err == nil && h.typ == plumbing.OFSDeltaObject {
			deltas++
		}
	}
	require.Greater(t, deltas, 100, "the pack stores blobs as deltas")

	second, err := packs.fork()
	require.NoError(t, err)
	defer second.Close()
	p := startPrefetch(context.Background(), []*packReader{packs, second}, jobs, 0)
	defer p.stop()
	for _, j := range jobs {
		d, ok := p.next(j.hash)
		require.True(t, ok)
		require.NoError(t, d.err)
		require.Equal(t, j.hash, plumbing.ComputeHash(plumbing.BlobObject, d.data), "blob %s", j.hash)
		p.release(d.size)
	}
	_, ok := p.next(plumbing.ZeroHash)
	require.False(t, ok, "nothing after the last job")
}

// TestPrefetchBudget checks that the decoders run ahead of the writer by at
// most the budget (or one blob), and that stopping them while the writer
// still holds blobs returns at once.
func TestPrefetchBudget(t *testing.T) {
	dot, jobs := gitPack(t)
	packs, err := openPacks(dot)
	require.NoError(t, err)
	defer packs.Close()
	second, err := packs.fork()
	require.NoError(t, err)
	defer second.Close()
	var largest int64
	for _, j := range jobs {
		largest = max(largest, j.size)
	}
	require.Greater(t, largest, int64(prefetchBudget)/4)

	p := startPrefetch(context.Background(), []*packReader{packs, second}, jobs, largest/2)
	var held []decodedBlob
	for i, j := range jobs[:len(jobs)/2] {
		d, ok := p.next(j.hash)
		require.True(t, ok)
		if j.size > largest/2 {
			require.True(t, d.skipped, "a blob over maxBlob is left to the writer")
			continue
		}
		require.NoError(t, d.err)
		held = append(held, d)
		// Let the decoders run as far as they may, then check how far.
		time.Sleep(time.Millisecond)
		p.mu.Lock()
		in := p.inFlight
		p.mu.Unlock()
		var heldBytes int64
		for _, h := range held {
			heldBytes += h.size
		}
		require.GreaterOrEqual(t, in, heldBytes)
		require.LessOrEqual(t, in-heldBytes, max(int64(prefetchBudget), largest), "decoded ahead of the writer at job %d", i)
		if i%3 == 0 {
			for _, h := range held {
				p.release(h.size)
			}
			held = nil
		}
	}
	done := make(chan struct{})
	go func() { p.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stopping the decoders hung")
	}
}

// TestObjectReaderRefusesDamagedEntries feeds the object reader pack
// entries whose header and zlib stream disagree.
func TestObjectReaderRefusesDamagedEntries(t *testing.T) {
	deflate := func(b []byte) []byte {
		var out bytes.Buffer
		w := zlib.NewWriter(&out)
		_, _ = w.Write(b)
		_ = w.Close()
		return out.Bytes()
	}
	// header encodes a blob (type 3) of size n as git does.
	header := func(n int) []byte {
		c := byte(3<<4) | byte(n&0x0f)
		n >>= 4
		var out []byte
		for n > 0 {
			out = append(out, c|0x80)
			c = byte(n & 0x7f)
			n >>= 7
		}
		return append(out, c)
	}
	content := bytes.Repeat([]byte("kubeopencode "), 1000)
	good := append(header(len(content)), deflate(content)...)
	stream := deflate(content)
	badSum := append(header(len(content)), stream...)
	badSum[len(badSum)-1] ^= 0xff
	for _, c := range []struct {
		name  string
		entry []byte
		want  string
	}{
		{"header says more", append(header(len(content)+10), deflate(content)...), "unexpected EOF"},
		{"header says less", append(header(len(content)-10), deflate(content)...), "more data than its header says"},
		{"truncated", good[:len(good)/2], "unexpected EOF"},
		{"checksum", badSum, "checksum"},
		{"type 5", append([]byte{5<<4 | 1}, deflate([]byte("x"))...), "invalid object header"},
		{"offset delta before the pack", []byte{6<<4 | 1, 0x7f}, "invalid object header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := objectFile(t, c.entry)
			_, _, err := r.object(12)
			require.Error(t, err)
			require.Contains(t, err.Error(), "object at offset 12")
			require.Contains(t, err.Error(), c.want)
		})
	}
	h, data, err := objectFile(t, good).object(12)
	require.NoError(t, err)
	require.Equal(t, plumbing.BlobObject, h.typ)
	require.Equal(t, content, data)
}

// objectFile writes entry at offset 12 of a file, after a pack header.
func objectFile(t *testing.T, entry []byte) *objectReader {
	f, err := os.Create(filepath.Join(t.TempDir(), "p.pack"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	_, err = f.Write(append([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01"), entry...))
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	require.NoError(t, err)
	return newObjectReader(f)
}
