package opencode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Indent starts every line of a piece of text after its first one, and
// every line of a tool's output.
const Indent = "    "

// Transcript is where the launcher prints, the one way to its output:
// every piece of text goes through Redact and Escape, and every line of it
// starts with the prefix the launcher gives or with Indent, so that the
// agent cannot print a line the controller would read as the results line
// (or as any other line of the launcher's). It is safe for concurrent use;
// each piece of text is written whole.
type Transcript struct {
	mu  sync.Mutex
	w   io.Writer
	red *Redactor
}

// NewTranscript prints to w, redacting with red (which may be nil: URL
// userinfo only).
func NewTranscript(w io.Writer, red *Redactor) *Transcript {
	return &Transcript{w: w, red: red}
}

// Redactor is the transcript's redactor.
func (t *Transcript) Redactor() *Redactor { return t.red }

// Print prints text after prefix; the lines of text after its first start
// with Indent. prefix is the launcher's own and is printed as it is.
func (t *Transcript) Print(prefix, text string) {
	t.printClean(prefix, t.clean(text))
}

// clean is s redacted, then escaped.
func (t *Transcript) clean(s string) string { return Escape(t.red.Redact(s)) }

// printClean prints text, already clean, as Print does.
func (t *Transcript) printClean(prefix, text string) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var b strings.Builder
	for i, l := range lines {
		if i == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteString(Indent)
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = io.WriteString(t.w, b.String())
}

// Printf prints a formatted message after prefix, as Print does.
func (t *Transcript) Printf(prefix, format string, args ...any) {
	t.Print(prefix, fmt.Sprintf(format, args...))
}

// Inline returns s redacted and escaped on one line: its line breaks
// escaped too, for a message printed after the launcher's prefix.
func (t *Transcript) Inline(s string) string {
	return strings.ReplaceAll(t.clean(s), "\n", `\n`)
}

// Sizes of CopyLines' lines.
const (
	// MaxLinePiece is the longest piece of a line CopyLines prints on one
	// line of its own.
	MaxLinePiece = 64 << 10
	// MaxRedactedLine is the longest line CopyLines redacts whole; a
	// longer one is redacted in parts of that size.
	MaxRedactedLine = 4 << 20
)

// CopyLines prints every line read from r until it ends, each after
// prefix. Lines longer than MaxLinePiece are printed in pieces, each after
// prefix; a line is redacted whole before it is cut (up to
// MaxRedactedLine), so that no cut splits a credential.
func (t *Transcript) CopyLines(r io.Reader, prefix string) error {
	br := bufio.NewReaderSize(r, MaxLinePiece)
	var line []byte
	for {
		piece, more, err := br.ReadLine()
		line = append(line, piece...)
		if more && len(line) < MaxRedactedLine {
			continue
		}
		if len(line) > 0 || err == nil {
			t.printPieces(prefix, t.clean(string(line)))
		}
		line = line[:0]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// printPieces prints a clean line in pieces of at most MaxLinePiece bytes,
// cut at character boundaries, each after prefix.
func (t *Transcript) printPieces(prefix, line string) {
	for {
		n := len(line)
		if n > MaxLinePiece {
			n = MaxLinePiece
			for n > 0 && !utf8.RuneStart(line[n]) {
				n--
			}
		}
		t.printClean(prefix, line[:n])
		line = line[n:]
		if line == "" {
			return
		}
	}
}

// PrintResults prints the results line, the line only the launcher
// prints. Its text (the summary, the pull request URL, Git errors and
// branch names) is redacted and escaped as the transcript is: JSON would
// escape C0 characters but not C1 ones. The summary is expected to be cut
// to contract.MaxSummaryBytes already; escaping can lengthen it a little.
// Results that would make a line longer than contract.MaxResultsLine lose
// their pushed branches (each repository's Error says how many) and their
// errors are cut to ShedErrorBytes; if that is not enough, the Git facts.
func (t *Transcript) PrintResults(r *contract.AgentResults) error {
	clean := t.clean
	c := *r
	c.Summary = clean(c.Summary)
	c.PullRequestURL = clean(c.PullRequestURL)
	c.Repositories = append([]contract.RepositoryResult(nil), r.Repositories...)
	for i := range c.Repositories {
		repo := &c.Repositories[i]
		repo.MountPath = clean(repo.MountPath)
		repo.Error = clean(repo.Error)
		// Branch names come from the remote: the agent chose them.
		if len(repo.PushedBranches) > 0 {
			repo.PushedBranches = append([]contract.PushedBranch(nil), repo.PushedBranches...)
			for j := range repo.PushedBranches {
				repo.PushedBranches[j].Name = clean(repo.PushedBranches[j].Name)
			}
		}
	}
	line, err := contract.ResultsLine(&c)
	// The controller ignores a results line longer than it reads: shed
	// the Git facts' details, then the Git facts, rather than lose the
	// summary and usage with them.
	for _, shed := range []func(*contract.AgentResults){shedPushedBranches, shedRepositories} {
		if err != nil || len(line)-1 <= contract.MaxResultsLine {
			break
		}
		shed(&c)
		line, err = contract.ResultsLine(&c)
	}
	if err != nil {
		return err
	}
	r.Version = c.Version
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = io.WriteString(t.w, line)
	return err
}

// ShedErrorBytes is how much of a repository's Error is kept when the
// results line would be too long.
const ShedErrorBytes = 256

// shedPushedBranches leaves out the pushed branches, saying how many, and
// cuts the errors short.
func shedPushedBranches(c *contract.AgentResults) {
	for i := range c.Repositories {
		repo := &c.Repositories[i]
		repo.Error = contract.TruncateUTF8(repo.Error, ShedErrorBytes)
		if n := len(repo.PushedBranches); n > 0 {
			note := fmt.Sprintf("%d pushed branches not listed: the results line would be longer than %d bytes", n, contract.MaxResultsLine)
			repo.Error = strings.TrimPrefix(repo.Error+"; "+note, "; ")
			repo.PushedBranches = nil
		}
	}
}

// shedRepositories leaves out the Git facts.
func shedRepositories(c *contract.AgentResults) { c.Repositories = nil }

// Summary is the results' summary of the model's final answer: redacted,
// escaped, then cut to contract.MaxSummaryBytes (redacting first, so that
// the cut cannot leave part of a credential).
func (t *Transcript) Summary(finalText string) string {
	return contract.TruncateUTF8(t.clean(finalText), contract.MaxSummaryBytes)
}

// Escape makes s safe to print to a terminal: it keeps line breaks and
// tabs and writes every other control character as an escape: C0
// characters, DEL and ESC (which starts terminal sequences) as \xNN, C1
// characters and the Unicode line separators and bidirectional overrides
// as \uNNNN. Bytes that are not UTF-8 become U+FFFD.
func Escape(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || needsEscape(r) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case !needsEscape(r):
			// Line breaks and tabs included.
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f:
		return true
	case 0x80 <= r && r <= 0x9f: // C1
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	case 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069: // bidi overrides and isolates
		return true
	}
	return false
}
