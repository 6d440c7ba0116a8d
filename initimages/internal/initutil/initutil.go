// Package initutil holds what git-init and context-init share: the
// termination message, the permission rules of the shared volumes and the
// check that a destination lies inside one of the allowed mounts.
package initutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Environment variables that override defaults. They exist so that tests
// and local runs can point the binaries at temporary directories; the
// controller does not need to set them.
const (
	EnvTerminationMessagePath = "KUBEOPENCODE_TERMINATION_MESSAGE_PATH"
	// EnvAllowedRoots is a colon-separated list of directories the binary
	// may write into, replacing the contract's mounts.
	EnvAllowedRoots = "KUBEOPENCODE_ALLOWED_ROOTS"
)

// maxMessage keeps the Result well under the kubelet's 4096-byte limit for
// termination messages, so the JSON is never cut in half.
const maxMessage = 3000

// EnvOr returns the environment variable's value, or def when it is unset or empty.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// OneLine flattens a message to a single line of bounded length. Control
// characters (a NUL from a file name, say) are shown escaped, and a message
// that is too long loses its middle rather than its end, where the reason
// usually is.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		head, tail := s[:maxMessage*2/3], s[len(s)-maxMessage/3:]
		s = strings.ToValidUTF8(head, "") + " … " + strings.ToValidUTF8(tail, "")
	}
	return s
}

// WriteResult writes r as one line of JSON to path. A missing path (a local
// run outside Kubernetes) is reported on stderr but is not itself a failure
// of the binary's work.
func WriteResult(path string, r contract.Result) error {
	r.Error = OneLine(r.Error)
	// No HTML escaping: "<" as \u003c would grow the line past the limit.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return err
	}
	data := buf.Bytes()
	// O_TRUNC without O_CREATE first: /dev/termination-log is created by the
	// kubelet and the root filesystem is read-only, so creating is only for
	// local runs and tests.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if os.IsNotExist(err) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	if err != nil {
		return fmt.Errorf("cannot write termination message %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("cannot write termination message %s: %w", path, err)
	}
	return f.Close()
}

// SetGroupUmask makes every file and directory created from now on
// group-writable: the agent container shares the pod's fsGroup but may run
// as another UID.
func SetGroupUmask() {
	syscall.Umask(0o002)
}

// GroupMode copies the owner's permission bits to the group bits.
func GroupMode(m fs.FileMode) fs.FileMode {
	return m&^0o070 | (m&0o700)>>3
}

// ShareTree walks root and gives every file and directory group bits equal
// to its owner bits; directories also get setgid so that files created by
// the agent keep the pod's fsGroup. Symlinks are left alone (their mode is
// meaningless and chmod would follow them).
func ShareTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		want := GroupMode(mode.Perm()) | mode&fs.ModeSticky
		if d.IsDir() {
			want |= fs.ModeSetgid
		}
		if mode&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky) == want {
			return nil
		}
		if err := os.Chmod(p, want); err != nil {
			return fmt.Errorf("cannot make %s group-writable: %w", p, err)
		}
		return nil
	})
}

// AllowedRoots returns the roots from EnvAllowedRoots, or defaults.
func AllowedRoots(defaults ...string) []string {
	v := os.Getenv(EnvAllowedRoots)
	if v == "" {
		return defaults
	}
	var roots []string
	for _, r := range filepath.SplitList(v) {
		if r != "" {
			roots = append(roots, filepath.Clean(r))
		}
	}
	return roots
}

// SplitUnderRoot checks that p is an absolute path below one of roots
// without any ".." element, and returns that root and p relative to it. The
// root itself is accepted only when allowRoot is set (rel is then ".").
func SplitUnderRoot(p string, roots []string, allowRoot bool) (root, rel string, err error) {
	if !filepath.IsAbs(p) {
		return "", "", fmt.Errorf("path %q is not absolute", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", "", fmt.Errorf("path %q contains \"..\"", p)
		}
	}
	clean := filepath.Clean(p)
	for _, r := range roots {
		r = filepath.Clean(r)
		rel, err := filepath.Rel(r, clean)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if rel != "." || allowRoot {
			return r, rel, nil
		}
	}
	return "", "", fmt.Errorf("path %q is outside %s", p, strings.Join(roots, " and "))
}

// DefaultWriteRoots are where context-init may write.
var DefaultWriteRoots = []string{contract.WorkspaceMount, contract.OutsideMount}

// DefaultCloneRoots are where git-init may clone.
var DefaultCloneRoots = []string{contract.WorkspaceMount, contract.ReposMount}

// Finish reports a binary's outcome: the one-line reason on stderr or the
// success line on stdout, the Result in the termination message file, and
// the exit code (1 on failure).
func Finish(binary, termPath string, res contract.Result, err error, success string) int {
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintln(os.Stderr, binary+": "+OneLine(res.Error))
	} else {
		fmt.Println(binary + ": " + success)
	}
	if werr := WriteResult(termPath, res); werr != nil {
		fmt.Fprintln(os.Stderr, binary+": "+werr.Error())
	}
	if err != nil {
		return 1
	}
	return 0
}
