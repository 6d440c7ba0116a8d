package gitinit

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// benchRepoSpec describes a generated repository: files of random bytes
// (incompressible, like binaries and assets) plus a second commit that
// rewrites a tenth of them, so that a shallow clone skips real history.
type benchRepoSpec struct {
	name     string
	files    int
	fileSize int
}

var benchRepos = []benchRepoSpec{
	{name: "small", files: 40, fileSize: 8 << 10},    // ~320 KB
	{name: "100MB", files: 200, fileSize: 512 << 10}, // ~100 MB at the tip
}

// benchDir holds the generated repositories for the whole test binary run,
// so that -count does not regenerate them; TestMain removes it.
var (
	benchDir     string
	benchRepoDir = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{benchDir, conformanceDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// makeBenchRepo builds the bare repository deterministically (fixed seed,
// fixed dates) and packs it once, so that every clone is served from the
// same pack.
func makeBenchRepo(b *testing.B, spec benchRepoSpec) string {
	b.Helper()
	if dir, ok := benchRepoDir[spec.name]; ok {
		return dir
	}
	if benchDir == "" {
		dir, err := os.MkdirTemp("", "gitinit-bench-")
		require.NoError(b, err)
		benchDir = dir
	}
	root := filepath.Join(benchDir, spec.name)
	work := filepath.Join(benchDir, spec.name+"-work")
	require.NoError(b, os.MkdirAll(work, 0o755))
	require.NoError(b, os.MkdirAll(root, 0o755))
	gittest.Git(b, work, "init", "-q", "-b", "main")
	rng := rand.NewChaCha8([32]byte{'k', 'u', 'b', 'e'})
	buf := make([]byte, spec.fileSize)
	for commit := 0; commit < 2; commit++ {
		for i := 0; i < spec.files; i++ {
			if commit == 1 && i%10 != 0 {
				continue
			}
			_, _ = rng.Read(buf)
			p := filepath.Join(work, fmt.Sprintf("dir%02d", i%16), fmt.Sprintf("blob%04d.bin", i))
			require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(b, os.WriteFile(p, buf, 0o644))
		}
		require.NoError(b, os.WriteFile(filepath.Join(work, "README.md"), fmt.Appendf(nil, "revision %d\n", commit), 0o644))
		gittest.Git(b, work, "add", "-A")
		gittest.Git(b, work, "commit", "-q", "-m", fmt.Sprintf("revision %d", commit))
	}
	bare := filepath.Join(root, "repo.git")
	gittest.Git(b, root, "clone", "-q", "--bare", "--no-local", work, bare)
	gittest.Git(b, bare, "repack", "-a", "-d", "-q", "--window=0")
	require.NoError(b, os.RemoveAll(work))
	benchRepoDir[spec.name] = root
	return root
}

// BenchmarkShallowClone compares git-init (go-git) with `git clone --depth 1`
// over the same local smart-HTTP server (git http-backend).
func BenchmarkShallowClone(b *testing.B) {
	for _, spec := range benchRepos {
		root := makeBenchRepo(b, spec)
		srv := gittest.NewHTTPServer(b, root, gittest.HTTPOptions{})
		url := srv.URL + "/repo.git"
		b.Run(spec.name+"/go-git", func(b *testing.B) {
			ws := b.TempDir()
			opts := DefaultOptions()
			opts.Roots = []string{ws}
			opts.Log = io.Discard
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dest := filepath.Join(ws, fmt.Sprint(i))
				plan := &contract.GitPlan{Version: contract.Version, Repository: url, Depth: 1, Dest: dest}
				if _, err := Run(context.Background(), plan, opts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				require.NoError(b, os.RemoveAll(dest))
				b.StartTimer()
			}
		})
		b.Run(spec.name+"/git-cli", func(b *testing.B) {
			ws := b.TempDir()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dest := filepath.Join(ws, fmt.Sprint(i))
				cmd := exec.Command("git", "clone", "-q", "--depth", "1", url, dest)
				cmd.Env = gittest.Env(ws)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("git clone: %v: %s", err, out)
				}
				b.StopTimer()
				require.NoError(b, os.RemoveAll(dest))
				b.StartTimer()
			}
		})
	}
}
