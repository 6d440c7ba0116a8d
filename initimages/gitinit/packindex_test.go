package gitinit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// TestPackIndexMatchesGit indexes packs written by `git pack-objects` from
// the conformance repository, with offset deltas (what servers send
// git-init) and with deltas named by hash (go-git's parser indexes those),
// and compares every object id, offset and CRC with git's own index.
func TestPackIndexMatchesGit(t *testing.T) {
	r := getRealistic(t)
	for _, c := range []struct {
		name string
		args []string
	}{{"offset-deltas", []string{"--delta-base-offset"}}, {"ref-deltas", nil}} {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"pack-objects", "--all", "-q", "--depth=50", "--window=250"}, c.args...)
			sum := gittest.Git(t, r.bare, append(args, filepath.Join(out, "p"))...)
			want := readIdx(t, filepath.Join(out, "p-"+sum+".idx"))
			require.Greater(t, len(want), 100)

			dot := filepath.Join(t.TempDir(), ".git")
			packDir := filepath.Join(dot, "objects", "pack")
			s := &packStorage{Storage: filesystem.NewStorage(osfs.New(dot), cache.NewObjectLRUDefault()), packDir: packDir}
			w, err := s.PackfileWriter()
			require.NoError(t, err)
			f, err := os.Open(filepath.Join(out, "p-"+sum+".pack"))
			require.NoError(t, err)
			defer f.Close()
			// Odd-sized writes, as a network delivers them.
			_, err = io.CopyBuffer(struct{ io.Writer }{w}, f, make([]byte, 7919))
			require.NoError(t, err)
			require.NoError(t, w.Close())
			require.FileExists(t, filepath.Join(packDir, "pack-"+sum+".pack"))
			got := readIdx(t, filepath.Join(packDir, "pack-"+sum+".idx"))
			require.Equal(t, want, got)
			tmp, _ := filepath.Glob(filepath.Join(packDir, "tmp_pack_*"))
			require.Empty(t, tmp)
		})
	}
}

// TestPackIndexRefusesCorruptPack checks that a pack damaged in transit
// fails the fetch instead of being indexed.
func TestPackIndexRefusesCorruptPack(t *testing.T) {
	r := getRealistic(t)
	out := t.TempDir()
	sum := gittest.Git(t, r.bare, "pack-objects", "--all", "-q", "--delta-base-offset", filepath.Join(out, "p"))
	data, err := os.ReadFile(filepath.Join(out, "p-"+sum+".pack"))
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	dot := filepath.Join(t.TempDir(), ".git")
	s := &packStorage{Storage: filesystem.NewStorage(osfs.New(dot), cache.NewObjectLRUDefault()), packDir: filepath.Join(dot, "objects", "pack")}
	w, err := s.PackfileWriter()
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	err = w.Close()
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot index the fetched pack")
	left, _ := os.ReadDir(filepath.Join(dot, "objects", "pack"))
	require.Empty(t, left)
}

// readIdx lists a pack index as "id offset crc" lines.
func readIdx(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	require.NoError(t, idxfile.NewDecoder(f).Decode(idx))
	it, err := idx.Entries()
	require.NoError(t, err)
	m := map[string]string{}
	for {
		e, err := it.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		m[e.Hash.String()] = fmt.Sprintf("%d %08x", e.Offset, e.CRC32)
	}
	return m
}
