package contextinit

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

type harness struct {
	t                  *testing.T
	workspace, outside string
	sources            string
	log                bytes.Buffer
	opts               Options
}

func newHarness(t *testing.T) *harness {
	base := t.TempDir()
	h := &harness{
		t:         t,
		workspace: filepath.Join(base, "workspace"),
		outside:   filepath.Join(base, "outside"),
		sources:   filepath.Join(base, "sources"),
	}
	for _, d := range []string{h.workspace, h.outside, h.sources} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	h.opts = Options{Roots: []string{h.workspace, h.outside}, Log: &h.log}
	return h
}

func (h *harness) apply(entries ...contract.FileEntry) (Stats, error) {
	return Apply(&contract.ContextPlan{Version: contract.Version, Entries: entries}, h.opts)
}

func ptr(s string) *string { return &s }

func assertFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, content, string(b))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, mode, st.Mode().Perm(), path)
}

// configMapVolume lays out a directory the way the kubelet mounts a
// ConfigMap: the data in a timestamped directory, "..data" pointing to it
// and every top-level key a symlink through "..data".
func configMapVolume(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	data := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	for name, content := range files {
		p := filepath.Join(data, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	require.NoError(t, os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")))
	entries, err := os.ReadDir(data)
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, os.Symlink(filepath.Join("..data", e.Name()), filepath.Join(dir, e.Name())))
	}
}

func TestContentModes(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		mode int32
		want fs.FileMode
	}{{0, 0o664}, {0o644, 0o664}, {0o600, 0o660}, {0o755, 0o775}, {0o400, 0o440}, {0o4755, 0o775}}
	var entries []contract.FileEntry
	for i, c := range cases {
		entries = append(entries, contract.FileEntry{Path: filepath.Join(h.workspace, "modes", string(rune('a'+i))), Mode: c.mode, Content: ptr("x")})
	}
	stats, err := h.apply(entries...)
	require.NoError(t, err)
	assert.Equal(t, len(cases), stats.Files)
	for i, c := range cases {
		assertFile(t, entries[i].Path, "x", c.want)
	}
	st, err := os.Stat(filepath.Join(h.workspace, "modes"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o775), st.Mode().Perm(), "created directories are group-writable")
}

func TestNestedUnicodeAndSpaces(t *testing.T) {
	h := newHarness(t)
	p := filepath.Join(h.workspace, "a b", "ünï cödé", "日本語 ファイル.md")
	o := filepath.Join(h.outside, "deep", "er", "task.md")
	_, err := h.apply(
		contract.FileEntry{Path: p, Content: ptr("héllo\n")},
		contract.FileEntry{Path: o, Content: ptr("")},
	)
	require.NoError(t, err)
	assertFile(t, p, "héllo\n", 0o664)
	assertFile(t, o, "", 0o664)
	for _, d := range []string{filepath.Join(h.workspace, "a b"), filepath.Join(h.workspace, "a b", "ünï cödé"), filepath.Join(h.outside, "deep", "er")} {
		st, err := os.Stat(d)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o775), st.Mode().Perm(), d)
	}
}

func TestConfigMapVolumeSource(t *testing.T) {
	h := newHarness(t)
	src := filepath.Join(h.sources, "guide")
	require.NoError(t, os.MkdirAll(src, 0o755))
	configMapVolume(t, src, map[string]string{
		"guide.md":        "# guide\n",
		"with space.txt":  "space\n",
		"sub/nested.yaml": "a: 1\n",
	})
	dest := filepath.Join(h.workspace, ".config", "guides")
	stats, err := h.apply(
		contract.FileEntry{Path: dest, Source: src, Mode: 0o600, Description: `ConfigMap "guide"`},
		contract.FileEntry{Path: filepath.Join(h.workspace, "GUIDE.md"), Source: filepath.Join(src, "guide.md"), Description: `ConfigMap "guide" key "guide.md"`},
	)
	require.NoError(t, err)
	assert.Equal(t, 4, stats.Files)
	assertFile(t, filepath.Join(dest, "guide.md"), "# guide\n", 0o660)
	assertFile(t, filepath.Join(dest, "with space.txt"), "space\n", 0o660)
	assertFile(t, filepath.Join(dest, "sub", "nested.yaml"), "a: 1\n", 0o660)
	assertFile(t, filepath.Join(h.workspace, "GUIDE.md"), "# guide\n", 0o664)

	entries, err := os.ReadDir(dest)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		assert.Zero(t, e.Type()&fs.ModeSymlink, "%s copied as a symlink", e.Name())
	}
	assert.ElementsMatch(t, []string{"guide.md", "with space.txt", "sub"}, names, "the ..data machinery is not copied")
}

func TestOptionalAndMissingSources(t *testing.T) {
	h := newHarness(t)
	empty := filepath.Join(h.sources, "absent-configmap")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	stats, err := h.apply(
		contract.FileEntry{Path: filepath.Join(h.workspace, "opt.md"), Source: filepath.Join(h.sources, "nope", "key"), Optional: true},
		contract.FileEntry{Path: filepath.Join(h.workspace, "optdir"), Source: empty, Optional: true},
		contract.FileEntry{Path: filepath.Join(h.workspace, "text.md"), Content: ptr("t")},
	)
	require.NoError(t, err)
	assert.Equal(t, Stats{Files: 1, Skipped: 2}, stats)
	assert.NoFileExists(t, filepath.Join(h.workspace, "opt.md"))
	assert.NoDirExists(t, filepath.Join(h.workspace, "optdir"))
	assert.Contains(t, h.log.String(), "skipped "+filepath.Join(h.workspace, "opt.md"))

	_, err = h.apply(contract.FileEntry{Path: filepath.Join(h.workspace, "req.md"), Source: filepath.Join(h.sources, "nope", "key"), Description: `ConfigMap "rules" key "key"`})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `ConfigMap "rules" key "key": source `+filepath.Join(h.sources, "nope", "key")+" does not exist")
}

func TestRefusesToWriteOutsideTheMounts(t *testing.T) {
	h := newHarness(t)
	elsewhere := t.TempDir()
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(h.workspace, "escape")))
	cases := []struct {
		name, path, want string
	}{
		{"other directory", filepath.Join(elsewhere, "x.md"), "is outside " + h.workspace + " and " + h.outside},
		{"dotdot", h.workspace + "/a/../../x.md", `contains ".."`},
		{"relative", "x.md", "is not absolute"},
		{"the mount itself", h.workspace, "is outside"},
		{"symlink out of the mount", filepath.Join(h.workspace, "escape", "x.md"), "a symlink on the way leads outside " + h.workspace},
		{"symlink directory out of the mount", filepath.Join(h.workspace, "escape", "sub", "x.md"), "leads outside " + h.workspace},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.apply(contract.FileEntry{Path: tc.path, Content: ptr("x"), Description: "Text context 1"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "Text context 1: ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	entries, err := os.ReadDir(elsewhere)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was written outside the mounts")
}

func TestCannotWrite(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, os.WriteFile(filepath.Join(h.workspace, "file"), []byte("x"), 0o644))
	_, err := h.apply(
		contract.FileEntry{Path: filepath.Join(h.workspace, "first.md"), Content: ptr("1")},
		contract.FileEntry{Path: filepath.Join(h.workspace, "file", "under-a-file.md"), Content: ptr("x"), Description: "Text context 2"},
		contract.FileEntry{Path: filepath.Join(h.workspace, "never.md"), Content: ptr("x")},
	)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Text context 2: cannot create directory "+filepath.Join(h.workspace, "file"))
	assert.NoFileExists(t, filepath.Join(h.workspace, "never.md"), "processing stops at the first failure")

	_, err = h.apply(contract.FileEntry{Path: filepath.Join(h.workspace, "x"), Content: ptr("a"), Source: "/etc/hostname"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exactly one of content and source")
}

func TestOverwriteFixesMode(t *testing.T) {
	h := newHarness(t)
	p := filepath.Join(h.workspace, "AGENTS.md")
	require.NoError(t, os.WriteFile(p, []byte("old content that is longer"), 0o600))
	_, err := h.apply(contract.FileEntry{Path: p, Content: ptr("new"), Mode: 0o644})
	require.NoError(t, err)
	assertFile(t, p, "new", 0o664)
}
