package cluster

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two test binaries building at once must not write the same files: the
// second waits until the first releases the lock.
func TestBuildLockExcludesConcurrentBuilders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.lock")
	unlock, err := lockFile(t.Context(), path, io.Discard)
	require.NoError(t, err)

	acquired := make(chan func())
	go func() {
		unlock2, err := lockFile(t.Context(), path, io.Discard)
		assert.NoError(t, err)
		acquired <- unlock2
	}()
	select {
	case <-acquired:
		t.Fatal("second builder got the lock while the first held it")
	case <-time.After(1500 * time.Millisecond):
	}
	unlock()
	select {
	case unlock2 := <-acquired:
		unlock2()
	case <-time.After(5 * time.Second):
		t.Fatal("second builder did not get the lock after release")
	}
}

func TestMissingListsOnlyAbsentBinaries(t *testing.T) {
	dir := t.TempDir()
	b := Binaries{Dir: dir}
	require.NoError(t, writeFile(b.Path(Etcd)))
	assert.Equal(t, []string{KubeAPIServer, Kwok}, missing(b, []string{Etcd, KubeAPIServer, Kwok}))
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o755) }
