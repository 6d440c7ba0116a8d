package gittest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// This file builds repositories shaped like real ones with git fast-import:
// text files large enough to be stored as deltas whose copy instructions
// jump backwards and forwards, long histories, symlinks of every kind,
// executables, names Windows reserves, deep trees and submodules.

// FastImport builds repositories from a git fast-import stream.
type FastImport struct {
	buf  bytes.Buffer
	mark int
	when int64
}

// Blob adds a blob and returns its mark.
func (f *FastImport) Blob(data []byte) string {
	f.mark++
	fmt.Fprintf(&f.buf, "blob\nmark :%d\ndata %d\n", f.mark, len(data))
	f.buf.Write(data)
	f.buf.WriteByte('\n')
	return ":" + strconv.Itoa(f.mark)
}

// FileOp is one change of a commit: Mode "100644", "100755", "120000" or
// "160000" with Ref a blob mark (or a commit SHA for "160000"), or
// Delete.
type FileOp struct {
	Path   string
	Mode   string
	Ref    string
	Delete bool
}

// Commit adds a commit on ref with parent from ("" for a root commit or
// the ref's current tip) and returns its mark.
func (f *FastImport) Commit(ref, from, msg string, ops []FileOp) string {
	f.mark++
	f.when += 3600
	fmt.Fprintf(&f.buf, "commit %s\nmark :%d\ncommitter Test <test@example.com> %d +0000\ndata %d\n%s\n", ref, f.mark, 1767225600+f.when, len(msg), msg)
	if from != "" {
		fmt.Fprintf(&f.buf, "from %s\n", from)
	}
	for _, op := range ops {
		if op.Delete {
			fmt.Fprintf(&f.buf, "D %s\n", quoteFastImport(op.Path))
			continue
		}
		fmt.Fprintf(&f.buf, "M %s %s %s\n", op.Mode, op.Ref, quoteFastImport(op.Path))
	}
	f.buf.WriteByte('\n')
	return ":" + strconv.Itoa(f.mark)
}

// AnnotatedTag adds an annotated tag on the commit mark.
func (f *FastImport) AnnotatedTag(name, commit, msg string) {
	fmt.Fprintf(&f.buf, "tag %s\nfrom %s\ntagger Test <test@example.com> %d +0000\ndata %d\n%s\n", name, commit, 1767225600+f.when, len(msg), msg)
}

// Reset points ref at the commit mark (a lightweight tag or a branch).
func (f *FastImport) Reset(ref, commit string) {
	fmt.Fprintf(&f.buf, "reset %s\nfrom %s\n\n", ref, commit)
}

// quoteFastImport C-quotes a path when fast-import needs it.
func quoteFastImport(p string) string {
	if !strings.ContainsAny(p, "\"\\\n\t ") && !strings.HasPrefix(p, "\"") {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Import writes the stream into a new bare repository dir and returns
// fast-import's marks as SHAs (":12" -> sha).
func (f *FastImport) Import(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	require.NoError(tb, os.MkdirAll(dir, 0o755))
	Git(tb, dir, "init", "-q", "--bare", "-b", "main")
	marks := filepath.Join(dir, "marks")
	cmd := exec.Command("git", "fast-import", "--quiet", "--export-marks="+marks)
	cmd.Dir = dir
	cmd.Env = Env(dir)
	cmd.Stdin = &f.buf
	out, err := cmd.CombinedOutput()
	require.NoError(tb, err, "git fast-import: %s", out)
	b, err := os.ReadFile(marks)
	require.NoError(tb, err)
	require.NoError(tb, os.Remove(marks))
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		m[k] = v
	}
	return m
}

// TextGen makes source-like text: unique lines, and variants of a text
// with blocks of lines moved around and a few lines edited, which git
// stores as deltas with copies from earlier and later parts of the base.
type TextGen struct{ rng *rand.Rand }

// NewTextGen returns a deterministic generator.
func NewTextGen(seed uint64) *TextGen {
	return &TextGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var words = strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega request response handler context buffer stream commit object reader writer cluster node pod volume")

// Lines returns n unique lines of roughly 50 bytes.
func (g *TextGen) Lines(n int, tag string) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("%s %06d: %s %s %s(%d)", tag, i, words[g.rng.IntN(len(words))], words[g.rng.IntN(len(words))], words[g.rng.IntN(len(words))], g.rng.IntN(100000))
	}
	return lines
}

// Shuffle returns lines with blocks of block lines reordered (so that a
// delta against the original copies backwards and forwards) and about
// one line in edits changed.
func (g *TextGen) Shuffle(lines []string, block, edits int) []string {
	var blocks [][]string
	for i := 0; i < len(lines); i += block {
		blocks = append(blocks, lines[i:min(i+block, len(lines))])
	}
	g.rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	out := make([]string, 0, len(lines))
	for _, b := range blocks {
		out = append(out, b...)
	}
	for i := range out {
		if edits > 0 && g.rng.IntN(edits) == 0 {
			out[i] = out[i] + " // edited " + strconv.Itoa(g.rng.IntN(1000))
		}
	}
	return out
}

// Join makes file content of lines.
func Join(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// Delta is one object of `git verify-pack -v` stored as a delta.
type Delta struct {
	SHA   string
	Size  int64 // size of the delta data, not of the object
	Depth int   // length of its delta chain
}

// PackDeltas lists the objects of the repository's packs that are stored
// as deltas.
func PackDeltas(tb testing.TB, bare string) []Delta {
	tb.Helper()
	packs, err := filepath.Glob(filepath.Join(bare, "objects", "pack", "*.idx"))
	require.NoError(tb, err)
	require.NotEmpty(tb, packs)
	var out []Delta
	for _, p := range packs {
		for _, line := range strings.Split(Git(tb, bare, "verify-pack", "-v", p), "\n") {
			// sha type size size-in-pack offset [depth base-sha]
			f := strings.Fields(line)
			if len(f) != 7 || len(f[0]) != 40 {
				continue
			}
			size, _ := strconv.ParseInt(f[2], 10, 64)
			depth, _ := strconv.Atoi(f[5])
			out = append(out, Delta{SHA: f[0], Size: size, Depth: depth})
		}
	}
	return out
}
