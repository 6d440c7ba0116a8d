package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repo makes a Git repository in a temporary directory holding files, with
// every file added to the index and committed.
func repo(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q", "-b", "main")
	for name, data := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	gitRun(t, dir, "add", "-A")
	gitRun(t, dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "files")
	return dir
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
}

// sourceTree is what a clean checkout of a Go repository holds: sources,
// docs, a shell script, a small checked-in fixture with binary bytes.
func sourceTree() map[string][]byte {
	return map[string][]byte{
		"go.mod":                  []byte("module example.com/x\n\ngo 1.26\n"),
		"main.go":                 []byte("package main\n\nfunc main() {}\n"),
		"README.md":               []byte("# x\n\nMZ is how DOS executables start; this file is text.\n"),
		"tools/test.sh":           []byte("#!/usr/bin/env bash\nset -euo pipefail\ngo test ./...\n"),
		"testdata/key.bin":        {0x00, 0x01, 0xff, 0xfe, 0x10},
		"docs/with space/ü.md":    []byte(strings.Repeat("a line of prose\n", 1000)),
		"testdata/mz-prefix.text": append([]byte("MZ"), bytes.Repeat([]byte("text that is not a PE file\n"), 10)...),
	}
}

func TestCleanTreePasses(t *testing.T) {
	dir := repo(t, sourceTree())
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run(dir, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "No tracked file")
}

func TestCommittedELFFailsNamingTheFile(t *testing.T) {
	// The test binary itself: a real ELF executable as `go build` writes it.
	self, err := os.Executable()
	require.NoError(t, err)
	elf, err := os.ReadFile(self)
	require.NoError(t, err)
	require.Equal(t, "\x7fELF", string(elf[:4]), "this test runs where Go writes ELF binaries")

	files := sourceTree()
	files["quickstart"] = elf
	dir := repo(t, files)
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 1, run(dir, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "quickstart: an executable binary (ELF)")
	assert.Contains(t, stderr.String(), "git rm --cached")
	// Only the binary is named.
	assert.Equal(t, 2, strings.Count(stderr.String(), "\n"), stderr.String())
}

func TestStagedBinaryIsFoundBeforeItIsCommitted(t *testing.T) {
	dir := repo(t, sourceTree())
	self, err := os.Executable()
	require.NoError(t, err)
	elf, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "operator"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "operator", "controller"), elf, 0o755))
	gitRun(t, dir, "add", "operator/controller")

	findings, err := Check(dir, nil)
	require.NoError(t, err)
	require.Len(t, findings, 1)
	assert.Equal(t, "operator/controller", findings[0].Path)
}

func TestExecutableFormats(t *testing.T) {
	pe := make([]byte, 0x200)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[0x3c:], 0x80)
	copy(pe[0x80:], "PE\x00\x00")
	machO := make([]byte, 64)
	binary.LittleEndian.PutUint32(machO, 0xfeedfacf) // as written on amd64/arm64
	fat := make([]byte, 64)
	binary.BigEndian.PutUint32(fat, 0xcafebabe)

	files := sourceTree()
	files["bin/tool.exe"] = pe
	files["bin/tool-darwin"] = machO
	files["bin/tool-universal"] = fat
	dir := repo(t, files)
	findings, err := Check(dir, nil)
	require.NoError(t, err)
	assert.Equal(t, []Finding{
		{Path: "bin/tool-darwin", Reason: "an executable binary (Mach-O 64-bit)"},
		{Path: "bin/tool-universal", Reason: "an executable binary (Mach-O universal binary or Java class)"},
		{Path: "bin/tool.exe", Reason: "an executable binary (PE)"},
	}, findings)
}

func TestLargeFilesFailUnlessAllowed(t *testing.T) {
	files := sourceTree()
	big := bytes.Repeat([]byte(`{"a":"json schema line"}`+"\n"), (MaxSize/25)+100)
	require.Greater(t, len(big), MaxSize)
	files["e2e/testdata/schema.json"] = big
	files["e2e/testdata/exactly-1MiB.txt"] = bytes.Repeat([]byte("x"), MaxSize)
	dir := repo(t, files)

	findings, err := Check(dir, nil)
	require.NoError(t, err)
	assert.Equal(t, []Finding{{Path: "e2e/testdata/schema.json", Reason: "1.0 MiB, larger than the 1 MiB limit"}}, findings)

	findings, err = Check(dir, map[string]string{"e2e/testdata/schema.json": "fixture"})
	require.NoError(t, err)
	assert.Empty(t, findings)
}

func TestSymlinksAreNotFiles(t *testing.T) {
	dir := repo(t, sourceTree())
	self, err := os.Executable()
	require.NoError(t, err)
	require.NoError(t, os.Symlink(self, filepath.Join(dir, "link")))
	gitRun(t, dir, "add", "link")
	findings, err := Check(dir, nil)
	require.NoError(t, err)
	assert.Empty(t, findings)
}

func TestNotARepository(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run(t.TempDir(), &stdout, &stderr))
	assert.Contains(t, stderr.String(), "not a git repository")
}
