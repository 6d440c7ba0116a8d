// Command treecheck fails when the Git index holds a build output: an
// executable binary (ELF, Mach-O, PE) or any file larger than 1 MiB, unless
// the file is on the allow-list below. tools/test.sh runs it, so CI refuses
// a commit that adds one.
//
//	go run ./tools/treecheck [repository directory]
//
// It reads the blobs the index records (what the next commit holds), not the
// working tree, with one `git cat-file --batch` stream.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// MaxSize is the largest file the tree may hold without being allow-listed.
const MaxSize = 1 << 20

// allowed lists the files that may break the rules, each with the reason.
// Add a file here only when it is a source or a test fixture that cannot be
// smaller or text; never a build output.
var allowed = map[string]string{
	// Argo Events' published JSON schema (1.3 MiB of text), the reference
	// the Sensor manifests are validated against; kept byte for byte as
	// published so that a schema update is a plain replacement.
	"e2e/testdata/argo-events-schema.json": "upstream schema, text",
}

// Finding is one tracked file that breaks the rules.
type Finding struct {
	Path   string
	Reason string
}

func (f Finding) String() string { return f.Path + ": " + f.Reason }

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	os.Exit(run(dir, os.Stdout, os.Stderr))
}

func run(dir string, stdout, stderr io.Writer) int {
	findings, err := Check(dir, allowed)
	if err != nil {
		fmt.Fprintln(stderr, "treecheck:", err)
		return 2
	}
	if len(findings) == 0 {
		fmt.Fprintln(stdout, "No tracked file is a binary or larger than 1 MiB.")
		return 0
	}
	for _, f := range findings {
		fmt.Fprintln(stderr, f)
	}
	fmt.Fprintf(stderr, "%d tracked file(s) are build outputs or too large: remove them with `git rm --cached FILE` and ignore them in .gitignore, or, for a fixture that must stay, add it with its reason to the allow-list in tools/treecheck/main.go.\n", len(findings))
	return 1
}

// entry is a regular file of the index.
type entry struct {
	object string
	path   string
}

// Check lists the files of dir's Git index that are executable binaries or
// larger than MaxSize, skipping the paths in allow. Symbolic links and
// submodules are not files of this tree and are not checked.
func Check(dir string, allow map[string]string) ([]Finding, error) {
	out, err := git(dir, nil, "ls-files", "-z", "--stage")
	if err != nil {
		return nil, err
	}
	var entries []entry
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		// "<mode> <object> <stage>\t<path>"
		meta, path, ok := bytes.Cut(rec, []byte{'\t'})
		fields := strings.Fields(string(meta))
		if !ok || len(fields) != 3 {
			return nil, fmt.Errorf("unexpected git ls-files record %q", rec)
		}
		if fields[0] != "100644" && fields[0] != "100755" {
			continue
		}
		if _, ok := allow[string(path)]; ok {
			continue
		}
		entries = append(entries, entry{object: fields[1], path: string(path)})
	}
	if len(entries) == 0 {
		return nil, nil
	}
	var req bytes.Buffer
	for _, e := range entries {
		req.WriteString(e.object)
		req.WriteByte('\n')
	}
	cmd := exec.Command("git", "-C", dir, "cat-file", "--batch")
	cmd.Stdin = &req
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git cat-file: %w", err)
	}
	findings, readErr := scan(bufio.NewReaderSize(pipe, 64<<10), entries)
	if readErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if readErr != nil {
		return nil, readErr
	}
	if waitErr != nil {
		return nil, fmt.Errorf("git cat-file: %w: %s", waitErr, strings.TrimSpace(stderr.String()))
	}
	sort.Slice(findings, func(i, j int) bool { return findings[i].Path < findings[j].Path })
	return findings, nil
}

// scan reads one `git cat-file --batch` answer per entry, keeping only each
// blob's first bytes.
func scan(r *bufio.Reader, entries []entry) ([]Finding, error) {
	var findings []Finding
	head := make([]byte, headLen)
	for _, e := range entries {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("git cat-file: reading the header for %s: %w", e.path, err)
		}
		// "<object> blob <size>"
		fields := strings.Fields(line)
		if len(fields) != 3 || fields[1] != "blob" {
			return nil, fmt.Errorf("git cat-file: unexpected header %q for %s", strings.TrimSpace(line), e.path)
		}
		size, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git cat-file: size in %q: %w", strings.TrimSpace(line), err)
		}
		n := min(size, headLen)
		if _, err := io.ReadFull(r, head[:n]); err != nil {
			return nil, fmt.Errorf("git cat-file: reading %s: %w", e.path, err)
		}
		// The rest of the blob and the newline that ends it.
		if _, err := io.CopyN(io.Discard, r, size-n+1); err != nil {
			return nil, fmt.Errorf("git cat-file: reading %s: %w", e.path, err)
		}
		var reasons []string
		if kind := executableKind(head[:n]); kind != "" {
			reasons = append(reasons, "an executable binary ("+kind+")")
		}
		if size > MaxSize {
			reasons = append(reasons, fmt.Sprintf("%.1f MiB, larger than the 1 MiB limit", float64(size)/(1<<20)))
		}
		if len(reasons) > 0 {
			findings = append(findings, Finding{Path: e.path, Reason: strings.Join(reasons, "; ")})
		}
	}
	return findings, nil
}

// headLen is how much of a file executableKind looks at: enough for a PE
// file's DOS header and the "PE\0\0" signature it points to in every
// linker's output.
const headLen = 4096

// executableKind names the executable format whose header head starts with,
// or returns "".
func executableKind(head []byte) string {
	if len(head) < 4 {
		return ""
	}
	switch binary.BigEndian.Uint32(head) {
	case 0x7f454c46: // "\x7fELF"
		return "ELF"
	case 0xfeedface, 0xcefaedfe:
		return "Mach-O 32-bit"
	case 0xfeedfacf, 0xcffaedfe:
		return "Mach-O 64-bit"
	case 0xcafebabe:
		// A Mach-O universal binary, or a compiled Java class: a build
		// output either way.
		return "Mach-O universal binary or Java class"
	}
	// PE: a DOS header ("MZ") whose e_lfanew field, at 0x3c, points to the
	// "PE\0\0" signature. Checking the signature keeps a text file that
	// happens to start with "MZ" out.
	if head[0] == 'M' && head[1] == 'Z' && len(head) >= 0x40 {
		off := int(binary.LittleEndian.Uint32(head[0x3c:]))
		if off >= 0x40 && off+4 <= len(head) && bytes.Equal(head[off:off+4], []byte("PE\x00\x00")) {
			return "PE"
		}
	}
	return ""
}

func git(dir string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("git %s in %s: %s", args[0], dir, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}
