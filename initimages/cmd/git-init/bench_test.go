package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
	"github.com/kubeopencode/kubeopencode/initimages/internal/proctest"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// BenchmarkClone compares the git-init binary with the git CLI
// (`git clone --depth N`) on the same generated repositories, served by
// the same `git http-backend`. Every clone is a new process; besides the
// time per clone it reports peak-MiB, the largest resident set of the
// clone's processes (ru_maxrss of the child and the children it waited
// for: for the CLI usually index-pack).
//
// The repositories are shaped like real ones and repacked as
// `git gc --aggressive` would, so that large files are stored as deltas:
//   - source: 400 source files, 12 text files of 1-4 MiB in block-shuffled
//     variants, 60 commits (about 36 MiB at the tip);
//   - bigfile: a 64 MiB text file and a block-shuffled copy of it (stored
//     as a delta of the first), the worst case for memory;
//   - deep: a tree 1,000 directories deep.
func BenchmarkClone(b *testing.B) {
	dir := b.TempDir()
	bin := proctest.Build(b, ".", dir, "git-init")
	root := filepath.Join(dir, "srv")
	makeSourceRepo(b, filepath.Join(root, "source.git"))
	makeBigFileRepo(b, filepath.Join(root, "bigfile.git"))
	makeDeepRepo(b, filepath.Join(root, "deep.git"))
	srv := gittest.NewHTTPServer(b, root, gittest.HTTPOptions{})
	for _, c := range []struct {
		repo  string
		depth int
	}{{"source", 1}, {"source", 0}, {"bigfile", 1}, {"deep", 1}} {
		url := srv.URL + "/" + c.repo + ".git"
		name := fmt.Sprintf("%s/depth%d", c.repo, c.depth)
		b.Run(name+"/git-init", func(b *testing.B) {
			ws := b.TempDir()
			runClones(b, ws, func(dest string) *exec.Cmd {
				plan, err := json.Marshal(contract.GitPlan{Version: contract.Version, Repository: url, Depth: c.depth, Dest: dest})
				require.NoError(b, err)
				cmd := exec.Command(bin)
				cmd.Env = []string{contract.GitPlanEnv + "=" + string(plan), initutil.EnvAllowedRoots + "=" + ws, initutil.EnvTerminationMessagePath + "=" + filepath.Join(ws, "termination-log")}
				if v, ok := os.LookupEnv("GOGC"); ok {
					cmd.Env = append(cmd.Env, "GOGC="+v) // to compare collector settings (git-init's default is 25)
				}
				return cmd
			})
		})
		b.Run(name+"/git-cli", func(b *testing.B) {
			ws := b.TempDir()
			runClones(b, ws, func(dest string) *exec.Cmd {
				args := []string{"clone", "-q"}
				if c.depth > 0 {
					args = append(args, "--depth", fmt.Sprint(c.depth))
				}
				cmd := exec.Command("git", append(args, url, dest)...)
				cmd.Env = gittest.Env(ws)
				return cmd
			})
		})
	}
}

// envRusage makes the test binary a launcher: it runs its arguments as a
// command and writes the command's ru_maxrss (KiB) to the file named by
// the variable. A child started by the benchmark process itself would
// inherit that process's high-water mark on Linux (the address space is
// shared until exec); the freshly started launcher is small (about
// 10 MiB), which is the floor of every figure.
const envRusage = "KUBEOPENCODE_BENCH_RUSAGE_FILE"

func TestMain(m *testing.M) {
	if out := os.Getenv(envRusage); out != "" {
		os.Exit(launch(out))
	}
	os.Exit(m.Run())
}

func launch(out string) int {
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, envRusage+"=") })
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		_ = os.WriteFile(out, []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644)
	}
	if err != nil {
		return 1
	}
	return 0
}

// runClones runs b.N clones into fresh directories of ws and reports the
// largest peak resident set.
func runClones(b *testing.B, ws string, clone func(dest string) *exec.Cmd) {
	var peak int64
	var elapsed time.Duration
	rusage := filepath.Join(b.TempDir(), "maxrss")
	for i := 0; i < b.N; i++ {
		dest := filepath.Join(ws, fmt.Sprint(i))
		c := clone(dest)
		cmd := exec.Command(os.Args[0], c.Args...)
		cmd.Args[1] = c.Path
		cmd.Env = append(c.Env, envRusage+"="+rusage)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed += time.Since(start)
		require.NoError(b, err, "%s", out)
		kib, err := os.ReadFile(rusage)
		require.NoError(b, err)
		n, err := strconv.ParseInt(string(kib), 10, 64)
		require.NoError(b, err)
		peak = max(peak, n)
		b.StopTimer()
		require.NoError(b, os.RemoveAll(dest))
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/1024, "peak-MiB")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/clone")
}

func makeSourceRepo(b *testing.B, bare string) {
	g := gittest.NewTextGen(7)
	var fi gittest.FastImport
	src := make([][]string, 400)
	var first []gittest.FileOp
	for i := range src {
		src[i] = g.Lines(600, fmt.Sprintf("s%03d", i))
		first = append(first, gittest.FileOp{Path: fmt.Sprintf("pkg%02d/file%03d.go", i%25, i), Mode: "100644", Ref: fi.Blob(gittest.Join(src[i]))})
	}
	bigs := map[string][]string{}
	for i, n := range []int{21000, 42000, 84000} {
		bigs[fmt.Sprint(i)] = g.Lines(n, fmt.Sprintf("b%d", i))
	}
	big := func() []gittest.FileOp {
		var ops []gittest.FileOp
		for k, lines := range bigs {
			v := lines
			for j, block := range []int{0, 100, 37, 500} {
				if block > 0 {
					v = g.Shuffle(v, block, 200)
				}
				ops = append(ops, gittest.FileOp{Path: fmt.Sprintf("data/%s-%d.txt", k, j), Mode: "100644", Ref: fi.Blob(gittest.Join(v))})
			}
		}
		return ops
	}
	for c := 0; c < 60; c++ {
		var ops []gittest.FileOp
		if c == 0 {
			ops = append(first, big()...)
		} else {
			for k := 0; k < 8; k++ {
				i := (c*11 + k*29) % len(src)
				src[i] = g.Shuffle(src[i], 7, 20)
				ops = append(ops, gittest.FileOp{Path: fmt.Sprintf("pkg%02d/file%03d.go", i%25, i), Mode: "100644", Ref: fi.Blob(gittest.Join(src[i]))})
			}
			if c%20 == 0 {
				for k := range bigs {
					bigs[k] = g.Shuffle(bigs[k], 250, 40)
				}
				ops = append(ops, big()...)
			}
		}
		fi.Commit("refs/heads/main", "", fmt.Sprintf("commit %d", c), ops)
	}
	fi.Import(b, bare)
	repack(b, bare)
}

func makeBigFileRepo(b *testing.B, bare string) {
	g := gittest.NewTextGen(9)
	var fi gittest.FastImport
	lines := g.Lines(1_350_000, "big") // about 64 MiB
	fi.Commit("refs/heads/main", "", "big file", []gittest.FileOp{
		{Path: "big.txt", Mode: "100644", Ref: fi.Blob(gittest.Join(lines))},
		{Path: "big-shuffled.txt", Mode: "100644", Ref: fi.Blob(gittest.Join(g.Shuffle(lines, 1000, 1000)))},
	})
	fi.Import(b, bare)
	repack(b, bare)
}

func makeDeepRepo(b *testing.B, bare string) {
	var fi gittest.FastImport
	deep := strings.Repeat("d/", 1000)
	var ops []gittest.FileOp
	for i := 0; i < 1000; i += 10 {
		ops = append(ops, gittest.FileOp{Path: deep[:2*i] + fmt.Sprintf("f%d.txt", i), Mode: "100644", Ref: fi.Blob(fmt.Appendf(nil, "level %d\n", i))})
	}
	fi.Commit("refs/heads/main", "", "deep", ops)
	fi.Import(b, bare)
}

// repack stores the repository as `git gc --aggressive` would, and checks
// that large blobs really are deltas.
func repack(b *testing.B, bare string) {
	gittest.Git(b, bare, "repack", "-a", "-d", "-f", "-q", "--depth=50", "--window=250")
	require.NotEmpty(b, gittest.PackDeltas(b, bare), "the pack holds deltas")
}
