package gitinit

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // Git object names
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// The conformance suite compares every checkout of git-init with the
// commit as the git CLI sees it (`git ls-tree -r`): every path, mode, blob
// and symlink target, nothing more on disk, and `git status` clean. The
// repositories are shaped like real ones (see realisticRepo).

// treeEntry is one line of `git ls-tree -r`.
type treeEntry struct{ mode, sha string }

// lsTree lists the commit's tree as the git CLI sees it.
func lsTree(t *testing.T, bare, commit string) map[string]treeEntry {
	t.Helper()
	cmd := exec.Command("git", "ls-tree", "-r", "-z", "--full-tree", commit)
	cmd.Dir = bare
	cmd.Env = gittest.Env(bare)
	out, err := cmd.Output()
	require.NoError(t, err)
	m := map[string]treeEntry{}
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, path, ok := bytes.Cut(rec, []byte{'\t'})
		require.True(t, ok)
		f := strings.Fields(string(meta))
		require.Len(t, f, 3)
		m[string(path)] = treeEntry{mode: f[0], sha: f[2]}
	}
	return m
}

// blobName is what `git hash-object` says of data.
func blobName(data []byte) string {
	h := sha1.New() //nolint:gosec
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// onDisk lists the checkout as ls-tree would: files with their mode and
// blob name, symlinks with the name of their target, and empty
// directories as gitlinks (mode 160000, no name).
func onDisk(t *testing.T, dest string) map[string]treeEntry {
	t.Helper()
	m := map[string]treeEntry{}
	require.NoError(t, filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dest, p)
		if rel == ".git" {
			return filepath.SkipDir
		}
		info, err := os.Lstat(p)
		require.NoError(t, err)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			m[rel] = treeEntry{mode: "120000", sha: blobName([]byte(target))}
		case info.IsDir():
			entries, err := os.ReadDir(p)
			require.NoError(t, err)
			if len(entries) == 0 && rel != "." {
				m[rel] = treeEntry{mode: "160000"}
			}
			if _, err := os.Lstat(filepath.Join(p, ".git")); err == nil && rel != "." {
				m[rel] = treeEntry{mode: "160000"} // a checked-out submodule, compared on its own
				return filepath.SkipDir
			}
		default:
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			mode := "100644"
			if info.Mode()&0o100 != 0 {
				mode = "100755"
			}
			m[rel] = treeEntry{mode: mode, sha: blobName(data)}
		}
		return nil
	}))
	return m
}

// assertMatchesCommit is the conformance check.
func assertMatchesCommit(t *testing.T, bare, dest, commit string) {
	t.Helper()
	want := lsTree(t, bare, commit)
	got := onDisk(t, dest)
	for p, w := range want {
		if w.mode == "160000" {
			w.sha = "" // an uninitialised submodule is an empty directory
			want[p] = w
		}
	}
	var wrong []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			wrong = append(wrong, fmt.Sprintf("missing %q (%s %s)", p, w.mode, w.sha))
		} else if g != w {
			wrong = append(wrong, fmt.Sprintf("%q is %s %s, commit has %s %s", p, g.mode, g.sha, w.mode, w.sha))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			wrong = append(wrong, fmt.Sprintf("extra %q (%s %s)", p, g.mode, g.sha))
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 20 {
		wrong = append(wrong[:20], fmt.Sprintf("... and %d more", len(wrong)-20))
	}
	assert.Empty(t, wrong, "checkout of %s differs from the commit (%d entries)", commit, len(want))
	assert.Equal(t, commit, gittest.Git(t, dest, "rev-parse", "HEAD"))
	assert.Empty(t, gittest.Git(t, dest, "status", "--porcelain", "--ignored"), "git status in the checkout")
}

// realistic is the generated repository, built once per test binary.
type realistic struct {
	root string // served directory: app.git and lib.git
	bare string // root/app.git
	// main holds the commits of main, oldest first.
	main     []string
	feature  string
	lib      string // the submodule's commit
	lightTag string // v0.1 -> main[10]
	annotTag string // v1.0 -> main[60]
}

var (
	realisticOnce sync.Once
	realisticRepo *realistic
	realisticErr  any
)

// sizes of the large text files: just above go-git's former streaming
// threshold, 1 MiB and 4 MiB; each has variants that git stores as
// chains of deltas.
var bigSizes = []struct {
	name  string
	lines int
}{{"70k", 1400}, {"1m", 21000}, {"4m", 84000}}

func getRealistic(t *testing.T) *realistic {
	t.Helper()
	realisticOnce.Do(func() {
		defer func() { realisticErr = recover() }()
		realisticRepo = buildRealistic(t)
	})
	if realisticErr != nil {
		t.Fatalf("building the repository: %v", realisticErr)
	}
	require.NotNil(t, realisticRepo, "building the repository failed in an earlier test")
	return realisticRepo
}

// buildRealistic makes app.git: 120 commits on main with
//   - large text files (70 KiB to 4 MiB) whose variants are block-shuffled
//     copies of each other, rewritten three times in the history, and the
//     pair base.txt/moved.txt of go-git issue #2378;
//   - 200 small source files, a few changed in every commit;
//   - executables; symlinks relative, absolute, dangling and to a
//     directory; names Windows reserves or that carry tabs, newlines,
//     backslashes, colons, trailing dots and spaces; a tree 300 levels deep
//     and a 255-byte name;
//   - a submodule (gitlink vendor/lib and .gitmodules);
//
// a branch feature from main[50], a lightweight tag v0.1 at main[10], an
// annotated tag v1.0 at main[60] and refs/pull/7/head at feature; then
// repacks it as `git gc --aggressive` would (window 250, depth 50).
func buildRealistic(t *testing.T) *realistic {
	dir, err := os.MkdirTemp("", "gitinit-conformance-")
	require.NoError(t, err)
	conformanceDir = dir
	r := &realistic{root: dir, bare: filepath.Join(dir, "app.git")}

	// The submodule.
	var lib gittest.FastImport
	var libHead string
	for i := 0; i < 3; i++ {
		libHead = lib.Commit("refs/heads/main", "", fmt.Sprintf("lib %d", i), []gittest.FileOp{
			{Path: "lib.go", Mode: "100644", Ref: lib.Blob(fmt.Appendf(nil, "package lib\n\nconst V = %d\n", i))},
		})
	}
	libMarks := lib.Import(t, filepath.Join(dir, "lib.git"))
	r.lib = libMarks[libHead]

	g := gittest.NewTextGen(42)
	var fi gittest.FastImport
	bases := map[string][]string{}
	for _, s := range bigSizes {
		bases[s.name] = g.Lines(s.lines, "big"+s.name)
	}
	bigOps := func(round int) []gittest.FileOp {
		var ops []gittest.FileOp
		for _, s := range bigSizes {
			base := bases[s.name]
			if round > 0 {
				base = g.Shuffle(base, 250, 40)
				bases[s.name] = base
			}
			ops = append(ops, gittest.FileOp{Path: "big/" + s.name + "-a.txt", Mode: "100644", Ref: fi.Blob(gittest.Join(base))})
			// Each variant reshuffles the previous one, with a few edits.
			v := base
			for i, block := range []int{100, 37, 500} {
				v = g.Shuffle(v, block, 200)
				ops = append(ops, gittest.FileOp{Path: fmt.Sprintf("big/%s-%c.txt", s.name, 'b'+i), Mode: "100644", Ref: fi.Blob(gittest.Join(v))})
			}
		}
		return ops
	}

	// The commit content that only the first commit adds.
	var first []gittest.FileOp
	add := func(path, mode string, data []byte) {
		first = append(first, gittest.FileOp{Path: path, Mode: mode, Ref: fi.Blob(data)})
	}
	add("README.md", "100644", []byte("# app\n"))
	lines := g.Lines(6000, "l")
	moved := append(append(append([]string{}, lines[1000:1100]...), lines[0:100]...), lines[1500:]...)
	add("big/base.txt", "100644", gittest.Join(lines))
	add("big/moved.txt", "100644", gittest.Join(moved))
	add("bin/run.sh", "100755", []byte("#!/bin/sh\necho run\n"))
	add("tools/deploy", "100755", []byte("#!/bin/sh\necho deploy\n"))
	add("links/readme", "120000", []byte("../README.md"))
	add("links/etc", "120000", []byte("/etc"))
	add("links/abs-file", "120000", []byte("/etc/hostname"))
	add("links/dangling", "120000", []byte("../no/such/file"))
	add("links/src", "120000", []byte("../src"))
	add("links/self-dir", "120000", []byte("."))
	for _, n := range []string{"aux.c", "con.txt", "NUL", "COM1", "prn.md", "lpt9.h", "tab\there", "new\nline", "back\\slash", "colon:name", "trailing.", "trailing ", "ünïcödé.txt", "a<b>c|d?e*f", "\"quoted\""} {
		add("win/"+n, "100644", []byte(n+"\n"))
	}
	add(strings.Repeat("d/", 300)+"leaf.txt", "100644", []byte("deep\n"))
	add("long/"+strings.Repeat("n", 255), "100644", []byte("long name\n"))
	add(".gitmodules", "100644", []byte("[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n"))
	first = append(first, gittest.FileOp{Path: "vendor/lib", Mode: "160000", Ref: r.lib})
	src := make([][]string, 200)
	for i := range src {
		src[i] = g.Lines(30, fmt.Sprintf("src%03d", i))
		add(fmt.Sprintf("src/pkg%02d/file%03d.go", i%20, i), "100644", gittest.Join(src[i]))
	}

	var marks []string
	for c := 0; c < 120; c++ {
		var ops []gittest.FileOp
		if c == 0 {
			ops = append(first, bigOps(0)...)
		} else {
			for k := 0; k < 3; k++ {
				i := (c*7 + k*13) % len(src)
				src[i] = g.Shuffle(src[i], 5, 10)
				ops = append(ops, gittest.FileOp{Path: fmt.Sprintf("src/pkg%02d/file%03d.go", i%20, i), Mode: "100644", Ref: fi.Blob(gittest.Join(src[i]))})
			}
			if c%40 == 0 {
				ops = append(ops, bigOps(c/40)...)
			}
		}
		ops = append(ops, gittest.FileOp{Path: "HISTORY", Mode: "100644", Ref: fi.Blob(fmt.Appendf(nil, "commit %d\n", c))})
		marks = append(marks, fi.Commit("refs/heads/main", "", fmt.Sprintf("commit %d", c), ops))
	}
	featureMark := marks[50]
	for c := 0; c < 3; c++ {
		featureMark = fi.Commit("refs/heads/feature", featureMark, fmt.Sprintf("feature %d", c), []gittest.FileOp{
			{Path: "feature.txt", Mode: "100644", Ref: fi.Blob(fmt.Appendf(nil, "feature %d\n", c))},
			{Path: "links/etc", Delete: true},
		})
	}
	fi.Reset("refs/tags/v0.1", marks[10])
	fi.AnnotatedTag("v1.0", marks[60], "release 1.0")
	fi.Reset("refs/pull/7/head", featureMark)
	m := fi.Import(t, r.bare)
	for _, mk := range marks {
		r.main = append(r.main, m[mk])
	}
	r.feature = m[featureMark]
	r.lightTag, r.annotTag = "v0.1", "v1.0"
	gittest.Git(t, r.bare, "repack", "-a", "-d", "-f", "-q", "--depth=50", "--window=250")
	return r
}

var conformanceDir string

// TestRealisticRepositoryIsDeltified makes sure the suite exercises what
// broke before: large blobs stored as deltas, in chains.
func TestRealisticRepositoryIsDeltified(t *testing.T) {
	r := getRealistic(t)
	// The large blobs of the commits the conformance cases check out.
	bySHA := map[string]string{}
	for _, c := range []string{r.main[len(r.main)-1], r.main[60], r.main[30], r.main[10]} {
		for p, e := range lsTree(t, r.bare, c) {
			bySHA[e.sha] = p
		}
	}
	deep := map[string]int{}
	for _, d := range gittest.PackDeltas(t, r.bare) {
		if p, ok := bySHA[d.SHA]; ok && strings.HasPrefix(p, "big/") {
			deep[p] = d.Depth
		}
	}
	t.Logf("large blobs stored as deltas (path: chain depth): %v", deep)
	for _, s := range bigSizes {
		n := 0
		for p := range deep {
			if strings.HasPrefix(p, "big/"+s.name+"-") {
				n++
			}
		}
		assert.GreaterOrEqual(t, n, 2, "at least two %s files are deltas", s.name)
	}
	maxDepth := 0
	for _, d := range deep {
		maxDepth = max(maxDepth, d)
	}
	assert.GreaterOrEqual(t, maxDepth, 2, "some delta chains are longer than one")
	_, movedIsDelta := deep["big/moved.txt"]
	_, baseIsDelta := deep["big/base.txt"]
	assert.True(t, movedIsDelta || baseIsDelta, "base.txt or moved.txt is a delta of the other")
}

func TestConformance(t *testing.T) {
	r := getRealistic(t)
	plain := gittest.NewHTTPServer(t, r.root, gittest.HTTPOptions{})
	allowSHA := gittest.NewHTTPServer(t, r.root, gittest.HTTPOptions{AllowReachableSHA1: true})
	sshSrv := gittest.NewSSHServer(t, r.root, gittest.SSHOptions{})
	tip := r.main[len(r.main)-1]
	cases := []struct {
		name   string
		url    string
		ref    string
		depth  int
		path   string
		want   string
		ssh    bool
		commit int // expected number of commits; 0: not checked
		// maxCommits bounds the number of commits.
		maxCommits int
		// submodules checks out vendor/lib.
		submodules bool
	}{
		{name: "HEAD depth 1", url: plain.URL, depth: 1, want: tip, commit: 1},
		{name: "HEAD full history", url: plain.URL, depth: 0, want: tip, commit: 120},
		{name: "branch depth 1 over SSH", url: "ssh", ssh: true, ref: "feature", depth: 1, want: r.feature, commit: 1},
		{name: "annotated tag depth 1", url: plain.URL, ref: r.annotTag, depth: 1, want: r.main[60], commit: 1},
		{name: "lightweight tag full", url: plain.URL, ref: r.lightTag, depth: 0, want: r.main[10], commit: 11},
		{name: "SHA at tip", url: plain.URL, ref: tip, depth: 1, want: tip, commit: 1},
		{name: "SHA off tip, server allows it", url: allowSHA.URL, ref: r.main[90], depth: 1, want: r.main[90], commit: 1},
		// Found by deepening every branch and tag to 100 commits, not by
		// fetching all history.
		{name: "SHA off tip, server refuses it", url: plain.URL, ref: r.main[30], depth: 1, want: r.main[30], maxCommits: 30},
		{name: "pull request ref", url: plain.URL, ref: "refs/pull/7/head", depth: 2, want: r.feature, commit: 2},
		{name: "subdirectory path", url: plain.URL, depth: 1, path: "src/pkg03", want: tip},
		{name: "path through a symlink", url: plain.URL, depth: 1, path: "links/src/pkg04", want: tip},
		{name: "submodules depth 1", url: plain.URL, depth: 1, want: tip, commit: 1, submodules: true},
		{name: "submodules full over SSH", url: "ssh", ssh: true, depth: 0, want: tip, commit: 120, submodules: true},
		{name: "path into a checked-out submodule", url: allowSHA.URL, ref: r.main[90], depth: 1, path: "vendor/lib/lib.go", want: r.main[90], submodules: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			url := tc.url + "/app.git"
			if tc.ssh {
				url = "ssh://git@" + sshSrv.Addr + "/app.git"
			}
			p := h.plan(url, tc.ref, tc.depth)
			p.Path = tc.path
			p.Submodules = tc.submodules
			if tc.ssh {
				p.CredentialsDir = h.secret(map[string]string{"ssh-privatekey": string(sshSrv.ClientKeyPEM), "known_hosts": sshSrv.KnownHostsLine()})
			}
			res, err := h.run(p)
			require.NoError(t, err, h.log.String())
			assert.Equal(t, tc.want, res.Commit)
			assertMatchesCommit(t, r.bare, p.Dest, tc.want)
			if tc.commit > 0 {
				assert.Equal(t, tc.commit, commitCount(t, p.Dest))
			}
			if tc.maxCommits > 0 {
				assert.LessOrEqual(t, commitCount(t, p.Dest), tc.maxCommits)
				assert.Contains(t, h.log.String(), "found commit "+tc.want+" within 100 commits of a branch or tag")
			}
			if !tc.submodules {
				assert.Contains(t, h.log.String(), "submodule vendor/lib (commit "+r.lib+") is not checked out", "the left-out submodule is reported")
				assert.Equal(t, []string{"vendor/lib"}, res.SubmodulesLeftOut)
				return
			}
			assert.Empty(t, res.SubmodulesLeftOut)
			sub := filepath.Join(p.Dest, "vendor", "lib")
			assertMatchesCommit(t, filepath.Join(r.root, "lib.git"), sub, r.lib)
			if tc.commit > 0 {
				assert.Equal(t, min(tc.commit, 3), commitCount(t, sub), "the submodule has the same depth")
			}
			assertGroupShared(t, p.Dest)
		})
	}
}

func TestPathIntoSubmoduleLeftOut(t *testing.T) {
	r := getRealistic(t)
	srv := gittest.NewHTTPServer(t, r.root, gittest.HTTPOptions{})
	for _, path := range []string{"vendor/lib", "vendor/lib/lib.go"} {
		h := newHarness(t)
		p := h.plan(srv.URL+"/app.git", "main", 1)
		p.Path = path
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("path %q in repository %s/app.git at main (commit %s) lies in submodule vendor/lib, which is not checked out: set the Git context's submodules to true", path, srv.URL, r.main[len(r.main)-1]))
	}
}

// TestPathRulesMatchTheCLI checks names one by one against the git CLI:
// git-init checks out what the CLI checks out, and refuses, naming the
// path, what the CLI refuses.
func TestPathRulesMatchTheCLI(t *testing.T) {
	root := t.TempDir()
	bare := filepath.Join(root, "names.git")
	gittest.Git(t, root, "init", "-q", "--bare", "-b", "main", bare)
	srv := gittest.NewHTTPServer(t, root, gittest.HTTPOptions{})
	blob := hashObject(t, bare, "blob", []byte("x\n"))
	link := hashObject(t, bare, "blob", []byte("README.md"))
	readme := hashObject(t, bare, "blob", []byte("# names\n"))
	type entry struct{ mode, name, sha string }
	tree := func(es ...entry) string {
		sort.Slice(es, func(i, j int) bool { return treeSortKey(es[i].mode, es[i].name) < treeSortKey(es[j].mode, es[j].name) })
		var b bytes.Buffer
		for _, e := range es {
			raw, err := hex.DecodeString(e.sha)
			require.NoError(t, err)
			fmt.Fprintf(&b, "%s %s\x00", e.mode, e.name)
			b.Write(raw)
		}
		return hashObject(t, bare, "tree", b.Bytes())
	}
	names := []string{
		".git", ".GIT", ".Git", ".git.", ".git ", ".git. . .", "git~1", "GIT~1", ".git::$INDEX_ALLOCATION", "a\\.git",
		".git\\x", "..", ".", ".gitx", "x.git", "git~2", "...", ".gitmodules", "gitmod~1",
		"aux.c", "con.txt", "NUL", "COM1", "tab\there", "new\nline", "back\\slash", "colon:name", "trailing.", "trailing ",
	}
	type variant struct {
		label string
		tree  string
	}
	var variants []variant
	for _, n := range names {
		variants = append(variants, variant{fmt.Sprintf("file %q", n), tree(entry{"100644", "README.md", readme}, entry{"100644", n, blob})})
		sub := tree(entry{"100644", "config", blob})
		variants = append(variants, variant{fmt.Sprintf("directory %q", n), tree(entry{"100644", "README.md", readme}, entry{"40000", n, sub})})
	}
	for _, n := range []string{".gitmodules", ".GITMODULES", ".gitmodules.", ".gitmodules ", "gitmod~1", "GI7EBA~1", "gitmodules", "x.gitmodules"} {
		variants = append(variants, variant{fmt.Sprintf("symlink %q", n), tree(entry{"100644", "README.md", readme}, entry{"120000", n, link})})
	}
	// Modes older tools wrote: git treats any 100xxx as a file.
	for _, mode := range []string{"100664", "100600", "100700"} {
		variants = append(variants, variant{"mode " + mode, tree(entry{"100644", "README.md", readme}, entry{mode, "file", blob})})
	}
	nested := tree(entry{"40000", "hooks", tree(entry{"100755", "post-checkout", blob})})
	variants = append(variants, variant{"nested .git/hooks", tree(entry{"100644", "README.md", readme}, entry{"40000", "sub", tree(entry{"40000", ".git", nested})})})

	for i, v := range variants {
		t.Run(v.label, func(t *testing.T) {
			commit := commitTree(t, bare, v.tree, fmt.Sprintf("names %d", i))
			gittest.Git(t, bare, "update-ref", "refs/heads/main", commit)
			url := srv.URL + "/names.git"
			cliDest := filepath.Join(t.TempDir(), "cli")
			_, cliErr := gittest.RunGit(root, "clone", "-q", url, cliDest)
			h := newHarness(t)
			p := h.plan(url, "main", 1)
			_, err := h.run(p)
			if cliErr == nil {
				require.NoError(t, err, "the git CLI checks this out")
				assertMatchesCommit(t, bare, p.Dest, commit)
				return
			}
			t.Logf("git CLI: %v", strings.TrimSpace(cliErr.Error()))
			require.Error(t, err, "the git CLI refuses this; git-init must too")
			assert.Contains(t, err.Error(), "the git CLI refuses to check it out too")
			assert.Contains(t, err.Error(), "commit "+commit)
			assert.NotContains(t, h.log.String(), "retrying")
			entries, _ := os.ReadDir(p.Dest)
			assert.Empty(t, entries, "a refused checkout leaves nothing behind")
		})
	}
}

// treeSortKey orders tree entries as git does: directories as if their
// name ended in "/".
func treeSortKey(mode, name string) string {
	if mode == "40000" {
		return name + "/"
	}
	return name
}

func hashObject(t *testing.T, bare, typ string, data []byte) string {
	t.Helper()
	cmd := exec.Command("git", "hash-object", "-t", typ, "--literally", "-w", "--stdin")
	cmd.Dir = bare
	cmd.Env = gittest.Env(bare)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func commitTree(t *testing.T, bare, tree, msg string) string {
	t.Helper()
	return gittest.Git(t, bare, "commit-tree", tree, "-m", msg)
}

// TestCorruptDecodeIsRefused runs the checkout over go-git's streaming
// decoder of large deltas (LargeObjectThreshold > 0, go-git issue #2378),
// which returns wrong bytes for big/moved.txt: the hash check turns that
// into an error naming the file instead of a silently wrong checkout.
func TestCorruptDecodeIsRefused(t *testing.T) {
	r := getRealistic(t)
	st := filesystem.NewStorageWithOptions(osfs.New(r.bare), cache.NewObjectLRUDefault(), filesystem.Options{LargeObjectThreshold: 64 << 10})
	commit := plumbing.NewHash(r.main[len(r.main)-1])
	c, err := object.GetCommit(st, commit)
	require.NoError(t, err)
	dest, err := os.OpenRoot(t.TempDir())
	require.NoError(t, err)
	defer dest.Close()
	w := &treeWriter{ctx: context.Background(), objects: st, commit: commit}
	err = w.writeTree(dest, c.TreeHash)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `file "big/moved.txt" of commit `+commit.String()+" decoded to 162268 bytes with object name")
	assert.Contains(t, err.Error(), "refusing a corrupt checkout")
}

// TestFileTooLargeForMemoryLimit: a file that cannot be decoded within the
// container's memory limit fails with a message naming it and the limit,
// at once, instead of the kernel's OOM kill.
func TestFileTooLargeForMemoryLimit(t *testing.T) {
	r := getRealistic(t)
	srv := gittest.NewHTTPServer(t, r.root, gittest.HTTPOptions{})
	h := newHarness(t)
	h.opts.MemoryLimit = memoryOverhead + 3*(3<<20) // decodes files up to 3 MiB
	p := h.plan(srv.URL+"/app.git", "", 1)
	_, err := h.run(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `file "big/4m-a.txt" of commit `+r.main[len(r.main)-1]+" is 3.")
	assert.Contains(t, err.Error(), "but git-init's memory limit is 137.0 MiB: raise the memory limit of the git-init container")
	assert.NotContains(t, h.log.String(), "retrying")
	entries, _ := os.ReadDir(p.Dest)
	assert.Empty(t, entries)
}

// TestCheckoutHonoursCancellation: a cancelled context (SIGTERM in the
// binary) stops the checkout before the next entry.
func TestCheckoutHonoursCancellation(t *testing.T) {
	r := getRealistic(t)
	st := filesystem.NewStorageWithOptions(osfs.New(r.bare), cache.NewObjectLRUDefault(), filesystem.Options{})
	commit := plumbing.NewHash(r.main[len(r.main)-1])
	c, err := object.GetCommit(st, commit)
	require.NoError(t, err)
	dir := t.TempDir()
	dest, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer dest.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := &treeWriter{ctx: ctx, objects: st, commit: commit}
	err = w.writeTree(dest, c.TreeHash)
	require.ErrorIs(t, err, context.Canceled)
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries, "nothing written after the cancellation")
}

// TestDeepTree: a tree 2,000 levels deep (paths of 4,000 bytes, just
// under Linux's PATH_MAX that the git CLI is bound by) checks out
// exactly.
func TestDeepTree(t *testing.T) {
	root := t.TempDir()
	var fi gittest.FastImport
	deep := strings.Repeat("d/", 2000)
	mark := fi.Commit("refs/heads/main", "", "deep", []gittest.FileOp{
		{Path: deep + "leaf.txt", Mode: "100644", Ref: fi.Blob([]byte("leaf\n"))},
		{Path: deep[:2000] + "mid.txt", Mode: "100755", Ref: fi.Blob([]byte("mid\n"))},
		{Path: deep + "link", Mode: "120000", Ref: fi.Blob([]byte("leaf.txt"))},
	})
	marks := fi.Import(t, filepath.Join(root, "deep.git"))
	srv := gittest.NewHTTPServer(t, root, gittest.HTTPOptions{})
	h := newHarness(t)
	p := h.plan(srv.URL+"/deep.git", "", 1)
	res, err := h.run(p)
	require.NoError(t, err, h.log.String())
	assert.Equal(t, marks[mark], res.Commit)
	assertMatchesCommit(t, filepath.Join(root, "deep.git"), p.Dest, marks[mark])
}
