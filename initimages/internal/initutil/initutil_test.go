package initutil

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

func TestWriteResultIsOneBoundedLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "termination-log")
	long := "first line\nsecond\tline " + strings.Repeat("x", 10000)
	require.NoError(t, WriteResult(p, contract.Result{Error: long}))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Less(t, len(b), 4096, "the kubelet truncates termination messages at 4096 bytes")
	assert.Equal(t, 1, strings.Count(string(b), "\n"))
	var r contract.Result
	require.NoError(t, json.Unmarshal(b, &r), "the message stays valid JSON")
	assert.True(t, strings.HasPrefix(r.Error, "first line second line xxx"), r.Error)

	// A NUL from a file name is shown, not passed on; a very long
	// message keeps its end, where the reason is.
	withReason := "cannot write \"a\x00b/" + strings.Repeat("<deep>/", 2000) + "f\": file name too long"
	require.NoError(t, WriteResult(p, contract.Result{Error: withReason}))
	b, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Less(t, len(b), 4096)
	assert.NotContains(t, string(b), "\x00")
	assert.NotContains(t, string(b), `\u0000`)
	require.NoError(t, json.Unmarshal(b, &r))
	assert.True(t, strings.HasSuffix(r.Error, "file name too long"), r.Error)
	assert.Contains(t, r.Error, "a\uFFFDb/<deep>")

	// A shorter second result replaces the first entirely.
	require.NoError(t, WriteResult(p, contract.Result{Commit: "abc"}))
	b, err = os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, `{"commit":"abc"}`+"\n", string(b))
}

func TestSplitUnderRoot(t *testing.T) {
	roots := []string{"/kubeopencode/workspace", "/kubeopencode/outside"}
	cases := []struct {
		path      string
		allowRoot bool
		root, rel string
		err       string
	}{
		{path: "/kubeopencode/workspace/a/b.md", root: "/kubeopencode/workspace", rel: "a/b.md"},
		{path: "/kubeopencode/outside/o1", root: "/kubeopencode/outside", rel: "o1"},
		{path: "/kubeopencode/workspace/", allowRoot: true, root: "/kubeopencode/workspace", rel: "."},
		{path: "/kubeopencode/workspace", err: "is outside"},
		{path: "/kubeopencode/workspace-other/x", err: "is outside"},
		{path: "/kubeopencode/workspace/../outside/x", err: `contains ".."`},
		{path: "/etc/passwd", err: "is outside /kubeopencode/workspace and /kubeopencode/outside"},
		{path: "a/b", err: "is not absolute"},
	}
	for _, c := range cases {
		root, rel, err := SplitUnderRoot(c.path, roots, c.allowRoot)
		if c.err != "" {
			require.Error(t, err, c.path)
			assert.Contains(t, err.Error(), c.err)
			continue
		}
		require.NoError(t, err, c.path)
		assert.Equal(t, c.root, root)
		assert.Equal(t, c.rel, rel)
	}
}

func TestShareTree(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "f"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "b", "x"), nil, 0o755))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "a", "link")))
	require.NoError(t, ShareTree(dir))
	for p, want := range map[string]fs.FileMode{
		"a":     fs.ModeDir | fs.ModeSetgid | 0o770,
		"a/b":   fs.ModeDir | fs.ModeSetgid | 0o770,
		"a/f":   0o660,
		"a/b/x": 0o775,
	} {
		st, err := os.Lstat(filepath.Join(dir, p))
		require.NoError(t, err)
		assert.Equal(t, want, st.Mode(), p)
	}
	st, err := os.Stat("/etc/passwd")
	require.NoError(t, err)
	assert.Zero(t, st.Mode()&0o020, "symlink targets are left alone")
}
